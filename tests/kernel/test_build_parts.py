"""The pieces builds are made of, each against the real thing: make's
jobserver, ccache's stats log, the warning parser, the progress line, and
build.build's own steps (the cache lookup as a build takes it, Kconfig's
and make's failures, the build directory's generations); the sandbox is in
test_sandbox.py, the kernel cache in test_kcache.py."""

from __future__ import annotations

import io
import os
import subprocess
import time

import pytest
from helpers import git
from test_kcache import BANNER, COMPLETE, _stored

from orchestrator.core import proc
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.jobserver import JobServer
from orchestrator.core.models import Kernel
from orchestrator.core.progress import Progress
from orchestrator.guest import junit, vm
from orchestrator.kernel import (
    build,
    buildtree,
    ccache_guard,
    ccache_stats,
    compiler_warnings,
    kcache,
    kconfig,
)


def test_compiler_wrapper_is_reachable_in_the_sandbox_from_under_tmp(tmp_path, monkeypatch):
    """The sandbox's /tmp is private; orch in a clone under /tmp (as CI's)
    still runs its wrapper there. Seen failing before the wrapper was bound."""
    guard = tmp_path / "orch" / "data" / "ccache-guard.sh"
    guard.parent.mkdir(parents=True)
    guard.write_bytes(ccache_guard.GUARD.read_bytes())
    guard.chmod(0o755)
    monkeypatch.setattr(ccache_guard, "GUARD", guard)
    (tmp_path / "b").mkdir()
    make = build._maker(buildtree.BuildDir(tmp_path / "b", tmp_path / "meta"), build.BuildOptions(),
                        build.build_env())
    r = make([*ccache_guard.cc().split(), "--version"], tmp_path / "log", tmp_path / "b")
    assert r.ok, r.output
    assert "gcc" in (tmp_path / "log").read_text()


def test_jobserver_caps_concurrent_makes(tmp_path):
    """Two makes asking for -j4 each share a budget of 2 jobs."""
    (tmp_path / "Makefile").write_text(
        "all: a b c d\na b c d:\n\t@echo start $$(date +%s%N); sleep 0.5; echo end $$(date +%s%N)\n")
    with JobServer(jobs=2, clients=2) as js:
        env = {**os.environ, "MAKEFLAGS": js.makeflags()}
        procs = [subprocess.Popen(["make", "-s", "-C", str(tmp_path), "-f", "Makefile"],
                                  env=env, pass_fds=js.fds, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=60)[0] for p in procs]
    events = sorted((int(t), +1 if w == "start" else -1)
                    for out in outs for w, t in (l.split() for l in out.splitlines()))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert len(events) == 16
    assert peak == 2


def test_ccache_stats_log(tmp_path):
    (tmp_path / "t.c").write_text("int f(void) { return 0; }\n")
    log = tmp_path / "stats.log"
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "cc"), "CCACHE_STATSLOG": str(log)}
    for _ in range(3):
        subprocess.run(["ccache", "gcc", "-c", "t.c", "-o", "t.o"], cwd=tmp_path, env=env,
                       check=True)
    assert ccache_stats.read(log) == {"hits": 2, "misses": 1, "uncacheable": 0,
                                      "hit_rate": 0.667}
    assert ccache_stats.read(tmp_path / "none")["hit_rate"] is None


KBUILD_LOG = """\
  CC      mm/filemap.o
../src/mm/filemap.c: In function 'folio_end_dropbehind':
../src/mm/filemap.c:1612:13: warning: unused variable \u2018x\u2019 [-Wunused-variable]
 1612 |         int x;
  CC      block/fops.o
  CC      fs/buffer.o
In file included from ../src/fs/buffer.c:12:
../src/include/linux/foo.h:3:1: warning: 'y' defined but not used [-Wunused-function]
  LD      vmlinux.o
vmlinux.o: warning: objtool: f+0x1: call to g() leaves .noinstr.text section
"""


