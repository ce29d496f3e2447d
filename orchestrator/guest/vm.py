"""Boot a kernel under virtme-ng and run the guest test suite in it.

The guest sees a curated view of the host read-only over 9p (guest_view():
enough to run pytest from orch's virtual environment, no home directories,
no /root, no environment) and one writable results directory, where the
harness writes JUnit XML and its exit status.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator.core import paths, proc, sandbox, untrusted, untrusted_tree
from orchestrator.core.models import GuestRun, Kernel
from orchestrator.core.sanitize import clean
from orchestrator.guest import harvest, kselftest_run, selection, splats
from orchestrator.kernel import kimage

BOOT_TIMEOUT = 900       # whole guest run: boot + tests, under TCG
TEST_TIMEOUT = 300       # one guest test; a hung one fails, the suite goes on
CPUS = 2
MEMORY = "2G"
MAX_CPUS = 64            # --cpus: more is a typo, not a machine orch boots under TCG
MIN_MEMORY_MB = 256      # --memory: less does not run the suite's interpreter
# Parameters for built-in drivers go on the kernel command line. No
# default null_blk device: the tests make their own through configfs.
APPEND = ["null_blk.nr_devices=0"]
# A scratch virtio-blk disk for the tests (serial below): virtio-blk
# completes in the virtqueue interrupt, a real-device IRQ path.
SCRATCH_MB = 256
SCRATCH_SERIAL = "orch-scratch"


def vng_command() -> list[str]:
    exe = Path(sys.executable).parent / "vng"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("vng")
    return [found] if found else ["vng"]


KERNEL_PROBE = 10   # seconds for a kernel to print its banner under KVM (under a second when it works)


def probe_kvm(image: Path | None = None) -> tuple[bool, str]:
    """Does KVM really run guest code, and a kernel? /dev/kvm existing proves
    nothing: QEMU can abort on it ("failed to set MSR"), and on some nested
    hosts a 16-bit firmware runs but a kernel never prints a line (seen
    here). So a tiny firmware first, then `image` itself with no root
    filesystem: under working KVM it prints its banner and panics (so QEMU
    exits) within a second or two. The kernel probe's answer is kept for
    the host's boot (its boot id), so later runs do not pay for it."""
    ok, why = _probe_firmware()
    if ok:
        ok, why = _kvm_for_the_sandbox()
    if not ok or image is None:
        return ok, why
    return _probe_kernel(str(image))


def _kvm_for_the_sandbox() -> tuple[bool, str]:
    """A root orch's QEMU runs as nobody with /dev/kvm's group
    (sandbox._device_groups): a /dev/kvm that only root may open (mode 0600,
    seen on a container host without udev's rules) is no KVM for it."""
    if not (sandbox.as_root() and sandbox.probe()[0]):
        return True, "KVM works"
    try:
        mode = os.stat("/dev/kvm").st_mode
    except OSError:
        return False, "no /dev/kvm"
    if mode & 0o066:
        return True, "KVM works"
    return False, ("/dev/kvm is root's alone (mode 0600) and the sandboxed QEMU runs as nobody: "
                   "give it a group (udev's kvm group, mode 0660) to use KVM; using TCG")


@functools.lru_cache(maxsize=None)
def _probe_kernel(image: str) -> tuple[bool, str]:
    memo = paths.cache_dir() / "kvm-probe.json"
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    try:
        kept = json.loads(memo.read_text())
        if boot_id and kept.get("boot_id") == boot_id:
            return bool(kept["ok"]), str(kept["why"])
    except (OSError, ValueError, KeyError):
        pass
    with tempfile.TemporaryDirectory() as tmp:
        # The image may be a series' kernel: QEMU runs it in the sandbox, as
        # nobody when orch is root, like every boot; its console is read no
        # further than the banner needs.
        log = Path(tmp) / "console"
        argv = [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none",
                "-nodefaults", "-no-reboot", "-serial", f"file:{log}",
                "-kernel", image, "-append", "console=ttyS0 panic=-1"]
        view = sandbox.View(readable=(Path(image),), writable=(Path(tmp),),
                            devices=(Path("/dev/kvm"),))
        r = sandbox.run(argv, view, Path(tmp), timeout=KERNEL_PROBE) if sandbox.probe()[0] \
            else proc.run(argv, timeout=KERNEL_PROBE)
        try:
            text = untrusted.read_head(log, CONSOLE_HEAD).decode(errors="replace")
        except untrusted.UntrustedError:
            text = ""
    if "Linux version" in text:
        ok, why = True, "KVM works"
    else:
        ok, why = False, (f"KVM runs no kernel here (no console line in {KERNEL_PROBE}s"
                          if r.timed_out else f"KVM runs no kernel here (qemu exit {r.returncode}"
                          ) + "); using TCG"
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"boot_id": boot_id, "ok": ok, "why": why}))
    except OSError:
        pass
    return ok, why


