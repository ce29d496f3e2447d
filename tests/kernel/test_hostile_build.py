"""A hostile series' build, on the stand-in tree through `orch test` end to
end (real sandboxed builds, the real guest harness in the guest's view), as
root when the suite runs as root (CI does). One test per way a series' build
reached the host or a later trusted build (issue 25, items 1-5); each was
seen succeeding on the orch before the build layers and the unprivileged
sandbox (b6f4c69: this file, run in a `git archive` of that commit).

The series change the stand-in's Makefile: its `$(shell ...)` runs when make
reads it (the configure and build steps), its recipes at the end of the
link, as Kbuild's Makefiles and host programs would in a real tree.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
from pathlib import Path

import pytest
from helpers import FIXED, git, leaked, orch_standin, run_json, series

from orchestrator.kernel import kimage

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need orch to run as "
                                "root (CI runs as root)")


def _run(tmp_path, env, mbox, mini, rd, *extra, harness=True):
    return orch_standin(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox),
                        "--tree", str(mini), "--config", "base", "--run-dir", str(rd), *extra,
                        harness=harness)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "ORCH_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent.parent)}


def _hostile(mini: Path, tmp_path: Path, name: str, parse: str = "", link: str = "",
             files: dict | None = None) -> Path:
    """A series whose Makefile runs `parse` (shell) whenever make reads it
    and `link` (shell) at the end of the bzImage recipe."""
    make = (mini / "Makefile").read_text()
    if parse:
        make = make.replace("CC ?= gcc\n", f"CC ?= gcc\n$(info $(shell {parse}))\n", 1)
    if link:
        ready = '\t@echo "Kernel: arch/x86/boot/bzImage is ready"\n'
        assert ready in make
        make = make.replace(ready, ready + "".join(f"\t@{line}\n" for line in link.splitlines()))
    return series(mini, tmp_path, name, [(f"mini: {name}", {"Makefile": make, **(files or {})})])


def _new_base(mini: Path, text: str) -> None:
    """The tree moves on (the next night's baseline): main.c changes."""
    (mini / "main.c").write_text((mini / "main.c").read_text() + text)
    git(mini, "commit", "-q", "-am", "mini: the tree moves on")


def _workspace(env) -> Path:
    return next((Path(env["ORCH_CACHE"]) / "work").glob("tree-*"))


# 1 ---------------------------------------------------------------------

@needs_root
def test_links_left_in_the_build_directory_are_not_followed(tmp_path, mini, env, canaries):
    """The series replaces the files orch reads back after a build (ccache's
    stats log, the compiler wrapper's log, System.map) with links to the
    host's secrets, and orch's old warning snapshot with a link to a file
    it would overwrite; vmlinux's System.map sibling and the logs must not
    bring a byte of them into the run, and the target stays as it was."""
    bashrc = Path(os.environ["HOME"]) / ".bashrc"
    bashrc.write_text("# the user's own\n")
    root_canary, home_canary = "/root/.orch-canary", str(Path(os.environ["HOME"]) / ".orch-canary")
    link = "\n".join([
        f"ln -sf {root_canary} $(O)/.orch-ccache-stats.log",
        f"ln -sf {home_canary} $(O)/.orch-uncached.log",
        f"ln -sf {root_canary} $(O)/System.map",
        f"ln -sf {bashrc} $(O)/.orch-warnings.json",
        "mkfifo $(O)/.orch-fifo-probe 2>/dev/null; true"])
    mbox = _hostile(mini, tmp_path, "links", link=link, files={"new.c": FIXED})
    rd = tmp_path / "run"
    r = _run(tmp_path, env, mbox, mini, rd, "--build-only")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    assert bashrc.read_text() == "# the user's own\n"
    assert leaked(canaries, rd, r.stdout, r.stderr, Path(env["ORCH_CACHE"]) / "kernels") == {}
    log = (rd / "logs" / "build-base-patched.log").read_text()
    assert "not read: .orch-ccache-stats.log is not a regular file" in log


@needs_root
def test_a_vmlinux_that_is_a_link_to_dev_zero_is_refused(tmp_path, mini, env):
    """Read whole, /dev/zero never ends: orch must refuse it, not read it."""
    mbox = _hostile(mini, tmp_path, "zero", link="ln -sf /dev/zero $(O)/vmlinux",
                    files={"new.c": FIXED})
    rd = tmp_path / "run"
    r = orch_standin(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox), "--tree",
                     str(mini), "--config", "base", "--run-dir", str(rd), "--build-only",
                     timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 5, r.stderr     # not the kernel it built: never booted
    assert "vmlinux is not a regular file" in r.stderr.splitlines()[-1]


# 2 ---------------------------------------------------------------------

HANDLE_PROBE = """\
import ctypes, errno, os
class FH(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint), ("type", ctypes.c_int), ("h", ctypes.c_ubyte * 128)]
libc = ctypes.CDLL(None, use_errno=True)
fh = FH()
fh.n, fh.type = {n}, {type}
fh.h[:{n}] = bytes.fromhex("{handle}")
mnt = os.open("/usr", os.O_RDONLY)
fd = libc.open_by_handle_at(mnt, ctypes.byref(fh), os.O_RDONLY)
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
if fd < 0:
    print("HANDLE-PROBE uid", os.getuid(), "caps", caps, "refused:", errno.errorcode[ctypes.get_errno()])
else:
    print("HANDLE-PROBE uid", os.getuid(), "caps", caps, "read:", os.read(fd, 200))
"""

GUEST_PROBE = """\
import json, os, stat

def test_probe():
    out = {"uid": os.getuid(),
           "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]}
    res = os.environ["ORCH_RESULTS"]
    try:
        os.mknod(os.path.join(res, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        out["mknod"] = "made"
    except OSError as e:
        out["mknod"] = e.strerror
    with open(os.path.join(res, "probe.json"), "w") as f:
        json.dump(out, f)
"""


def _handle_of(path: str) -> dict:
    class FH(ctypes.Structure):
        _fields_ = [("n", ctypes.c_uint), ("type", ctypes.c_int), ("h", ctypes.c_ubyte * 128)]
    libc = ctypes.CDLL(None, use_errno=True)
    fh, mnt = FH(), ctypes.c_int()
    fh.n = 128
    assert libc.name_to_handle_at(-100, path.encode(), ctypes.byref(fh), ctypes.byref(mnt), 0) == 0
    return {"n": fh.n, "type": fh.type, "handle": bytes(fh.h[:fh.n]).hex()}


@needs_root
def test_build_and_guest_steps_have_no_privilege_when_orch_is_root(tmp_path, mini, env,
                                                                   canaries):
    """bwrap run by root keeps root's capabilities: a build step could open
    any host file by its handle (open_by_handle_at needs only
    CAP_DAC_READ_SEARCH), and a guest (QEMU as root, 9p passthrough) could
    make device nodes on the host. Both run as nobody without capabilities."""
    if os.stat("/usr").st_dev != os.stat("/root").st_dev:
        pytest.skip("the handle attack needs /usr and /root on one filesystem")
    probe = HANDLE_PROBE.format(**_handle_of("/root/.orch-canary"))
    mbox = _hostile(mini, tmp_path, "handle", parse="python3 $(srctree)/probe.py 2>&1",
                    files={"probe.py": probe, "new.c": FIXED})
    guest = tmp_path / "sel" / "test_priv_probe.py"
    guest.parent.mkdir()
    guest.write_text(GUEST_PROBE)
    rd = tmp_path / "run"
    r = _run(tmp_path, env, mbox, mini, rd, "--guest-test", str(guest))
    assert "Traceback" not in r.stderr, r.stderr
    log = (rd / "logs" / "build-base-patched.log").read_text()
    assert "HANDLE-PROBE uid 65534 caps 0000000000000000 refused: EPERM" in log, log[-2000:]
    for side in ("baseline", "patched"):
        found = json.loads((rd / "results" / "base" / side / "probe.json").read_text())
        assert found == {"uid": 65534, "caps": "0000000000000000",
                         "mknod": "Operation not permitted"}, found
        for f in (rd / "results" / "base" / side).rglob("*"):
            assert not stat.S_ISCHR(f.lstat().st_mode), f
    assert leaked(canaries, rd, r.stdout, r.stderr) == {}


# 3 ---------------------------------------------------------------------

TROJAN = """#!/bin/sh
echo "ORCH-TROJAN ran in a build" >&2
exec "$@"
"""


@needs_root
def test_a_series_cannot_configure_ccache_for_later_builds(tmp_path, mini, env):
    """The series writes ccache.conf into the cache directory (a
    prefix_command of its own): the next baseline build, which holds the
    shared cache's writer credentials, must not run it."""
    parse = ("cp $(srctree)/trojan.sh $$CCACHE_DIR/trojan.sh; chmod 755 $$CCACHE_DIR/trojan.sh; "
             "printf 'prefix_command = %s\\n' $$CCACHE_DIR/trojan.sh > $$CCACHE_DIR/ccache.conf")
    mbox = _hostile(mini, tmp_path, "ccacheconf", parse=parse,
                    files={"trojan.sh": TROJAN, "new.c": FIXED})
    r = _run(tmp_path, env, mbox, mini, tmp_path / "run", "--build-only")
    assert r.returncode == 0, r.stderr
    # The series' own build may run it (its layer has the file) ...
    ccache = Path(env["ORCH_CACHE"]) / "ccache"
    assert not (ccache / "ccache.conf").exists() and not (ccache / "trojan.sh").exists()
    # ... the next night's baseline does not.
    _new_base(mini, "int moved_on(void) { return 2; }\n")
    honest = series(mini, tmp_path, "honest", [("mini: add mini_new", {"new.c": FIXED})])
    rd = tmp_path / "run2"
    r = _run(tmp_path, env, honest, mini, rd, "--build-only")
    assert r.returncode == 0, r.stderr
    assert "compiled" in r.stderr
    assert "ORCH-TROJAN" not in (rd / "logs" / "build-base-baseline.log").read_text()


# 4 and 5 ---------------------------------------------------------------

def _payload(image: Path) -> bytes:
    return kimage.decompress(kimage.read_header(image.read_bytes()).payload)


@needs_root
def test_a_series_cannot_plant_objects_for_the_next_baseline(tmp_path, mini, env):
    """The series leaves old.o dated next year, holding what it likes: the
    next baseline build would find it newer than old.c and link it. It never
    sees it: the series built in a layer of its own."""
    plant = ("printf 'ORCH-GUEST:PANIC planted' > $(O)/old.o; touch -d '+1 year' $(O)/old.o")
    mbox = _hostile(mini, tmp_path, "plant", link=plant, files={"new.c": FIXED})
    r = _run(tmp_path, env, mbox, mini, tmp_path / "run", "--build-only")
    assert r.returncode == 0, r.stderr
    old = _workspace(env) / "build" / "base" / "old.o"
    assert b"planted" not in old.read_bytes()
    _new_base(mini, "int moved_on(void) { return 2; }\n")
    honest = series(mini, tmp_path, "honest", [("mini: add mini_new", {"new.c": FIXED})])
    rd = tmp_path / "run2"
    r = _run(tmp_path, env, honest, mini, rd, "--build-only")
    assert r.returncode == 0, r.stderr
    key = run_json(rd)["configs"][0]["baseline"]["build"]["key"]
    image = Path(env["ORCH_CACHE"]) / "kernels" / key / "bzImage"
    assert b"planted" not in _payload(image)


@needs_root
def test_a_series_that_keeps_its_change_from_being_compiled_is_an_error(tmp_path, mini, env):
    """The series' C change makes every test fail; its Makefile re-dates
    main.o (whose source it changes) so make would not compile it, and the
    kernel would pass without the change. orch removes the objects of the
    changed sources before the build and checks they were made in it."""
    bad = (mini / "main.c").read_text() + 'const char *fail = "ORCH-GUEST:FAIL";\n'
    mbox = _hostile(mini, tmp_path, "redate", parse="touch -d '+1 year' $(O)/main.o",
                    files={"main.c": bad})
    rd = tmp_path / "run"
    r = _run(tmp_path, env, mbox, mini, rd, harness=False)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 4, r.stderr
    rec = run_json(rd)
    assert rec["verdict"] != "PASS"
    assert "did not compile its changed source into main.o" in r.stderr.splitlines()[-1]
    # The control: the same change without the trick fails its tests.
    honest = series(mini, tmp_path, "honest-fail", [("mini: fail", {"main.c": bad})])
    r = _run(tmp_path, env, honest, mini, tmp_path / "run2", harness=False)
    assert r.returncode == 1, r.stderr


@needs_root
def test_a_cache_left_as_root_still_takes_a_series_compiles(tmp_path, mini, env):
    """A runner's cache holds root's ccache directories under a top that an
    orch of today already gave the sandbox (an older orch, or a --no-sandbox
    run, wrote there since). The series compiles as nobody in a layer over
    it: orch must hand every entry to the sandbox's id, not only the top
    (CI failed exactly so: "ccache: error: Failed to create temporary
    file ... Permission denied")."""
    first = series(mini, tmp_path, "first", [("mini: add mini_new", {"new.c": FIXED})])
    r = _run(tmp_path, env, first, mini, tmp_path / "run", "--build-only")
    assert r.returncode == 0, r.stderr
    ccache = Path(env["ORCH_CACHE"]) / "ccache"
    assert os.lstat(ccache).st_uid == 65534
    for dirpath, dirnames, filenames in os.walk(ccache):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), 0, 0)
    other = "int mini_other(void)\n{\n\treturn 2;\n}\n"
    second = series(mini, tmp_path, "second", [("mini: add mini_other", {"other.c": other})])
    rd = tmp_path / "run2"
    r = _run(tmp_path, env, second, mini, rd, "--build-only")
    assert r.returncode == 0, r.stderr
    assert "Permission denied" not in (rd / "logs" / "build-base-patched.log").read_text()
    assert all(os.lstat(os.path.join(d, n)).st_uid == 65534
               for d, dn, fn in os.walk(ccache) for n in dn + fn)


@needs_root
def test_adopting_a_directory_never_follows_a_link_out_of_it(tmp_path):
    """A step's directory may hold a link to /etc: the walk chowns the link
    itself, never what it points to."""
    from orchestrator.core import sandbox
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("root's")
    os.symlink(outside, tmp_path / "d" / "sub" / "link")
    sandbox.adopt(tmp_path / "d")
    assert os.lstat(tmp_path / "d" / "sub" / "f").st_uid == 65534
    assert os.lstat(tmp_path / "d" / "sub" / "link").st_uid == 65534
    assert os.lstat(outside).st_uid == 0 and os.lstat(outside / "secret").st_uid == 0