def test_warning_parser_and_diff(tmp_path):
    src, builddir = tmp_path / "src", tmp_path / "build"
    (src).mkdir(), builddir.mkdir()
    units = compiler_warnings.parse_log(KBUILD_LOG, src, builddir)
    assert units["mm/filemap.o"] == ["mm/filemap.c: unused variable 'x' [-Wunused-variable]"]
    assert units["block/fops.o"] == []
    assert units["fs/buffer.o"] == ["include/linux/foo.h: 'y' defined but not used [-Wunused-function]"]
    assert units["vmlinux.o"][0].startswith("vmlinux.o: objtool: f+0x1")
    base = {"complete": True, "units": {"mm/filemap.o": [], "fs/buffer.o": units["fs/buffer.o"],
                                        "vmlinux.o": []}}
    patched = compiler_warnings.update(builddir / "warnings.json", units, full_build=True)
    d = compiler_warnings.diff(base, patched)
    assert d["added"] == ["mm/filemap.c: unused variable 'x' [-Wunused-variable]",
                          units["vmlinux.o"][0]]
    assert d["removed"] == []
    assert compiler_warnings.diff(None, patched)["status"] == "unknown"
    # Guest-controlled text never reaches a report raw: control characters go.
    evil = compiler_warnings.parse_log("  CC      a.o\na.c:1:1: warning: \x1b[31mred\x07\n",
                                       src, builddir)
    assert "\x1b" not in evil["a.o"][0] and "\x07" not in evil["a.o"][0]


def test_a_warning_replayed_from_another_runners_ccache_is_the_same_warning(tmp_path):
    """ccache replays a compiler's output with the paths of the machine
    that filled it: the baseline runner's worktree, not this one's."""
    src, builddir = tmp_path / "cache" / "work" / "linux-1" / "src", tmp_path / "build"
    src.mkdir(parents=True), builddir.mkdir()
    other = "/builds/runner1/.orch-cache/work/linux-245b9ac1/src/mm/old.c"
    log = f"  CC      mm/old.o\n{other}:3:5: warning: unused variable 'u' [-Wunused-variable]\n"
    units = compiler_warnings.parse_log(log, src, builddir)
    assert units == {"mm/old.o": ["mm/old.c: unused variable 'u' [-Wunused-variable]"]}


def test_progress_line_on_a_tty_only():
    tty, pipe = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (pipe, False)):
        p = Progress(stream, tty=is_tty)
        p.say("baseline build, config base")
        p.status("build base", "baseline base: 10 compiled, mm/filemap.o")
        time.sleep(0.3)
        p.status("build base", "baseline base: 11 compiled, mm/swap.o")
        p.say("baseline build, config base: built in 3s")
        p.done()
    assert "\r\x1b[K" in tty.getvalue() and "11 compiled, mm/swap.o" in tty.getvalue()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in pipe.getvalue() and "compiled," not in pipe.getvalue()


def test_warning_diff_compares_only_what_both_records_know():
    w = "mm/filemap.c: unused variable 'x' [-Wunused-variable]"
    base_partial = {"complete": False, "units": {"fs/buffer.o": []}}
    patched = {"complete": True, "units": {"fs/buffer.o": [], "mm/filemap.o": [w]}}
    d = compiler_warnings.diff(base_partial, patched)
    # The baseline's filemap.o warnings are unknown: not counted as added.
    assert d["status"] == "compared-partial" and d["added"] == []
    base_complete = {"complete": True, "units": {"fs/buffer.o": [], "mm/filemap.o": []}}
    assert compiler_warnings.diff(base_complete, patched)["added"] == [w]
    patched_partial = {"complete": False, "units": {"mm/filemap.o": [w]}}
    assert compiler_warnings.diff(base_complete, patched_partial)["added"] == [w]


def test_guest_harness_command_times_out_a_hung_test(tmp_path):
    """The exact shell command the guest runs, run here: a hung test fails on
    --test-timeout, the next test runs, JUnit and the exit status are written."""
    sel = [f"guest_selftest/test_timeouts.py::{t}" for t in ("test_hangs", "test_after_the_hang")]
    cmd = vm.guest_command(tmp_path, sel, vm.timeout_args(3))
    r = proc.run(["sh", "-c", cmd], timeout=120)
    assert (tmp_path / "harness-rc").read_text().strip() == "1", r.output
    got = {t.name.split("::")[-1]: t for t in junit.parse(tmp_path / "junit.xml")}
    assert got["test_hangs"].status.value == "FAIL" and "Timeout" in got["test_hangs"].message
    assert got["test_after_the_hang"].status.value == "PASS"