@functools.lru_cache(maxsize=None)
def _probe_firmware() -> tuple[bool, str]:
    """Boot a 5-byte firmware that writes to isa-debug-exit: QEMU exits 3
    only if the vCPU ran it."""
    if not Path("/dev/kvm").exists():
        return False, "no /dev/kvm"
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return False, "no qemu-system-x86_64"
    with tempfile.TemporaryDirectory() as tmp:
        bios = Path(tmp) / "probe.bin"
        image = bytearray(b"\xf4" * 65536)       # hlt everywhere
        code = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4])  # mov al,1; out 0xf4,al; hlt
        image[0xFFF0:0xFFF0 + len(code)] = code   # the reset vector
        bios.write_bytes(bytes(image))
        r = proc.run([qemu, "-accel", "kvm", "-cpu", "host", "-M", "pc", "-m", "16",
                      "-display", "none", "-nodefaults", "-no-reboot", "-bios", bios,
                      "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"], timeout=30)
    if r.returncode == 3:
        return True, "KVM works"
    why = clean(r.output.strip().splitlines()[0] if r.output.strip() else
                      f"exit {r.returncode}", 200)
    return False, f"KVM does not work ({why}); using TCG"


def console_tail(console: Path, lines: int = 30) -> list[str]:
    """The last console lines, cleaned: what a hung or crashed guest said last."""
    try:
        with open(console, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [clean(l, 300) for l in text.splitlines()[-lines:]]


def timeout_args(test_timeout: float) -> list[str]:
    # pytest-timeout (loaded from the venv): SIGALRM fails a hung test and
    # the suite goes on to the next one.
    return [f"--timeout={test_timeout:.0f}", "--timeout-method=signal"]


def guest_command(results: Path, tests: list[str] | None, pytest_args: list[str],
                  keyword: str | None = None, suites: Sequence[selection.Suite] = (),
                  builtin: bool | None = None) -> str:
    """The guest's shell command: one pytest session per suite
    (selection.sessions: the builtin's, then each of `suites`; `builtin`
    as there), each writing its own JUnit file and exit status (the
    builtin's junit.xml and harness-rc, a suite's junit-NAME.xml and
    harness-rc-NAME) and all of them harness.log."""
    py = shlex.quote(sys.executable)
    res = shlex.quote(str(results))
    root = paths.data_root()   # the guest sees it over the host's root filesystem
    # /proc/version first thing: orch checks it is the kernel it built.
    # pytest's own output goes to harness.log, not to the console: the
    # console is the kernel's log, where a splat is a splat (pytest echoing
    # a test's "WARNING:" text is not one). The plugin's start/end marks go
    # into the kernel log, so they survive a kernel that dies mid-suite.
    lines = [f"cat /proc/version > {res}/proc-version"]
    for s in selection.sessions(tests, suites, builtin, root, check=False):
        targets = " ".join(shlex.quote(t) for t in s.targets)
        extra = " ".join(shlex.quote(a) for a in [*selection.session_args(s, keyword),
                                                    *pytest_args])
        log = ">" if len(lines) == 1 else ">>"
        lines.append(f"cd {shlex.quote(str(s.cwd))} && PYTHONDONTWRITEBYTECODE=1 "
                     f"ORCH_RESULTS={res} ORCH_MARKS=/dev/kmsg {py} -m pytest -rA "
                     f"--junitxml={res}/{s.junit} {extra} {targets} {log} {res}/harness.log "
                     f"2>&1; echo $? > {res}/{s.rc}")
    return "; ".join(lines)


def repeat_args(repeat: int) -> list[str]:
    # pytest-repeat: each test N times in a row, in the same boot.
    return [f"--count={repeat}", "--repeat-scope=function"] if repeat > 1 else []


@functools.lru_cache(maxsize=None)
def virtiofs_unusable() -> str | None:
    """Why virtme-ng's virtio-fs attempt would fail here, else None.

    virtme-ng tries virtio-fs first for the root and for each --rwdir, and
    falls back to 9p after waiting 3.1 s for a daemon that never comes up:
    6 s of every boot here. It takes the first virtiofsd of its list that
    answers --version; as root, QEMU's old C virtiofsd (Debian 12's
    /usr/lib/qemu/virtiofsd) answers, then rejects virtme-ng's options
    ("fuse: invalid argument"). Only the Rust virtiofsd (`--shared-dir`)
    works, so with any other the boot asks for 9p straight away."""
    try:
        from virtme import resources
        tools = resources.find_guest_tools()
    except Exception:   # an older or vendored virtme-ng: just its own list
        tools = None
    for path in (f"{tools}/bin/virtiofsd" if tools else None, shutil.which("virtiofsd"),
                 "/usr/libexec/virtiofsd", "/usr/lib/virtiofsd/virtiofsd",
                 "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd"):
        if not (path and os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        if not proc.run([path, "--version"], timeout=10).ok:
            continue   # virtme-ng skips it too
        if "--shared-dir" in proc.run([path, "--help"], timeout=10).output:
            return None
        return f"{path} is not the Rust virtiofsd virtme-ng needs"
    return None   # none at all: virtme-ng goes to 9p without waiting


# virtme-ng's init starts udevd when it finds it and waits for it to settle:
# 10 s of every TCG boot here (coldplug). The suite needs none of it
# (devtmpfs makes the null_blk and virtio-blk nodes; the scratch disk is
# found by its serial in /sys), and udev's blkid probes read every new disk
# into the page cache that the tests measure. Hidden in the guest's view.
GUEST_HIDDEN = ("/usr/lib/systemd", "/usr/lib/udev")

# Empty directories in the guest's view, where the guest mounts its own:
# sysfs (and configfs under it: null_blk), and the tmpfs mounts of
# virtme-ng's init (/run it needs, the /var ones it makes when it can).
GUEST_MOUNT_POINTS = ("/sys", "/run", "/var/log", "/var/cache", "/var/lib", "/var/spool")


def guest_view(kernel: Kernel, results: Path, tests: list[str] | None,
               writable: tuple[Path, ...] = (),
               suites: Sequence[selection.Suite] = ()) -> sandbox.View:
    """What the guest sees of the host, and vng and QEMU with it.

    virtme-ng exports the host's "/" to the guest over 9p (or virtiofs),
    read-only, as QEMU sees it. So vng runs inside the same bubblewrap view
    as a build: QEMU's "/" is then the curated root, and that is all the
    guest's 9p root can ever show, even to a patched kernel running as root
    that mounts it again. (The other ways: `vng --root DIR` wants a whole
    root filesystem to be made and kept in step with the host's venv;
    virtme-ng has no option to export only some host paths.) vng and QEMU
    get the clean environment of the view, so a guest has nothing of
    orch's either: virtme-ng passes a few host variables (TERM) to it.

    In the view: the system directories, the interpreter and packages of
    orch's environment (the guest runs pytest from them), orch's package
    (its pytest plugin), guest_tests/ and each selected test file alone
    (selected_files()), each --suite directory whole (the user named it),
    the kernel image, and the results directory and
    scratch disk, writable. GUEST_MOUNT_POINTS are empty directories for the
    guest's own mounts: virtme-ng's init panics without /run, and without
    /sys the guest has no sysfs, so no configfs and no null_blk (every
    null_blk test SKIPs: the first cold CI run of this view showed it)."""
    root = paths.data_root()
    readable = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
                Path(sys.base_exec_prefix), paths.DATA.parent,
                root / selection.GUEST_TESTS, kernel.image]
    vng = Path(vng_command()[0])
    if vng.is_absolute():
        # A vng from another virtual environment (pipx): that environment.
        # Not a bare prefix such as ~/.local, which holds more than vng.
        venv = vng.resolve().parent.parent
        readable.append(venv if (venv / "pyvenv.cfg").exists() else vng)
    given = selection.as_suites(suites)
    readable += [s.path for s in given]
    for t in tests or ():
        readable += selected_files(root, t, given)
    return sandbox.View(readable=tuple(readable), writable=(results, *writable),
                        devices=(Path("/dev/kvm"),), path=(str(Path(sys.executable).parent),),
                        dirs=GUEST_MOUNT_POINTS, hidden=GUEST_HIDDEN)


def selected_files(root: Path, test: str,
                   suites: Sequence[selection.Suite] = ()) -> list[Path]:
    """What the guest is shown for one --guest-test selection: the file
    itself, never its directory (a test kept in $HOME would show the guest
    $HOME/.ssh), and the conftest.py files pytest loads for it (its
    directory's and those above, but not above the suite, the confcutdir:
    selection.pytest_base_args), which the host's collection ran too. A
    directory the user selected is shown whole: they named it. A test of
    one of `suites` (--suite) is shown with its suite."""
    root = root.resolve()
    suite = root / selection.GUEST_TESTS
    f = (root / test.split("::")[0]).resolve()
    if f.is_relative_to(suite) or selection.in_suite(test, suites, root):
        return []   # shown already
    if f.is_dir():
        return [f]
    found = [f]
    for d in f.parents:
        if d not in suite.parents and (d / "conftest.py").is_file():
            found.append(d / "conftest.py")
    return found


def guest_append(append: list[str], confined: bool) -> list[str]:
    """The kernel command line. Confined by a root orch, vng and QEMU run as
    nobody, and virtme-ng's init then hides the guest's /root under a fresh
    home (as for any user's boot); but the view's /root holds only what orch
    bound there (a pyenv interpreter under /root/.pyenv) and the guest must
    see it: virtme_root_user=1 is what vng itself passes when run by root."""
    if confined and sandbox.as_root():
        return [*append, "virtme_root_user=1"]
    return list(append)


def vng_argv(kernel: Kernel, results: Path, script: Path, scratch: Path, *, kvm: bool,
             cpus: int, memory: str, append: list[str],
             kselftest_image: Path | None = None) -> list[str]:
    """vng's command line for one boot: the kernel, the scratch disk (and
    the kselftests' disk when there are kselftests), the results directory
    writable, the harness script run by the guest."""
    drive = (f"-drive file={scratch},if=none,id=orchscratch,format=raw "
             f"-device virtio-blk-pci,drive=orchscratch,serial={SCRATCH_SERIAL}")
    if kselftest_image is not None:
        drive += (f" -drive file={kselftest_image},if=none,id=orchksft,format=raw "
                  f"-device virtio-blk-pci,drive=orchksft,serial={kselftest_run.DISK_SERIAL}")
    argv = [*vng_command(), "--run", str(kernel.image), "--verbose", f"--qemu-opts={drive}",
            "--cpus", str(cpus), "--memory", memory,
            "--rwdir", str(results), "--append", " ".join(append),
            "--exec", f"sh {shlex.quote(str(script))}"]
    if not kvm:
        argv.insert(1, "--disable-kvm")
    if virtiofs_unusable():
        argv.insert(1, "--force-9p")
    return argv


def run_tests(kernel: Kernel, results: Path, console: Path, *,
              timeout: float = BOOT_TIMEOUT, tests: list[str] | None = None,
              pytest_args: list[str] = (), append: list[str] = APPEND,
              cpus: int = CPUS, memory: str = MEMORY, test_timeout: float = TEST_TIMEOUT,
              expected: list[str] | None = None, repeat: int = 1, keyword: str | None = None,
              status=lambda text: None, confined: bool = True,
              kselftests: Sequence[kselftest_run.Selected] = (),
              suites: Sequence[selection.Suite] = ()) -> GuestRun:
    """Boot `kernel` and run the selected guest tests (`tests`, narrowed by
    -k `keyword`, and each --suite of `suites`), then its builds of the
    selected `kselftests` (from a disk of their own: kselftest_run). With
    kselftests, and `expected` holding no pytest id, no pytest runs at all.
    `confined`: vng runs in guest_view() (False only for --no-sandbox)."""
    # Nothing from an earlier boot may be read as this one's (an old
    # scale.json, a JUnit file): the directory starts empty.
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    kvm, _why = probe_kvm(kernel.image)
    scratch = results.parent / f".{results.name}-scratch.img"
    with open(scratch, "wb") as f:
        f.truncate(SCRATCH_MB << 20)
    image = results.parent / f".{results.name}-kselftest.img" if kselftests else None
    # The command goes to the guest in a file, not on the kernel command
    # line: that is cut at 2048 bytes, and a cut virtme.exec boots the
    # host's /sbin/init to a login prompt instead of the tests (seen with
    # four --guest-test ids under a long run directory).
    # In the results directory: the guest mounts its own tmpfs on /tmp,
    # so a file beside it under the host's /tmp would not be seen.
    script = results / "harness.sh"
    if not kselftests:
        script.write_text(guest_command(results, tests, [*timeout_args(test_timeout),
                                                         *repeat_args(repeat), *pytest_args],
                                        keyword, suites) + "\n")
    else:
        if expected is None:
            expected = [*selection.collect(tests, keyword, suites),
                        *kselftest_run.expected_ids(kselftests)]
        head = (guest_command(results, tests, [*timeout_args(test_timeout),
                                               *repeat_args(repeat), *pytest_args], keyword,
                              suites)
                if runs_pytest(expected, kselftests) else kselftest_run.version_line(results))
        script.write_text("\n".join([head, *kselftest_run.harness_lines(
            kselftests, results, test_timeout)]) + "\n")
    argv = vng_argv(kernel, results, script, scratch, kvm=kvm, cpus=cpus, memory=memory,
                    append=guest_append(append, confined), kselftest_image=image)
    t0 = time.monotonic()
    last = [""]

    def on_line(line: str) -> None:
        line = clean(line, 80).strip()
        if line:
            last[0] = line
        status(f"boot {kernel.config}: {time.monotonic() - t0:.0f}s {last[0]}")
    try:
        if image is not None:
            kselftest_run.make_image(kselftests, image)
        if confined:
            view = guest_view(kernel, results, tests,
                              writable=(scratch,) if image is None else (scratch, image),
                              suites=suites)
            r = sandbox.run(argv, view, paths.data_root(), log=console, timeout=timeout,
                            on_line=on_line)
        else:
            # vng runs virtme-run through PATH: the venv's bin dir must be on it.
            path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            r = proc.run(argv, log=console, cwd=paths.data_root(), timeout=timeout,
                         env={"PATH": path}, on_line=on_line)
    finally:
        scratch.unlink(missing_ok=True)
        if image is not None:
            image.unlink(missing_ok=True)
        status(None)
    seconds = time.monotonic() - t0
    g = outcome(results, console, expected if expected is not None
                else selection.collect(tests, keyword, suites), repeat,
                timed_out=r.timed_out and f"guest did not finish within {timeout:.0f}s, killed",
                vng_rc=r.returncode, kselftests=kselftests, suites=suites)
    g.accel, g.seconds = "kvm" if kvm else "tcg", seconds
    return check_booted(g, kernel, results)


MAX_CONSOLE = 64 << 20
INIT_NOT_VIRTME = "Run /sbin/init as init process"   # a guest that floods its console is not read past this


def console_text(console: Path) -> str:
    try:
        with open(console, "rb") as f:
            return f.read(MAX_CONSOLE).decode(errors="replace")
    except OSError:
        return ""


def runs_pytest(expected: Sequence[str], kselftests: Sequence[kselftest_run.Selected] = ()
                ) -> bool:
    """Whether the harness runs pytest: always without kselftests; with
    them (selected, or expected ids of theirs), when a pytest id is expected."""
    ksft = [e for e in expected if kselftest_run.is_kselftest(e)]
    return not (kselftests or ksft) or len(ksft) < len(expected)


def outcome(results: Path, console: Path, expected: list[str], repeat: int = 1, *,
            timed_out: str | bool = False, vng_rc: int = 0,
            kselftests: Sequence[kselftest_run.Selected] = (),
            suites: Sequence[selection.Suite | Path] = ()) -> GuestRun:
    """What the guest reported (JUnit, else its console marks; each
    kselftest target's KTAP file), and whether its run can be judged: a
    timeout, a crash, no JUnit file when pytest ran, or no end of the
    kselftests (kselftest_run.DONE) is an error, with the tests that did
    finish kept. The results directory is first left with regular files and
    directories only (clean_results). `kselftests`: what the boot ran (its
    ids are in `expected`); kept results read back without it look for each
    expected kselftest id in its collection's file."""
    ksft_ids = [e for e in expected if kselftest_run.is_kselftest(e)]
    with_ksft = bool(kselftests or ksft_ids)
    if with_ksft:
        removed = untrusted_tree.clean(results, untrusted_tree.RESULTS, first=(
            *RESULT_FILES, *kselftest_run.result_names(kselftests, ksft_ids)))
    else:
        removed = clean_results(results)
    with_pytest = runs_pytest(expected, kselftests)
    text = console_text(console)
    rep = harvest.read(results, text, [e for e in expected if not kselftest_run.is_kselftest(e)],
                       repeat, suites=selection.as_suites(suites) if suites else None)
    ksft = kselftest_run.report(results, text, kselftests, ksft_ids) if with_ksft else None
    died_in = rep.died_in or (ksft.died_in if ksft else None)
    harness_log = results / "harness.log"
    g = GuestRun(rep.junit is not None or not with_pytest, "", 0, console, rep.junit,
                 rep.tests + (ksft.tests if ksft else []),
                 harness_rc=rep.harness_rc, died_in=died_in,
                 finished=(rep.finished or not with_pytest) and (ksft is None or ksft.done),
                 harness_log=harness_log if harness_log.exists() else None,
                 results=results, vng_rc=vng_rc)
    if timed_out:
        g.ok, g.error, g.timed_out = False, str(timed_out), True
        if INIT_NOT_VIRTME in text:
            g.error += (" (the guest ran the host's /sbin/init, not virtme-ng's: its kernel "
                        "command line was cut)")
            g.infra = True
    elif rep.junit is None and with_pytest:
        g.ok = False
        g.error = (_no_results_reason(console, results, vng_rc) if "missing" in rep.junit_error
                   else rep.junit_error)
    elif ksft is not None and not ksft.done:
        g.ok = False
        g.error = _no_end_reason(text, vng_rc)
    if not g.ok and died_in:
        g.error += f" (during {died_in})"
    g.removed = removed
    g.error = with_removed(g.error, removed)
    return g


def _no_end_reason(text: str, vng_rc: int) -> str:
    """Why the kselftests never ended (no kselftest_run.DONE): a panic, else
    the guest stopped."""
    for s in splats.scan(text):
        if s.kind == "panic":
            return "kernel panicked: " + s.title.removeprefix("Kernel panic - not syncing: ")
    return f"the guest stopped before its kselftests ended (vng exit {vng_rc})"


# orch's own files in the results directory: counted first against its
# quota, so that what else a guest writes cannot push them out.
RESULT_FILES = ("junit.xml", "harness-rc", "proc-version", "harness.log", "harness.sh",
                kselftest_run.DONE)


def clean_results(results: Path) -> list[str]:
    """After every boot, before orch reads a byte of it: the guest (the
    kernel under test, root, over 9p) may have left links to the host's
    secrets, FIFOs, device nodes, setuid files or huge files there, and the
    directory is kept, cached, exported and published. Only regular files
    and directories within untrusted_tree.RESULTS stay; what went is said
    (GuestRun.removed, and in its error)."""
    return untrusted_tree.clean(results, untrusted_tree.RESULTS, first=RESULT_FILES)


def with_removed(error: str, removed: list[str], shown: int = 10) -> str:
    """A boot's error, with what was removed from its results said after it
    (the first `shown` entries)."""
    if not removed:
        return error
    note = ("the guest's results directory held what is not a plain file, or over its "
            "quota (removed, or its mode made plain): " + "; ".join(removed[:shown])
            + ("; ..." if len(removed) > shown else ""))
    return clean(f"{error}; {note}" if error else note, 300 * (shown + 1))


CONSOLE_HEAD = 1 << 20   # the banner is among the kernel's first lines


def check_booted(g: GuestRun, kernel: Kernel, results: Path) -> GuestRun:
    """The kernel that booted is the one built: the banner the kernel printed
    on its console and, when the guest got as far as userspace, the
    /proc/version it reported. Any difference makes the side ERROR: its
    results would be about another kernel."""
    try:
        with open(g.console, "rb") as f:
            head = f.read(CONSOLE_HEAD).decode(errors="replace")
    except OSError:
        head = ""
    g.banner = kimage.booted_banner(head)
    if g.banner is not None:
        g.banner = clean(g.banner, 600)
    built = kernel.banner
    wrong = None
    if not built:
        wrong = "no banner was recorded for the built kernel, so the boot cannot be checked"
    elif g.banner is not None and g.banner != built:
        wrong = f"its console says {g.banner!r}"
    elif g.junit is not None or (results / kselftest_run.DONE).exists():
        reported = untrusted.read_text(results / "proc-version", 4096)
        if reported is None:
            wrong = "the guest did not report /proc/version"
        elif reported.strip() != built:
            wrong = f"its /proc/version says {clean(reported.strip(), 600)!r}"
    if wrong:
        g.ok = False
        g.error = with_removed(f"booted kernel is not the one built ({built!r}): {wrong}",
                               g.removed)
        g.infra = True
    return g


def _no_results_reason(console: Path, results: Path, vng_rc: int) -> str:
    """Why the guest left no JUnit file, in words: a panic, a harness crash."""
    for s in splats.scan(console_text(console)):
        if s.kind == "panic":
            return "kernel panicked: " + s.title.removeprefix("Kernel panic - not syncing: ")
    code = harvest.harness_rc(results)
    if code is not None:
        return f"guest test harness crashed (pytest exit {code}) and wrote no results"
    return f"guest wrote no JUnit results (vng exit {vng_rc})"
