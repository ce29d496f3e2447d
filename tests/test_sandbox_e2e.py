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
from orchestrator import paths

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