def test_guest_command_stays_off_the_kernel_command_line(tmp_path, monkeypatch):
    """The kernel cuts its command line at 2048 bytes, and a cut virtme.exec
    boots the host's init to a login prompt: the harness goes in a file
    and vng's --exec is a short `sh FILE`, however long the selection."""
    seen = {}

    def fake_run(argv, **kw):   # record what vng would get; boot nothing
        seen["argv"] = argv
        return proc.Result(argv, 0, False, None, "")
    monkeypatch.setattr(vm.proc, "run", fake_run)
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "test"))
    res = tmp_path / ("r" * 150) / "results"
    tests = [f"guest_tests/test_mixing.py::test_{'x' * 80}_{i}" for i in range(8)]
    k = Kernel("base", tmp_path / "bzImage", tmp_path, False, 0, None, banner="Linux version x")
    vm.run_tests(k, res, tmp_path / "console.log", tests=tests, expected=tests)
    argv = seen["argv"]
    exec_arg = argv[argv.index("--exec") + 1]
    assert exec_arg == f"sh {res / 'harness.sh'}"
    script = (res / "harness.sh").read_text()
    assert all(t in script for t in tests) and "--junitxml" in script


# --- build.build's steps --------------------------------------------------

KEY = "k" * 32
KC = kconfig.KConfig("base", "tinyconfig", "", {})


def test_the_status_line_counts_what_make_compiles():
    said: list[str | None] = []
    compiled = build._Compiled(said.append, "patched base")
    for line in ["  CC      mm/filemap.o", "  LD      vmlinux.o",
                 "  AS      arch/x86/entry/entry_64.o",
                 "mm/filemap.c:3:1: warning:   CC in a message",
                 "  CC [M]  drivers/" + "x" * 60 + ".o"]:
        compiled(line)
    assert compiled.count == 3
    assert said == ["patched base: 1 compiled, mm/filemap.o",
                    "patched base: 2 compiled, arch/x86/entry/entry_64.o",
                    "patched base: 3 compiled, " + ("drivers/" + "x" * 60 + ".o")[-40:]]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _bd(tmp_path):
    (tmp_path / "b").mkdir(exist_ok=True)
    return buildtree.BuildDir(tmp_path / "b", tmp_path / "meta")


def test_a_good_cached_kernel_is_taken(tmp_path, cache):
    entry = _stored(tmp_path, KEY)
    log = tmp_path / "log"
    log.write_text("")
    k = build._from_cache(KEY, _bd(tmp_path), KC, log, "baseline", time.monotonic())
    assert (k.cached, k.image, k.dotconfig, k.key) == (True, entry.image, entry.config, KEY)
    assert k.banner == BANNER[:-2].decode() and k.warnings == COMPLETE and k.compiled == 0
    assert log.read_text() == f"# cached kernel {entry.path}\n"


def test_no_entry_is_built_without_a_word(tmp_path, cache):
    log = tmp_path / "log"
    log.write_text("")
    assert build._from_cache(KEY, _bd(tmp_path), KC, log, "baseline", 0) is None
    assert log.read_text() == ""


def test_a_series_kernel_is_not_a_baseline(tmp_path, cache):
    _stored(tmp_path, KEY, origin=kcache.Origin.SERIES)
    log = tmp_path / "log"
    log.write_text("")
    bd = _bd(tmp_path)
    assert build._from_cache(KEY, bd, KC, log, "baseline", 0) is None
    assert log.read_text() == (f"# orch: cached kernel {KEY} was built by a series' build, "
                               "not a baseline build; rebuilding\n")
    assert not bd.state().get("remove")
    assert build._from_cache(KEY, bd, KC, log, "patched", 0).cached


def test_a_stale_entry_is_rebuilt_and_relinked(tmp_path, cache):
    entry = _stored(tmp_path, KEY, header="7.2.13 (orch@orch) #4 SMP Thu Nov 27 23:38:06 UTC 2026")
    (entry.path / "banner").unlink()
    log = tmp_path / "log"
    log.write_text("")
    bd = _bd(tmp_path)
    assert build._from_cache(KEY, bd, KC, log, "patched", 0) is None
    assert log.read_text().startswith(f"# orch: cached kernel {KEY} the bzImage header says")
    assert log.read_text().endswith("a stale object was linked; rebuilding\n")
    # The stale object may still be in this build directory: relink.
    assert bd.state()["remove"] == ["vmlinux", build.IMAGE]


