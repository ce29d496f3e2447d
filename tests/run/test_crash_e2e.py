"""Crash cases on a real kernel under QEMU (TCG here), once per suite.

Small patches written for these tests (tests/data/patches, each on the
7.2.13 base): one that does not compile, one that hits BUG() on the
RWF_DONTCACHE write path (and adds a compiler warning), one that panics
at boot, one with an AB-BA lock inversion (lockdep, config lockdep). The
baseline kernels are the ones test_kernel_e2e.py builds (config base) or
one more build (config lockdep); each patch then costs an incremental build
of mm/filemap.c and a short boot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import (
    PATCHES,
    REPO,
    assert_booted_as_built,
    orch_real,
    processes_mentioning,
    run_json,
    sigterm_when,
)

pytestmark = pytest.mark.slow

EXT4 = "guest_tests/test_filesystems.py::test_ext4_new_allocation_evicts[dioread_nolock]"
SELFTEST = "guest_selftest/test_timeouts.py"
HANG = "guest_selftest/test_oops_holding_lock.py"


def last_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    last = stderr.rstrip().splitlines()[-1]
    assert last.startswith("orch: error: "), stderr
    return last


def test_patch_that_does_not_compile_exit_4(tmp_path):
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-compile-error.mbox"),
                  "--config", "base", "--run-dir", str(rd))
    assert r.returncode == 4, r.stderr
    line = last_error(r.stderr)
    assert "patched build of config base failed" in line
    assert "mm/filemap.c" in line and "error:" in line and "__folio_set_dropbehind" in line
    (cfg,) = run_json(rd)["configs"]
    assert cfg["baseline"]["build"]["status"] in ("cached", "ok")
    assert cfg["patched"]["build"]["status"] == "failed"
    assert "boot" not in cfg["patched"] or cfg["patched"]["boot"]["status"] == "not run"


def test_bug_on_the_dontcache_write_path_is_a_regression(tmp_path):
    """The baseline writes with RWF_DONTCACHE to ext4 fine; the patched
    kernel hits BUG(), which kills the guest's test process: the splat is
    new on patched (exit 1), the harness crash is reported, the warning
    the patch adds is listed, and the baseline's results are kept."""
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-bug-on-dontcache-write.mbox"),
                  "--config", "base", "--guest-test", EXT4, "--test-timeout", "120",
                  "--run-dir", str(rd))
    assert r.returncode == 1, r.stderr
    data = run_json(rd)
    (cfg,) = data["configs"]
    assert [t["status"] for t in cfg["baseline"]["tests"]] == ["PASS"]
    kinds = {s["kind"] for s in cfg["new_splats"]}
    assert kinds & {"bug", "oops"}, cfg["new_splats"]
    assert any("mm/filemap.c" in s["title"] or "__filemap_get_folio" in " ".join(s["frames"])
               for s in cfg["new_splats"]), cfg["new_splats"]
    assert "patched kernel" in data["error"]
    # pytest died in the guest before writing JUnit: the kernel log's marks
    # name the test it died in.
    assert cfg["patched"]["boot"]["died_in"] == EXT4
    assert [(t["name"], t["status"]) for t in cfg["patched"]["tests"]] == [(EXT4, "ERROR")]
    assert cfg["warnings"]["added"] == [
        "mm/filemap.c: unused variable 'dontcache_seq' [-Wunused-variable]"]
    assert "new compiler warning: mm/filemap.c: unused variable 'dontcache_seq'" in r.stdout
    assert cfg["verdict"] == "FAIL"
    assert_booted_as_built(cfg)

    # A crash is the kernel's answer and is kept like a complete run: the
    # same series again boots nothing and is judged the same, console and all.
    rd2 = tmp_path / "run2"
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-bug-on-dontcache-write.mbox"),
                  "--config", "base", "--guest-test", EXT4, "--test-timeout", "120",
                  "--run-dir", str(rd2))
    assert r.returncode == 1, r.stderr
    (cfg2,) = run_json(rd2)["configs"]
    assert cfg2["patched"]["boot"]["cached"] is True and cfg2["baseline"]["boot"]["cached"]
    assert cfg2["patched"]["boot"]["died_in"] == EXT4
    assert cfg2["new_splats"] == cfg["new_splats"] and cfg2["verdict"] == "FAIL"
    assert cfg2["patched"]["tests"] == cfg["patched"]["tests"]


