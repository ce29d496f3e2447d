"""A stand-in for booting the stand-in kernel (tests/data/minikernel), which
builds in seconds but cannot boot: fast tests of bisect and check replace
`vm.run_tests` with `run_tests` here, and everything around it is real (the
build, the kernel cache, result_cache, the JUnit and console parsing, the
banner check, the verdict rules, git bisect).

What the "guest" reports comes from the built image itself, never from the
source tree: the payload is decompressed (kimage) and searched for
`ORCH-GUEST:<WHAT>` strings that a commit compiled into the kernel (a C
string literal in a .c file ends up in vmlinux). A stale image would so
report a stale answer, as a real kernel would.

  (none)        every selected test passes
  FAIL          every selected test fails
  SKIP          every selected test skips
  PANIC         the kernel panics before the harness starts
  SPLAT         a WARNING on the console, the tests pass
  FLAKY         with --repeat N the first run of each test fails, the rest pass
  INFRA         the host breaks (QEMU exits at once, no console)

Every call is counted in BOOTS (by kernel key), so a test can assert that a
second bisect booted nothing.

Kselftests (run_tests(..., kselftests=...)) always run for real, in either
mode: each selected target's install (the stand-in tree's mini target,
built by kselftest_build) is copied to a writable directory, the one the
guest's ext4 disk would be, and its own run_kselftest.sh runs there with
kselftest_run's lines (in a sandbox when bwrap works, so the runner's
/dev/kmsg line does not reach the host's log), writing kselftest-<slug>.ktap
and .rc, then harness-done, as the guest would. A test printing
"ORCH-KSFT:DIE" (mini's "die" behaviour) stops the guest there: everything
is killed, no later target runs, no harness-done, a panic on the console.

With install(..., harness=True) the selected guest tests really run, with
the host's kernel standing in for the guest's: orch's harness command (the
one the guest runs) in vm.guest_view(), the view QEMU and so the guest get,
or unconfined when the run was --no-sandbox. Their JUnit, harness log and
files come back as a guest's would (the sandbox tests read canaries so).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.core import paths, proc, sandbox, untrusted
from orchestrator.core.models import GuestRun
from orchestrator.guest import kselftest_run, selection, vm
from orchestrator.kernel import kimage

BOOTS: list[str] = []
HARNESS = {"on": False}   # run the selected tests for real (install(harness=True))
MARK = re.compile(rb"ORCH-GUEST:([A-Z]+)")


def behaviour(image: Path) -> set[str]:
    header = kimage.read_header(image.read_bytes())
    return {m.decode() for m in MARK.findall(kimage.decompress(header.payload))}


def _junit(tests: list[str], status: str, repeat: int) -> str:
    cases = []
    for t in tests:
        cls, _, name = selection.junit_key(t).rpartition("::")
        for k in range(1, repeat + 1):
            n = f"{name}[{k}-{repeat}]" if repeat > 1 else name
            st = status if status != "FLAKY" else ("FAIL" if k == 1 else "PASS")
            inner = {"FAIL": '<failure message="stand-in: 16/16 folios still cached"/>',
                     "SKIP": '<skipped message="stand-in: not supported here"/>'}.get(st, "")
            cases.append(f'<testcase classname="{html.escape(cls)}" name="{html.escape(n)}" '
                         f'time="0.1">{inner}</testcase>')
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
            + "".join(cases) + "</testsuite></testsuites>")


def _harness(kernel, results: Path, tests, repeat: int, confined: bool, suites=(),
             expected=()) -> list[str]:
    """The guest's harness command on the host, in the guest's view; returns
    what a guest's console would show: the plugin's marks and the output."""
    marks = results / ".marks"
    cmd = vm.guest_command(results, tests, vm.repeat_args(repeat), suites=suites,
                           builtin=selection.expects_builtin(expected or (), suites))
    (results / "harness.sh").write_text(cmd.replace("ORCH_MARKS=/dev/kmsg",
                                                    f"ORCH_MARKS={marks}") + "\n")
    argv = ["sh", str(results / "harness.sh")]
    if confined:
        r = sandbox.run(argv, vm.guest_view(kernel, results, tests, suites=suites),
                        paths.data_root(),
                        timeout=120)
    else:
        r = proc.run(argv, cwd=paths.data_root(), timeout=120)
    # The guest wrote the results directory: its files may be links.
    lines = (untrusted.read_text(marks, 16 << 20) or "").splitlines()
    marks.unlink(missing_ok=True)
    # The host's kernel ran the tests; the stand-in reports the built one.
    (results / "proc-version").unlink(missing_ok=True)
    (results / "proc-version").write_text(kernel.banner + "\n")
    return lines + r.output.splitlines()


DIE = "ORCH-KSFT:DIE"


def _kill_session(sid: int) -> None:
    """Every process of session `sid`: the runner's inner `timeout` puts the
    test in a process group of its own."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def _kselftests(results: Path, selected, test_timeout: float) -> list[str]:
    """The kselftest part of the guest's harness, on the host: each target's
    runner from a writable copy of its install. Returns console lines: a
    panic when a test said DIE."""
    root = results.parent / f".{results.name}-kselftest-root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        for s in selected:   # copies: the tests write in their cwd, never into the cache
            shutil.copytree(s.build.install, root / kselftest_run.slug(s.build.target),
                            symlinks=True)
        lines = kselftest_run.target_lines(selected, results, str(root), test_timeout)
        limit = 60 + sum(kselftest_run.timeout_for(s, test_timeout) for s in selected)
        use_bwrap = sandbox.probe()[0]
        view = sandbox.View(writable=(results, root))
        if use_bwrap:
            sandbox.adopt(results)
            sandbox.adopt(root)
        deadline = time.monotonic() + limit
        for line in lines:
            argv = ["sh", "-c", line]
            p = subprocess.Popen(sandbox.wrap(argv, view, root) if use_bwrap else argv,
                                 cwd=root, env=sandbox.clean_env(view),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            died = False
            while p.poll() is None:
                died = any(DIE in (untrusted.read_text(f, 16 << 20) or "")
                           for f in results.glob("kselftest-*.ktap"))
                if died or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if p.poll() is None:
                _kill_session(p.pid)
                p.wait()
            if died:
                return ["[    9.000000] Kernel panic - not syncing: stand-in: the guest died "
                        f"in a kselftest ({DIE})"]
        (results / kselftest_run.DONE).write_text("done\n")
        return []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_tests(kernel, results: Path, console: Path, *, timeout=vm.BOOT_TIMEOUT, tests=None,
              expected=None, repeat=1, status=lambda text: None, confined=True,
              kselftests=(), test_timeout=vm.TEST_TIMEOUT, suites=(), **_kw) -> GuestRun:
    BOOTS.append(kernel.key)
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    what = behaviour(kernel.image)
    if expected is None:
        expected = selection.collect(tests)
        if kselftests:
            expected += kselftest_run.expected_ids(kselftests)
    # Without kselftests, every expected id is pytest's, as ever.
    pytest_ids = [e for e in expected if not kselftest_run.is_kselftest(e)]
    pytest_on = vm.runs_pytest(expected, kselftests)
    lines = [f"[    0.000000] {kernel.banner}"]
    t0 = time.monotonic()
    if "INFRA" in what:
        console.write_text("qemu-system-x86_64: failed to initialize KVM\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=1, kselftests=kselftests,
                      suites=suites)
        g.infra, g.error = True, "QEMU failed: failed to initialize KVM"
        g.accel, g.seconds = "tcg", 0.1
        return g
    if "PANIC" in what:
        lines.append("[    0.500000] Kernel panic - not syncing: VFS: Unable to mount root fs")
        console.write_text("\n".join(lines) + "\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=1, kselftests=kselftests,
                      suites=suites)
    elif HARNESS["on"]:
        if pytest_on:
            lines += _harness(kernel, results, tests, repeat, confined, suites, expected)
        else:
            (results / "proc-version").write_text(kernel.banner + "\n")
        if kselftests:
            lines += _kselftests(results, kselftests, test_timeout)
        console.write_text("\n".join(lines) + "\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=0, kselftests=kselftests,
                      suites=suites)
    else:
        if "SPLAT" in what:
            lines += ["[    1.000000] ------------[ cut here ]------------",
                      "[    1.000000] WARNING: CPU: 0 PID: 1 at mm/filemap.c:2029 "
                      "folio_end_dropbehind+0x1/0x2",
                      "[    1.000000] ---[ end trace 0000000000000000 ]---"]
        st = next((s for s in ("FAIL", "SKIP", "FLAKY") if s in what), "PASS")
        if pytest_on:
            for t in pytest_ids:
                for k in range(1, repeat + 1):
                    lines.append(f"orch-test: start {t}")
                    one = st if st != "FLAKY" else ("FAIL" if k == 1 else "PASS")
                    lines.append(f"orch-test: end {one} {t}")
            lines.append("orch-test: done 0")
            # One JUnit file and exit status per pytest session, as the
            # guest's harness writes them (the builtin's, each --suite's).
            names = {s.name for s in selection.as_suites(suites)}
            by_session: dict[str, list[str]] = {}
            for t in pytest_ids:
                by_session.setdefault(selection.session_name(t, names), []).append(t)
            for name, ids in by_session.items():
                junit_file, rc_file = selection.result_files(name)
                (results / junit_file).write_text(_junit(ids, st, repeat))
                (results / rc_file).write_text("1\n" if st in ("FAIL", "FLAKY") else "0\n")
        (results / "proc-version").write_text(kernel.banner + "\n")
        if kselftests:
            lines += _kselftests(results, kselftests, test_timeout)
        console.write_text("\n".join(lines) + "\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=0, kselftests=kselftests,
                      suites=suites)
    g.accel, g.seconds = "tcg", round(time.monotonic() - t0, 3)
    return vm.check_booted(g, kernel, results)


def install(monkeypatch, harness: bool = False) -> list[str]:
    """Boots go to the stand-in; returns the list of booted kernel keys."""
    BOOTS.clear()
    monkeypatch.setitem(HARNESS, "on", harness)
    monkeypatch.setattr(vm, "run_tests", run_tests)
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "stand-in guest"))
    return BOOTS


def install_globally(harness: bool = False) -> None:
    """For a subprocess (git bisect run, orch test): the same, without pytest."""
    HARNESS["on"] = harness
    vm.run_tests = run_tests
    vm.probe_kvm = lambda image=None: (False, "stand-in guest")