@pytest.mark.parametrize("side, code", [("baseline", Exit.INFRA), ("patched", Exit.PATCHED_BUILD)])
def test_a_broken_kconfig_is_the_series_fault_on_the_patched_side(tmp_path, side, code):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("tinyconfig:\n\t@echo no Kconfig here; false\n")
    bd = _bd(tmp_path)
    make = build._maker(bd, build.BuildOptions(sandbox=False), build.build_env())
    with pytest.raises(OrchError) as e:
        build._configure(src, bd, KC, tmp_path / "log", side, make)
    assert e.value.exit == code
    assert str(e.value) == f"{side} build of config base failed: make tinyconfig failed " \
        f"(see {tmp_path / 'log'})"


@pytest.mark.parametrize("side, code", [("baseline", Exit.INFRA), ("patched", Exit.PATCHED_BUILD)])
def test_a_failed_make_says_its_first_error(tmp_path, side, code):
    log = tmp_path / "log"
    failed = proc.run(["sh", "-c", "echo 'a.c:1:1: error: broken' >&2; exit 2"], log=log)
    with pytest.raises(OrchError) as e:
        build._check_made(failed, _bd(tmp_path), KC, side, 60, log)
    assert e.value.exit == code
    assert str(e.value) == f"{side} build of config base failed: a.c:1:1: error: broken (see {log})"
    slow = proc.run(["sleep", "30"], log=log, timeout=0.2)
    with pytest.raises(OrchError, match=f"^{side} build of config base timed out after 0s: "):
        build._check_made(slow, _bd(tmp_path), KC, side, 0.2, log)


def test_make_that_leaves_no_image_failed(tmp_path):
    ok = proc.run(["true"])
    bd = _bd(tmp_path)
    with pytest.raises(OrchError, match="^patched build of config base failed: see the log"):
        build._check_made(ok, bd, KC, "patched", 60, tmp_path / "log")
    (tmp_path / "b" / "arch/x86/boot").mkdir(parents=True)
    (tmp_path / "b" / build.IMAGE).write_bytes(b"an image")
    build._check_made(ok, bd, KC, "patched", 60, tmp_path / "log")


def test_a_trusted_build_starts_a_generation_a_layer_does_not(tmp_path):
    trusted = _bd(tmp_path)
    build._mark_built(trusted, "t1")
    build._mark_built(trusted, "t2")
    assert trusted.state() == {"tree": "t2", "generation": 2}
    layer = buildtree.BuildDir(tmp_path / "b", tmp_path / "lmeta",
                               buildtree.Layer(tmp_path / "layer", 2))
    build._mark_built(layer, "t3")
    assert layer.state() == {"tree": "t3"} and trusted.state()["generation"] == 2


def test_ccache_is_off_only_where_headers_hide_files_from_it(tmp_path):
    src = tmp_path / "src"
    (src / "include").mkdir(parents=True)
    (src / "include" / "plain.h").write_text("int f(void);\n")
    git(src, "init", "-q")
    git(src, "add", ".")
    bd, log = _bd(tmp_path), tmp_path / "log"
    log.write_text("")
    env: dict[str, str] = {}
    build._ccache_logs_and_guard(src, bd, f"plain-{tmp_path}", env, log)
    assert env == {"CCACHE_STATSLOG": str(bd.path / build.STATSLOG),
                   "ORCH_UNCACHED_LOG": str(bd.path / ccache_guard.LOG)}
    assert log.read_text() == ""
    (src / "include" / "blob.h").write_text('asm(".incbin \\"blob.bin\\"");\n')
    git(src, "add", ".")
    build._ccache_logs_and_guard(src, bd, f"blob-{tmp_path}", env, log)
    assert env["CCACHE_DISABLE"] == "1"
    assert log.read_text() == ("# orch: ccache off for this build: these headers pull files in "
                               "with assembler directives ccache cannot see: include/blob.h\n")
