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
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from orchestrator import kimage, selection, vm
from orchestrator.models import GuestRun

BOOTS: list[str] = []
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


def run_tests(kernel, results: Path, console: Path, *, timeout=vm.BOOT_TIMEOUT, tests=None,
              expected=None, repeat=1, status=lambda text: None, **_kw) -> GuestRun:
    import shutil
    BOOTS.append(kernel.key)
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    what = behaviour(kernel.image)
    expected = expected if expected is not None else selection.collect(tests)
    lines = [f"[    0.000000] {kernel.banner}"]
    t0 = time.monotonic()
    if "INFRA" in what:
        console.write_text("qemu-system-x86_64: failed to initialize KVM\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=1)
        g.infra, g.error = True, "QEMU failed: failed to initialize KVM"
        g.accel, g.seconds = "tcg", 0.1
        return g
    if "PANIC" in what:
        lines.append("[    0.500000] Kernel panic - not syncing: VFS: Unable to mount root fs")
        console.write_text("\n".join(lines) + "\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=1)
    else:
        if "SPLAT" in what:
            lines += ["[    1.000000] ------------[ cut here ]------------",
                      "[    1.000000] WARNING: CPU: 0 PID: 1 at mm/filemap.c:2029 "
                      "folio_end_dropbehind+0x1/0x2",
                      "[    1.000000] ---[ end trace 0000000000000000 ]---"]
        st = next((s for s in ("FAIL", "SKIP", "FLAKY") if s in what), "PASS")
        for t in expected:
            for k in range(1, repeat + 1):
                lines.append(f"orch-test: start {t}")
                one = st if st != "FLAKY" else ("FAIL" if k == 1 else "PASS")
                lines.append(f"orch-test: end {one} {t}")
        lines.append("orch-test: done 0")
        console.write_text("\n".join(lines) + "\n")
        (results / "junit.xml").write_text(_junit(expected, st, repeat))
        (results / "harness-rc").write_text("1\n" if st in ("FAIL", "FLAKY") else "0\n")
        (results / "proc-version").write_text(kernel.banner + "\n")
        g = vm.outcome(results, console, expected, repeat, vng_rc=0)
    g.accel, g.seconds = "tcg", round(time.monotonic() - t0, 3)
    return vm.check_booted(g, kernel, results)


def install(monkeypatch) -> list[str]:
    """Boots go to the stand-in; returns the list of booted kernel keys."""
    BOOTS.clear()
    monkeypatch.setattr(vm, "run_tests", run_tests)
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "stand-in guest"))
    return BOOTS


def install_globally() -> None:
    """For a subprocess (git bisect run): the same, without pytest."""
    vm.run_tests = run_tests
    vm.probe_kvm = lambda image=None: (False, "stand-in guest")
