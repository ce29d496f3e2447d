"""The canary series on the real kernel: its build step (a Makefile
$(shell) in init/) and its guest test look for canaries in $HOME, /root and
orch's environment; none may appear in the run directory or orch's output,
and the build and both boots still work.

It shares the suite's cached base baseline kernel; the series costs an
incremental build (a Makefile line changes no command, so it compiles only
what the build directory's last tree changed) and one boot per side. The control (--no-sandbox leaks all three) is the fast version's,
in test_sandbox.py, on the stand-in tree.
"""

from __future__ import annotations

import secrets
import shutil

import pytest
from helpers import CANARY_DIR, CANARY_SERIES, leaked, orch_real, run_json

from orchestrator.core import paths

pytestmark = pytest.mark.slow


@pytest.fixture
def real_cache(monkeypatch):
    """The suite's cache, pinned before `canaries` moves HOME (the default
    cache is under it)."""
    cache = paths.cache_dir()
    monkeypatch.setenv("ORCH_CACHE", str(cache))
    return cache


def test_canary_series_leaks_nothing_on_the_real_kernel(tmp_path, real_cache, canaries):
    probe = tmp_path / "sel" / "test_canary_probe.py"
    probe.parent.mkdir()
    shutil.copy2(CANARY_DIR / "guest_probe.py", probe)
    # Both probes must run now, with these canaries, whatever the cache
    # holds: a word of the Makefile line's comment made unique (a new tree,
    # so the patched build runs: it compiles nothing), and --rerun (both
    # sides boot, never kept results of an earlier run's probe).
    line = "+# orch test data: a hostile build step (tests/test_sandbox_e2e.py)"
    mbox = tmp_path / "canary-probe.mbox"
    text = CANARY_SERIES.read_text()
    assert line in text
    mbox.write_text(text.replace(line, f"{line[:-1]} {secrets.token_hex(4)})"))
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(mbox), "--config", "base", "--rerun",
                  "--guest-test", str(probe), "--run-dir", str(rd))
    rec = run_json(rd)
    c = rec["configs"][0]
    assert rec["verdict"] == "PASS", r.stderr[-3000:]
    for side in ("baseline", "patched"):
        assert [t["status"] for t in c[side]["tests"]] == ["PASS"], r.stderr[-3000:]
    # Both probes ran: the build's in the patched build log, the guest's in
    # its results and on the console (so a silent probe cannot pass this).
    assert "ORCH-CANARY-PROBE build: done" in (rd / "logs" / "build-base-patched.log").read_text()
    for side in ("baseline", "patched"):
        assert "ORCH-CANARY-PROBE guest" in (rd / "results" / "base" / side
                                             / "canary.json").read_text()
        assert "ORCH-CANARY-PROBE guest:" in (rd / "logs" / f"console-base-{side}.log").read_text()
    found = leaked(canaries, rd, r.stdout, r.stderr)
    assert found == {}, found


def _patch(path: str, old: str, new: str) -> str:
    """A git diff of one file from `old` to `new` (whole texts)."""
    import difflib
    body = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"a/{path}", f"b/{path}", n=3))
    return f"diff --git a/{path} b/{path}\n{body}"


def test_a_hostile_series_on_the_real_kernel_touches_no_trusted_build(tmp_path, real_cache):
    """A series whose top-level Makefile (read by make in the build
    directory) tries what the stand-in tests try one by one: report its
    privileges, configure ccache for later builds, plant a file in the build
    directory, and re-date the object of the C file it changes so that its
    change is never compiled. On the real 7.2.13 tree and Kbuild: the build
    runs as nobody without capabilities, the trusted build directory and
    ccache get none of it, and no kernel without the change comes out: the
    emptied object breaks the link, or orch's check refuses the kernel
    (exit 4), or Kbuild compiles the file anyway and the kernel has it."""
    import re
    import subprocess

    from helpers import PORT

    from orchestrator.source import tree as treemod
    base = re.search(r"base-commit: (\w+)", PORT.read_text()).group(1)
    repo = treemod.open_tree(None).repo

    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "show", f"{base}:{path}"],
                              capture_output=True, text=True, check=True).stdout
    make, filemap = show("Makefile"), show("mm/filemap.c")
    hostile = ("# orch test data: a hostile build step (tests/test_sandbox_e2e.py)\n"
               "$(info ORCH-HOSTILE $(shell echo uid $$(id -u) "
               "$$(grep CapEff /proc/self/status); "
               "printf 'prefix_command = /bin/true\\n' > $$CCACHE_DIR/ccache.conf; "
               "touch orch-planted; touch -d '+1 year' mm/filemap.o 2>&1))\n")
    diff = (_patch("Makefile", make, make.replace("\n# That's our default target", "\n" + hostile
                                                    + "\n# That's our default target", 1))
            + _patch("mm/filemap.c", filemap,
                     filemap + "\nint orch_hostile_change(void)\n{\n\treturn 42;\n}\n"))
    assert "ORCH-HOSTILE" in diff and "orch_hostile_change" in diff
    mbox = tmp_path / "hostile.mbox"
    mbox.write_text("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
                    "From: Mallory <mallory@example.org>\n"
                    "Date: Fri, 4 Dec 2026 12:00:00 +0000\n"
                    f"Subject: [PATCH] mm: a hostile build step ({secrets.token_hex(4)})\n\n"
                    f"base-commit: {base}\n---\n{diff}-- \n2.39.5\n\n")
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(mbox), "--config", "base", "--build-only",
                  "--run-dir", str(rd))
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if r.returncode == 0:
        # Kbuild compiled mm/filemap.c anyway (its command or a header it
        # includes changed since the trusted directory was built, which
        # depends on what this cache built last): the trick failed, and
        # the kernel holds the change.
        key = run_json(rd)["configs"][0]["patched"]["build"]["key"]
        assert "orch_hostile_change" in (real_cache / "kernels" / key / "System.map").read_text()
    else:
        assert r.returncode == 4, r.stderr[-3000:]
        assert run_json(rd)["verdict"] != "PASS"
    log = (rd / "logs" / "build-base-patched.log").read_text()
    assert "ORCH-HOSTILE uid 65534 CapEff: 0000000000000000" in log, log[-3000:]
    ws = next((real_cache / "work").glob("linux-source-7.2-*"))
    assert not (ws / "build" / "base" / "orch-planted").exists()
    assert not (real_cache / "ccache" / "ccache.conf").exists()
    assert list((real_cache / "layers").iterdir()) == []