def test_hung_guest_is_killed_and_its_console_kept(tmp_path):
    """A boot that outlives --guest-timeout is killed: ERROR for that side,
    the console tail in run.json, no QEMU left behind. The hang is the
    kernel's, not the machine's speed: on the BUG kernel the guest test's
    second write waits forever for the inode lock its oopsed child held
    (guest_selftest/test_oops_holding_lock.py); the baseline passes it."""
    rd = tmp_path / "run"
    t0 = time.monotonic()
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-bug-on-dontcache-write.mbox"),
                  "--config", "base", "--guest-test", HANG, "--test-timeout", "60",
                  "--guest-timeout", "90", "--run-dir", str(rd))
    assert time.monotonic() - t0 < 600
    assert r.returncode == 1, r.stderr
    (cfg,) = run_json(rd)["configs"]
    assert [t["status"] for t in cfg["baseline"]["tests"]] == ["PASS"]
    boot = cfg["patched"]["boot"]
    assert boot["status"] == "failed" and "did not finish within 90s, killed" in boot["error"]
    assert boot["console_tail"]
    # The hang's test is named (from the start mark in the kernel log) and
    # is ERROR; the baseline's kept run ended normally.
    (hang_id,) = run_json(rd)["expected_tests"]
    assert boot["died_in"] == hang_id and f"(during {hang_id})" in boot["error"]
    assert cfg["patched"]["tests"][0]["status"] == "ERROR"
    assert cfg["baseline"]["boot"]["harness_rc"] == 0
    assert {s["kind"] for s in cfg["new_splats"]} & {"bug", "oops"}, cfg["new_splats"]
    assert processes_mentioning(str(rd)) == []
    assert_booted_as_built(cfg)


def test_panic_at_boot_and_per_test_timeout(tmp_path):
    """Baseline: a guest test that hangs fails on --test-timeout and the next
    test still runs. Patched: the kernel panics before userspace."""
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-panic-at-boot.mbox"),
                  "--config", "base", "--guest-test", SELFTEST, "--test-timeout", "15",
                  "--run-dir", str(rd))
    assert r.returncode == 1, r.stderr
    data = run_json(rd)
    (cfg,) = data["configs"]
    base = {t["name"].split("::")[-1]: t for t in cfg["baseline"]["tests"]}
    assert base["test_hangs"]["status"] == "FAIL" and "Timeout" in base["test_hangs"]["message"]
    assert base["test_after_the_hang"]["status"] == "PASS"
    # The guest wrote its /tmp; the host's /tmp and the repository stay untouched.
    assert base["test_host_outside_results_is_read_only"]["status"] == "PASS"
    assert not Path("/tmp/orch-guest-was-here").exists()
    assert not Path("/orch-guest-was-here").exists()
    assert not (REPO / "guest-was-here").exists()
    boot = cfg["patched"]["boot"]
    assert boot["error"] == "kernel panicked: dontcache selftest: folio batch corrupted"
    assert any("Kernel panic" in l for l in boot["console_tail"])
    assert [s["kind"] for s in cfg["new_splats"]] == ["panic"]
    assert "verdict: FAIL (exit 1)" in r.stdout
    assert "patched guest: kernel panicked: dontcache selftest" in r.stdout
    # Built right after the BUG patch's kernel, in the same build directory
    # (the pair whose piggy.o once collided): this one is its own kernel.
    assert_booted_as_built(cfg)


def test_sigterm_during_a_boot_leaves_no_qemu(tmp_path):
    rd = tmp_path / "run"
    console = rd / "logs" / "console-base-baseline.log"
    code, err = sigterm_when(
        ["--mbox", str(PATCHES / "crash-bug-on-dontcache-write.mbox"), "--config", "base",
         "--guest-test", EXT4, "--rerun-baseline", "--run-dir", str(rd)], tmp_path,
        {**os.environ, "PYTHONPATH": str(REPO)},
        lambda: console.exists() and "Linux version" in console.read_text(errors="replace")
        and any("qemu" in x for x in processes_mentioning(str(rd))), within=300)
    assert code == 130, err
    time.sleep(1)
    assert processes_mentioning(str(rd)) == []   # vng, QEMU, virtiofsd/9p helpers
    data = run_json(rd)
    assert data["state"] == "interrupted"
    assert data["configs"][0]["patched"]["build"]["status"] in ("cached", "ok")


def test_lock_inversion_found_by_lockdep(tmp_path):
    """Config lockdep (base plus PROVE_LOCKING): debug has the same lockdep
    but its KASAN boots cost CI about 11 minutes more."""
    rd = tmp_path / "run"
    r = orch_real(tmp_path, "--mbox", str(PATCHES / "crash-lock-inversion.mbox"),
                  "--config", "lockdep", "--guest-test", EXT4, "--run-dir", str(rd),
                  timeout=5400)
    assert r.returncode == 1, r.stderr
    (cfg,) = run_json(rd)["configs"]
    new = [s for s in cfg["new_splats"] if s["kind"] == "lockdep"]
    assert new and "circular locking dependency" in new[0]["title"], cfg["new_splats"]
    assert not any(s["kind"] == "lockdep" for s in cfg["preexisting_splats"])
    assert [t["status"] for t in cfg["baseline"]["tests"]] == ["PASS"]
    assert_booted_as_built(cfg)
