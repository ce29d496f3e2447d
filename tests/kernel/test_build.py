"""What orch does around a build, on a stand-in tree with Kbuild's make
interface (tests/data/minikernel: real make, gcc and ccache, seconds per
build): --each-patch, the warning diff, ccache figures, the kernel cache
and its corruption, interrupted builds, disk full. The same paths run on
the real kernel in test_kernel_e2e.py and test_crash_e2e.py."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    FIXED,
    build_only,
    git,
    one_error_line,
    processes_mentioning,
    run_json,
    series,
    sigterm_when,
)

from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.progress import Progress
from orchestrator.guest import vm
from orchestrator.run import series_run as test_cmd

# Compiled at every link, as in Kbuild: the banner (init/version.o, new
# each build) and the compressed kernel (piggy.o, which never uses ccache).
LINK = 2

BROKEN = "int mini_new(void)\n{\n\treturn undeclared_thing;\n}\n"
WARNS = "int mini_new(void)\n{\n\tint x;\n\treturn 1;\n}\n"


def test_each_patch_names_the_first_patch_that_breaks_the_build(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new (broken)", {"new.c": BROKEN}),
                                        ("mini: fix mini_new", {"new.c": FIXED})])
    # The series as a whole builds ...
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    assert run_json(rd)["verdict"] == "BUILT"
    # ... but bisecting through it would hit a broken build at patch 1.
    r, rd = build_only(env, tmp_path, mini, mbox, "--each-patch", rd_name="run2")
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert 'patch 1/2 "mini: add mini_new (broken)" breaks the build' in line
    assert "undeclared_thing" in line
    rec = run_json(rd)
    assert rec["verdict"] == "PATCHED-BUILD-FAILED"
    assert rec["each_patch"][0]["status"] == "failed"
    assert "undeclared_thing" in (rd / "logs" / "build-base-patch1of2.log").read_text()


def test_each_patch_clean_series_builds_every_step(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add a", {"a.c": FIXED.replace("new", "a")}),
                                        ("mini: add b", {"b.c": FIXED.replace("new", "b")}),
                                        ("mini: add c", {"c.c": FIXED.replace("new", "c")})])
    r, rd = build_only(env, tmp_path, mini, mbox, "--each-patch")
    assert r.returncode == 0, r.stderr
    rec = run_json(rd)
    assert [s["status"] for s in rec["each_patch"]] == ["ok", "ok"]
    # Incremental: each step compiles only the file its patch added.
    assert [s["configs"]["base"]["compiled"] for s in rec["each_patch"]] == [1 + LINK] * 2
    assert rec["configs"][0]["patched"]["build"]["compiled"] == 1 + LINK


def test_patch_that_does_not_compile_exit_4(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: break it", {"main.c": BROKEN})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert "patched build of config base failed" in line and "undeclared_thing" in line
    rec = run_json(rd)
    assert rec["configs"][0]["baseline"]["build"]["status"] == "ok"
    assert rec["configs"][0]["patched"]["build"]["status"] == "failed"


def test_warnings_the_series_adds(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": WARNS})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    w = run_json(rd)["configs"][0]["warnings"]
    # Only the new one: old.c's warning is the baseline's; no line numbers.
    assert w["status"] == "compared"
    assert w["added"] == ["new.c: unused variable 'x' [-Wunused-variable]"]
    assert w["removed"] == []
    assert "adds 1 compiler warning" in r.stderr


def test_cache_second_run_compiles_nothing_and_ccache_counts(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    c = run_json(rd)["configs"][0]
    # Every compile of this build is counted (the first build's hit rate is
    # not asserted: ccache 4.7 now and then reports a direct hit for one of
    # two files in a fresh cache, with the right object).
    for side in ("baseline", "patched"):
        b = c[side]["build"]
        assert b["uncached"] == ["arch/x86/boot/compressed/piggy.S"]
        assert b["ccache"]["hits"] + b["ccache"]["misses"] + 1 == b["compiled"]
    assert c["patched"]["build"]["compiled"] == 1 + LINK
    # new.c, never seen before, and the new build's banner
    assert c["patched"]["build"]["ccache"]["misses"] == 2
    r, rd = build_only(env, tmp_path, mini, mbox, rd_name="run2")
    c = run_json(rd)["configs"][0]
    assert c["baseline"]["build"]["status"] == "cached"
    assert c["patched"]["build"]["status"] == "cached"
    # Kernel cache and build directories gone: everything comes from ccache.
    cache = Path(env["ORCH_CACHE"])
    shutil.rmtree(cache / "kernels")
    shutil.rmtree(cache / "work")
    r, rd = build_only(env, tmp_path, mini, mbox, rd_name="run3")
    c = run_json(rd)["configs"][0]
    # Every object from ccache but the banner, which is new in every build.
    st = c["baseline"]["build"]["ccache"]
    assert (st["hits"], st["misses"]) == (2, 1)
    assert "ccache hit rate 67%" in r.stderr


def test_corrupt_cached_kernel_is_rebuilt_not_booted(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    key = run_json(rd)["configs"][0]["patched"]["build"]["key"]
    img = Path(env["ORCH_CACHE"]) / "kernels" / key / "bzImage"
    img.write_bytes(img.read_bytes()[:10])  # truncated
    r, rd = build_only(env, tmp_path, mini, mbox, rd_name="run2")
    assert r.returncode == 0, r.stderr
    c = run_json(rd)["configs"][0]
    assert c["baseline"]["build"]["status"] == "cached"
    assert c["patched"]["build"]["status"] == "ok"   # rebuilt
    assert "failed its checksum" in (rd / "logs" / "build-base-patched.log").read_text()
    assert img.stat().st_size > 10


def test_sigterm_during_build_stops_make_and_the_next_build_recovers(env, tmp_path, mini):
    """A killed baseline build leaves half-written files in the trusted
    build directory: the next build removes them (orch's marker is in its
    notes beside the directory, not in it)."""
    (mini / "SLOW").write_text("1\n")
    git(mini, "add", "SLOW")
    git(mini, "commit", "-q", "-m", "mini: a slow link")
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    rd = tmp_path / "run"
    cache = env["ORCH_CACHE"]
    # make's output is synced per target, so watch for the long step itself.
    code, err = sigterm_when(["--build-only", "--mbox", str(mbox), "--tree", str(mini),
                              "--run-dir", str(rd)], tmp_path, env,
                             lambda: any("sleep 120" in x for x in processes_mentioning(cache)),
                             within=60)
    assert code == 130, err
    time.sleep(0.5)
    assert processes_mentioning(cache) == []       # bwrap, make, the recipe's shell: gone
    rec = run_json(rd)
    assert rec["state"] == "interrupted"
    ws = next((Path(cache) / "work").glob("tree-*"))
    builddir, marker = ws / "build" / "base", ws / "meta" / "base" / "building"
    assert marker.exists() and not (builddir / ".orch-building").exists()
    # A half-written object from the killed build: newer than the marker.
    (builddir / "main.o").write_bytes(b"trunc")
    (mini / "SLOW").unlink()
    git(mini, "commit", "-q", "-am", "mini: no slow link")
    r, rd2 = build_only(env, tmp_path, mini, mbox, rd_name="run2")
    assert r.returncode == 0, r.stderr
    assert "last build here was interrupted" in (rd2 / "logs" / "build-base-baseline.log").read_text()
    assert (builddir / "main.o").read_bytes() != b"trunc"
    assert not marker.exists()


def test_sigterm_during_a_series_build_leaves_the_trusted_directory_alone(env, tmp_path, mini):
    """A series' build works in a layer: killed, the layer is thrown away and
    the trusted directory is as the baseline left it."""
    mbox = series(mini, tmp_path, "s", [("mini: slow step", {"SLOW": "1\n"})])
    cache = env["ORCH_CACHE"]
    code, err = sigterm_when(["--build-only", "--mbox", str(mbox), "--tree", str(mini),
                              "--run-dir", str(tmp_path / "run")], tmp_path, env,
                             lambda: any("sleep 120" in x for x in processes_mentioning(cache)),
                             within=60)
    assert code == 130, err
    time.sleep(0.5)
    assert processes_mentioning(cache) == []
    ws = next((Path(cache) / "work").glob("tree-*"))
    assert not (ws / "meta" / "base" / "building").exists()
    assert list((Path(cache) / "layers").iterdir()) == []     # thrown away at exit
    vmlinux = (ws / "build" / "base" / "vmlinux").read_bytes()
    fast = series(mini, tmp_path, "t", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd2 = build_only(env, tmp_path, mini, fast, rd_name="run2")
    assert r.returncode == 0, r.stderr
    assert (ws / "build" / "base" / "vmlinux").read_bytes() == vmlinux   # the baseline's, still


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI is root)")
def test_disk_full_during_build_is_one_line_and_keeps_the_record(env, tmp_path, mini):
    cache = tmp_path / "smallfs"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(cache)], check=True)
    try:
        env["ORCH_CACHE"] = str(cache)
        mbox = series(mini, tmp_path, "s", [("mini: big output", {"BIG": "1\n"})])
        r, rd = build_only(env, tmp_path, mini, mbox)
        assert r.returncode == 4, r.stderr
        line = one_error_line(r.stderr)
        assert "patched build of config base failed: disk full" in line
        rec = run_json(rd)
        assert rec["configs"][0]["baseline"]["build"]["status"] == "ok"
        assert rec["verdict"] == "PATCHED-BUILD-FAILED"
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_whole_run_timeout_stops_a_long_build(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: slow step", {"SLOW": "1\n"})])
    t0 = time.monotonic()
    r, rd = build_only(env, tmp_path, mini, mbox, "--timeout", "8")
    assert time.monotonic() - t0 < 60
    assert r.returncode == 5, r.stderr
    assert "whole-run timeout (8s) ran out during the patched build" in one_error_line(r.stderr)
    assert run_json(rd)["configs"][0]["baseline"]["build"]["status"] == "ok"
    assert processes_mentioning(env["ORCH_CACHE"]) == []


def test_several_configs_build_together_under_one_job_budget(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": WARNS})])
    r, rd = build_only(env, tmp_path, mini, mbox, "--config", "base", "--config", "lockstat",
                       "--jobs", "2")
    assert r.returncode == 0, r.stderr
    rec = run_json(rd)
    assert [c["name"] for c in rec["configs"]] == ["base", "lockstat"]
    for c in rec["configs"]:
        assert c["baseline"]["build"]["status"] == "ok"
        assert c["patched"]["build"]["compiled"] == 1 + LINK
        assert c["warnings"]["added"] == ["new.c: unused variable 'x' [-Wunused-variable]"]
    # Both makes were clients of orch's jobserver, not -jN each.
    log = (rd / "logs" / "build-lockstat-patched.log").read_text()
    assert " -j" not in log.splitlines()[0]
    assert "matrix:" in r.stdout and "lockstat" in r.stdout.split("matrix:")[1]


def test_worktree_is_free_while_the_kernels_boot(env, tmp_path, mini, monkeypatch):
    """The worktree lock covers apply and builds only: by the time the boot
    stage starts (its KVM probe is its first step), another run could take
    the worktree. The probe here checks the lock and stops the run; booting
    a real kernel is test_kernel_e2e.py's."""
    monkeypatch.setenv("ORCH_CACHE", env["ORCH_CACHE"])
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    seen = []

    def probe(image):
        (lock,) = Path(env["ORCH_CACHE"]).glob("work/*/lock")
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises while held
            seen.append("free")
        finally:
            os.close(fd)
        raise OrchError("stop here", Exit.INFRA)
    monkeypatch.setattr(vm, "probe_kvm", probe)
    opts = test_cmd.Options(mbox=mbox, offline=True, tree=mini, configs=["base"],
                            run_dir=tmp_path / "run", jobs=2, argv=["orch", "test"],
                            guest_tests=["guest_tests/test_blockdev_dontcache.py"])
    with pytest.raises(OrchError, match="stop here"):
        test_cmd.test(opts, Progress(stream=open(os.devnull, "w")))
    assert seen == ["free"]
    rec = run_json(tmp_path / "run")
    assert rec["configs"][0]["patched"]["build"]["status"] == "ok"
