"""Mutation check of the guest suite on real kernels (TCG here), for three
mutants; scripts/mutants.py runs them all (table in guest_tests/README.md).

Each mutant (tests/data/patches/mutant-*.mbox) is the RFC v3 7.2.13 port
plus one small bug that a guest test claims to catch. Each run boots the
test that claims to catch it and its control (the same test on the
task-completion path, which the bug does not touch): the first must FAIL
with the bug's own signature, the control must PASS, and orch's status is
1. The two deferral mutants share a selection, so the baseline boots once
for them (its results are kept); each mutant costs an incremental build of
mm/filemap.c and one short boot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_kernel_e2e import assert_booted_as_built, orch, rec

pytestmark = pytest.mark.slow

PATCHES = Path(__file__).resolve().parent / "data" / "patches"
IRQ = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts"
TASK = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts"
CACHED = "guest_tests/test_mixing.py::test_cached_then_dontcache_stays_cached"


def _check_irq_partly_cached(t: dict) -> None:
    # The off-by-one leaves the first folio of each drained batch: some,
    # not all, of the 16 pages.
    left = int(t["properties"]["pages_still_cached"])
    assert 0 < left < 16, t


def _check_irq_all_cached(t: dict) -> None:
    # 16 folios never fill the 31-folio batch: the worker never runs.
    assert t["properties"]["pages_still_cached"] == "16", t
    assert "16/16 DONTCACHE folios still cached" in t["message"]


def _check_cached_evicted(t: dict) -> None:
    assert "already-cached folios" in t["message"], t
    assert t["properties"]["pages_cached"] != "16/16", t


@pytest.mark.parametrize("mutant,caught,check", [
    pytest.param(m, c, f, id=m) for m, c, f in (
        ("work-only-when-batch-full", IRQ, _check_irq_all_cached),
        ("worker-skips-first-folio", IRQ, _check_irq_partly_cached),
        ("marks-cached-folios", CACHED, _check_cached_evicted))])
def test_mutant_fails_its_test_and_passes_the_control(tmp_path, mutant, caught, check):
    rd = tmp_path / "run"
    selection = [caught, TASK]
    args = ["--mbox", str(PATCHES / f"mutant-{mutant}.mbox"), "--config", "base",
            "--run-dir", str(rd)]
    for t in selection:
        args += ["--guest-test", t]
    r = orch(tmp_path, *args)
    assert r.returncode == 1, r.stderr
    data = rec(rd)
    assert data["exit_code"] == 1 and data["verdict"] == "FAIL"
    assert [p["status"] for p in data["series"]["patches"]] == ["applied"] * 3
    (cfg,) = data["configs"]
    tests = {t["name"]: t for t in cfg["patched"]["tests"]}
    assert sorted(tests) == sorted(selection), tests
    assert tests[caught]["status"] == "FAIL", tests[caught]
    check(tests[caught])
    assert tests[TASK]["status"] == "PASS", tests[TASK]
    assert "control" in tests[TASK]["properties"] and \
        tests[TASK]["properties"]["control"].startswith("passed"), tests[TASK]
    assert caught in data["error"]
    # A wrong result, not a crash: no splat, and the kernel that booted is
    # the mutant's own (not the port's, built in the same directory).
    assert cfg["new_splats"] == []
    assert_booted_as_built(cfg)
