"""The kernel's own selftests on the real thing: cachestat and mincore built
from the 7.2.13 tree with each kernel (baseline and patched their own), run
by the kernel's runner in a real guest from an ext4 disk, their KTAP read
into the same statuses and verdict as the guest suite.

Runs after test_kernel_e2e.py (by name): the port's kernels are in the
kernel cache, so the first test builds the headers and two small targets
per kernel and boots each kernel once with SHORT_SELECTION and the
kselftests (a new results key); the mutant is one incremental build of
mm/filemap.c and one boot, its baseline's results kept from the first.
"""

from __future__ import annotations

import pytest
from helpers import PATCHES, PORT, SHORT_SELECTION, assert_booted_as_built, orch_real, run_json

pytestmark = pytest.mark.slow

KSFT = ["--kselftest", "cachestat,mincore"]
CACHESTAT = "kselftest/cachestat/test_cachestat"
MINCORE = "kselftest/mincore/mincore_selftest"
MUTANT = PATCHES / "mutant-cachestat-counts-cached-as-evicted.mbox"


def _short(tmp_path, mbox, rd, *extra):
    return orch_real(tmp_path, "--mbox", str(mbox), "--config", "base", "--run-dir", str(rd),
                     *[a for t in SHORT_SELECTION for a in ("--guest-test", t)], *KSFT, *extra)


def test_port_passes_every_kselftest_on_both_kernels_and_reruns_nothing(tmp_path):
    rd = tmp_path / "run"
    r = _short(tmp_path, PORT, rd)
    data = run_json(rd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert data["verdict"] == "PASS" and data["kselftests"] == ["cachestat", "mincore"]
    (cfg,) = data["configs"]
    for ident in (CACHESTAT, MINCORE):
        assert ident in data["expected_tests"]
    comp = {c["name"]: c for c in cfg["comparison"]}
    for side in ("baseline", "patched"):
        built = {b["target"]: b for b in cfg[side]["build"]["kselftests"]}
        assert set(built) == {"cachestat", "mincore"}
        assert "cachestat:test_cachestat" in built["cachestat"]["tests"]
        tests = {t["name"]: t for t in cfg[side]["tests"]}
        # Every kselftest passes on both kernels: the ext4 working directory
        # (cachestat's fsync sub-test and mincore's O_TMPFILE need a real
        # filesystem; on tmpfs or 9p they fail or skip).
        for ident in (CACHESTAT, MINCORE):
            assert tests[ident]["status"] == "PASS", tests[ident]
    for ident in (CACHESTAT, MINCORE):
        assert comp[ident]["transition"] == "passing"
    assert_booted_as_built(cfg)

    # Again: no kernel, no kselftest built, no boot.
    rd2 = tmp_path / "run2"
    r = _short(tmp_path, PORT, rd2)
    again = run_json(rd2)
    assert r.returncode == 0, r.stdout + r.stderr
    (cfg2,) = again["configs"]
    for side in ("baseline", "patched"):
        assert cfg2[side]["build"]["status"] == "cached"
        assert all(b["cached"] for b in cfg2[side]["build"]["kselftests"])
        assert cfg2[side]["boot"]["cached"] is True
    assert cfg2["comparison"] == cfg["comparison"]


def test_a_cachestat_mutant_is_caught_by_the_kselftest_not_the_suite(tmp_path):
    """filemap_cachestat() counting every cached folio as evicted too: the
    DONTCACHE suite (nr_cache, nr_dirty, nr_writeback) passes as with the
    port; the cachestat kselftest (nr_cache + nr_evicted against the pages
    it wrote) regresses. (A mutant reading the dirty mark the wrong way
    round was tried first: the suite's control, a normal write that must
    stay cached and clean, caught that one too.)"""
    rd = tmp_path / "run"
    r = _short(tmp_path, MUTANT, rd)
    data = run_json(rd)
    assert r.returncode == 1, r.stdout + r.stderr
    (cfg,) = data["configs"]
    comp = {c["name"]: c for c in cfg["comparison"]}
    assert comp[CACHESTAT]["baseline"] == "PASS" and comp[CACHESTAT]["patched"] == "FAIL"
    assert comp[CACHESTAT]["transition"] == "regressed"
    assert cfg["problems"]["regressions"] and all(
        CACHESTAT in line for line in cfg["problems"]["regressions"])
    for name in SHORT_SELECTION:
        assert comp[name]["patched"] == "PASS", comp[name]
    assert comp[MINCORE]["patched"] == "PASS"
    # The baseline was booted with this selection by the test above.
    assert cfg["baseline"]["boot"]["cached"] is True
    assert "verdict: FAIL (exit 1)" in r.stdout
    assert_booted_as_built(cfg)
