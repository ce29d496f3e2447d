"""Kselftests in the guest (orchestrator/guest/kselftest_run.py, vm.py,
result_cache.py; issue 28): what a kernel runs of --kselftest, the harness
lines the guest runs after pytest, the ext4 disk that carries the installs,
reading the KTAP files a boot leaves (the kernel's own runner's output, from
tests/data/ktap), kept results, the results key, and the whole of it run
for real: vm.run_tests with a stand-in vng that plays the guest from the
disk image it is handed, and the stand-in guest (tests/standin_guest.py)
running the real run_kselftest.sh (copied from 7.2.13 into the stand-in
tree) on the host.

The installs here are made by hand, as kselftest_build installs a target:
the runner files, the target's programs (small shell scripts printing
KTAP) and kselftest-list.txt.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import standin_guest
from helpers import MINI

from orchestrator import __version__
from orchestrator.core import sandbox
from orchestrator.core.errors import BadInput, OrchError
from orchestrator.core.models import Kernel, KselftestBuild, Status
from orchestrator.guest import kselftest_run, result_cache, vm
from orchestrator.guest.kselftest_run import Selected

SELFTESTS = MINI / "tools" / "testing" / "selftests"   # the real 7.2.13 runner files
KTAP = Path(__file__).resolve().parent.parent / "data" / "ktap"
BANNER = "Linux version 7.2.13-orch (orch@stand-in) (gcc 12) #1 SMP"
P, F, E, S, M = Status.PASS, Status.FAIL, Status.ERROR, Status.SKIP, Status.MISS

# Test programs, as kselftest.h programs print and exit (0 pass, 1 fail, 4 skip).
PASS = 'echo "TAP version 13"; echo 1..2; echo "ok 1 first"; echo "ok 2 second"'
FAIL = ('echo "TAP version 13"; echo 1..2; echo "ok 1 first"; echo "# counters off"; '
        'echo "not ok 2 second"; exit 1')
SKIP = 'echo "TAP version 13"; echo "1..0 # SKIP no widget here"; exit 4'
HANG = 'echo "TAP version 13"; echo 1..1; sleep 600'
DIE = ('echo "TAP version 13"; echo 1..2; echo "ok 1 first"; echo "# ORCH-KSFT:DIE"; '
       'sleep 600')
# Writes in its cwd, which must be a writable directory of its own.
CWD = ('echo probe > ./tmpfile-probe && test -s ./tmpfile-probe && echo "TAP version 13" '
       '&& echo 1..1 && echo "ok 1 cwd is writable" || exit 1')


def make_install(top: Path, target: str, programs: dict[str, str],
                 settings: str | None = None, key: str = "k" * 32) -> KselftestBuild:
    """An install of `target` as `make ... install` leaves it: the runner,
    the programs under target/, the list; and its build."""
    inst = top / f"install-{target.replace('/', '_')}-{key[:4]}"
    inst.mkdir(parents=True)
    shutil.copy2(SELFTESTS / "run_kselftest.sh", inst)
    shutil.copytree(SELFTESTS / "kselftest", inst / "kselftest")
    d = inst / target
    d.mkdir(parents=True)
    for name, body in programs.items():
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    if settings is not None:
        (d / "settings").write_text(settings)
    lines = [f"{target}:{name}" for name in programs]
    (inst / "kselftest-list.txt").write_text("".join(f"{x}\n" for x in lines))
    return KselftestBuild(target, key, inst, lines)


def kernel_with(tmp_path: Path, *builds: KselftestBuild) -> Kernel:
    image = tmp_path / "bzImage"
    image.write_bytes(b"a kernel")
    image.chmod(0o644)
    return Kernel("base", image, tmp_path / ".config", False, 1.0, None, key="kk",
                  banner=BANNER, kselftests=list(builds))


def build(target: str, tests: list[str], key: str = "k" * 32,
          install: Path = Path("/nonexistent")) -> KselftestBuild:
    return KselftestBuild(target, key, install, [f"{target}:{t}" for t in tests])


# -- what a kernel runs ----------------------------------------------------------------

def test_plan_takes_each_targets_build_once_bare_or_named():
    a, b, c = build("cachestat", ["test_cachestat"]), build("mm", ["x", "y", "z"]), \
        build("mincore", ["mincore_selftest"])
    k = Kernel("base", Path("i"), Path("c"), False, 0, None, kselftests=[a, b, c])
    sel = kselftest_run.plan(k, ["mm:y", "cachestat", "mm:x,mm:y", "cachestat:test_cachestat"])
    assert sel == [Selected(b, ("y", "x")), Selected(a, ())]
    assert kselftest_run.expected_ids(sel) == [
        "kselftest/mm/y", "kselftest/mm/x", "kselftest/cachestat/test_cachestat"]
    # a bare target runs its whole list; a target the kernel has no build of is left out
    sel = kselftest_run.plan(k, ["mm", "mm:x", "nosuch"])
    assert sel == [Selected(b, ())]
    assert kselftest_run.expected_ids(sel) == ["kselftest/mm/x", "kselftest/mm/y",
                                               "kselftest/mm/z"]
    assert kselftest_run.plan(k, []) == []


def test_a_named_test_stays_expected_where_the_kernel_lacks_it():
    """A test the series adds is MISS on the baseline: its id is expected
    there too, but never handed to that kernel's runner (which would then
    run nothing at all)."""
    s = Selected(build("mm", ["x"]), ("x", "new"))
    assert kselftest_run.expected_ids([s]) == ["kselftest/mm/x", "kselftest/mm/new"]
    assert kselftest_run.runner_args(s, 1)[2:] == ["-t", "mm:x"]
    assert kselftest_run.runner_args(Selected(build("mm", ["x"]), ("new",)), 1) == []


def test_two_targets_with_one_file_name_are_refused():
    a, b = build("a/b", ["t"]), build("a__b", ["t"])
    k = Kernel("base", Path("i"), Path("c"), False, 0, None, kselftests=[a, b])
    with pytest.raises(BadInput, match="a__b"):
        kselftest_run.plan(k, ["a/b", "a__b"])


def test_key_parts_name_each_build_and_selection():
    a = build("cachestat", ["test_cachestat"], key="1" * 32)
    assert kselftest_run.key_parts([]) == []
    parts = kselftest_run.key_parts([Selected(a)])
    assert parts == [f"kselftest harness {kselftest_run.HARNESS_VERSION}",
                     f"cachestat:{'1' * 32}:"]
    others = [kselftest_run.key_parts([Selected(a, ("test_cachestat",))]),
              kselftest_run.key_parts([Selected(build("cachestat", ["test_cachestat"],
                                                      key="2" * 32))])]
    assert all(o != parts for o in others) and others[0] != others[1]


# -- the harness lines -----------------------------------------------------------------

def test_harness_lines_run_each_targets_own_runner(tmp_path):
    whole = make_install(tmp_path, "mm", {"a": PASS, "b": PASS}, settings="timeout=900\n")
    named = make_install(tmp_path, "drivers/net", {"x": PASS, "y": PASS})
    res = tmp_path / "res"
    lines = kselftest_run.harness_lines([Selected(whole), Selected(named, ("y",))], res, 300)
    assert len(lines) == 4
    disk, mm, net, done = lines
    assert "/sys/block/vd*" in disk and "= orch-kselftest ]" in disk
    assert f"mount -t ext4 \"$ksft_dev\" {kselftest_run.MOUNT}" in disk
    assert mm == (f"(cd {kselftest_run.MOUNT}/mm && ./run_kselftest.sh -o 900 -c mm; "
                  f"echo $? > {res}/kselftest-mm.rc) 2>&1 | cat > {res}/kselftest-mm.ktap")
    assert net == (f"(cd {kselftest_run.MOUNT}/drivers__net && ./run_kselftest.sh -o 300 "
                   f"-t drivers/net:y; echo $? > {res}/kselftest-drivers__net.rc) 2>&1 | "
                   f"cat > {res}/kselftest-drivers__net.ktap")
    assert done == f"echo done > {res}/harness-done"


@pytest.mark.parametrize("settings,test_timeout,want", [
    (None, 1, 45),                         # the runner's default
    (None, 300, 300),                      # at least --test-timeout
    ("# a comment\ntimeout=900\n", 300, 900),
    ("timeout=2\n", 1, 2),
    ("timeout=99999999\n", 1, kselftest_run.MAX_TIMEOUT),
    ("timeout=$(reboot)\n", 1, 45),        # the tree's file, read as data
])
def test_the_override_timeout(tmp_path, settings, test_timeout, want):
    b = make_install(tmp_path, "t", {"x": PASS}, settings=settings)
    assert kselftest_run.timeout_for(Selected(b), test_timeout) == want


# -- the disk --------------------------------------------------------------------------

def _debugfs(image: Path, request: str) -> str:
    r = subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True,
                       timeout=60)
    return r.stdout


@pytest.mark.skipif(not shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin"),
                    reason="e2fsprogs' debugfs")
def test_the_image_holds_each_install_under_its_slug(tmp_path):
    a = make_install(tmp_path, "cachestat", {"test_cachestat": PASS})
    b = make_install(tmp_path, "drivers/net", {"x": PASS})
    image = tmp_path / "d" / "k.img"
    image.parent.mkdir()
    kselftest_run.make_image([Selected(a), Selected(b)], image)
    top = _debugfs(image, "ls -l /cachestat")
    for name in ("run_kselftest.sh", "kselftest-list.txt", "kselftest", "cachestat"):
        assert re.search(rf"\s{re.escape(name)}\s*$", top, re.M), (name, top)
    prog = _debugfs(image, "ls -l /cachestat/cachestat")
    assert re.search(r"100755 .*\stest_cachestat\s*$", prog, re.M), prog
    assert "run_kselftest.sh" in _debugfs(image, "ls -l /drivers__net")
    assert "x" in _debugfs(image, "ls /drivers__net/drivers/net").split()
    assert _debugfs(image, "cat /cachestat/kselftest-list.txt") == "cachestat:test_cachestat\n"
    assert re.search(r"^Block size:\s+4096$", _debugfs(image, "stats"), re.M)
    # sparse, at least the minimum, and nothing left beside it
    st = image.stat()
    assert st.st_size >= kselftest_run.IMAGE_MIN and st.st_blocks * 512 < st.st_size // 4
    assert sorted(p.name for p in image.parent.iterdir()) == ["k.img"]
    # the cache's install is untouched by what the guest may write into the image
    assert (a.install / "cachestat" / "test_cachestat").read_text().endswith(PASS + "\n")


# -- reading a boot's results ----------------------------------------------------------

_RESULT = re.compile(r"^(ok|not ok) \d+ selftests: (\S+): (\S+)(.*)$")


def per_target(sample: str) -> dict[str, str]:
    """A KTAP sample of several targets as the per-target files the
    harness writes (one runner run each): its tests, renumbered."""
    lines = (KTAP / sample).read_text().splitlines()[2:]
    chunks: dict[str, list[list[str]]] = {}
    cur: list[str] = []
    for line in lines:
        m = _RESULT.match(line)
        if not m:
            cur.append(line)
            continue
        chunks.setdefault(m.group(2), []).append([*cur, line])
        cur = []
    out = {}
    for target, tests in chunks.items():
        text = ["TAP version 13", f"1..{len(tests)}"]
        for n, t in enumerate(tests, 1):
            text += [*t[:-1], re.sub(r"^(ok|not ok) \d+", rf"\1 {n}", t[-1])]
        out[target] = "\n".join(text) + "\n"
    return out


def results_with(tmp_path: Path, files: dict[str, str], done: bool = True,
                 console: str = "") -> tuple[Path, Path]:
    res = tmp_path / "results"
    res.mkdir()
    for name, text in files.items():
        (res / name).write_text(text)
    if done:
        (res / "harness-done").write_text("done\n")
    (res / "proc-version").write_text(BANNER + "\n")
    con = tmp_path / "console.log"
    con.write_text(f"[    0.000000] {BANNER}\n{console}")
    return res, con


def by_name(g) -> dict:
    return {t.name: t for t in g.tests}


def test_outcome_of_a_passing_boot(tmp_path):
    files = per_target("kselftest-pass.log")
    res, con = results_with(tmp_path, {f"kselftest-{t}.ktap": x for t, x in files.items()})
    sel = [Selected(build("cachestat", ["test_cachestat"])),
           Selected(build("mincore", ["mincore_selftest"]))]
    expected = kselftest_run.expected_ids(sel)
    g = vm.outcome(res, con, expected, kselftests=sel)
    assert g.ok and g.finished and not g.error and g.junit is None and g.died_in is None
    got = by_name(g)
    assert list(got) == expected
    assert {t.status for t in got.values()} == {P}
    cs = got["kselftest/cachestat/test_cachestat"]
    assert cs.properties["source"] == "ktap"
    # the program's own results: counted, not ids
    assert cs.properties["subtests"] == "10: 9 PASS, 1 SKIP"
    assert not any(n.count("/") > 2 for n in got)


def test_outcome_of_failures_timeouts_and_skips(tmp_path):
    files = per_target("kselftest-failures.log")
    res, con = results_with(tmp_path, {f"kselftest-{kselftest_run.slug(t)}.ktap": x
                                       for t, x in files.items()})
    names = {"cachestat": "test_cachestat", "mincore": "mincore_selftest",
             "filesystems/binderfs": "binderfs_test", "mm": "map_fixed_noreplace",
             "bpf": "xskxceiver"}
    sel = [Selected(build(t, [x])) for t, x in names.items()]
    g = vm.outcome(res, con, kselftest_run.expected_ids(sel), kselftests=sel)
    assert g.ok and g.finished
    got = by_name(g)
    want = {"kselftest/cachestat/test_cachestat": F, "kselftest/mincore/mincore_selftest": E,
            "kselftest/filesystems/binderfs/binderfs_test": S,
            "kselftest/mm/map_fixed_noreplace": F, "kselftest/bpf/xskxceiver": S}
    assert {n: t.status for n, t in got.items()} == want
    assert "exit=1" in got["kselftest/cachestat/test_cachestat"].message
    assert "cachestat fails with a shmem file" in got["kselftest/cachestat/test_cachestat"].message
    assert "TIMEOUT 45 seconds" in got["kselftest/mincore/mincore_selftest"].message
    assert ("The Android binderfs filesystem is not available"
            in got["kselftest/filesystems/binderfs/binderfs_test"].message)
    assert got["kselftest/bpf/xskxceiver"].message.startswith("XFAIL")


def test_a_guest_that_died_mid_test(tmp_path):
    """The output stops inside mincore's test: it is ERROR, the test after
    it MISS, the target after it never ran; no harness-done, so the boot is
    an error, the kernel's (a panic), during that test."""
    text = per_target("kselftest-pass.log")["mincore"]
    cut = text[:text.index("# ok 4 ")]
    res, con = results_with(tmp_path, {"kselftest-mincore.ktap": cut}, done=False,
                            console="[    9.100000] Kernel panic - not syncing: Fatal exception\n")
    sel = [Selected(build("mincore", ["mincore_selftest", "after"])),
           Selected(build("cachestat", ["test_cachestat"]))]
    expected = ["guest_tests/test_x.py::test_y", *kselftest_run.expected_ids(sel)]
    (res / "junit.xml").write_text(
        '<testsuites><testsuite name="pytest"><testcase classname="guest_tests.test_x" '
        'name="test_y" time="0.1"/></testsuite></testsuites>')
    (res / "harness-rc").write_text("0\n")
    g = vm.outcome(res, con, expected, kselftests=sel)
    got = by_name(g)
    assert got["guest_tests/test_x.py::test_y"].status is P
    assert got["kselftest/mincore/mincore_selftest"].status is E
    assert got["kselftest/mincore/after"].status is M
    assert got["kselftest/cachestat/test_cachestat"].status is M
    assert "guest stopped before" in got["kselftest/cachestat/test_cachestat"].message
    assert not g.ok and not g.finished and not g.infra
    assert g.died_in == "kselftest/mincore/mincore_selftest"
    assert g.error == "kernel panicked: Fatal exception (during kselftest/mincore/mincore_selftest)"
    # a guest that just stopped (no panic) says so
    con.write_text(f"[    0.000000] {BANNER}\n")
    g = vm.outcome(res, con, expected, kselftests=sel, vng_rc=1)
    assert g.error.startswith("the guest stopped before its kselftests ended (vng exit 1)")


def test_no_ktap_output_is_miss_with_what_the_guest_said(tmp_path):
    res, con = results_with(tmp_path, {
        "kselftest-mm.ktap": "No such collection 'mm'\n", "kselftest-mm.rc": "1\n",
        "kselftest-disk.log": "mount: /tmp/orch-kselftest: unknown filesystem type 'ext4'.\n"})
    sel = [Selected(build("mm", ["a"])), Selected(build("mincore", ["m"]))]
    g = vm.outcome(res, con, kselftest_run.expected_ids(sel), kselftests=sel)
    got = by_name(g)
    assert {t.status for t in got.values()} == {M}
    mm = got["kselftest/mm/a"].message
    assert mm.startswith("no KTAP output; run_kselftest.sh exit 1; No such collection 'mm'"), mm
    assert "the kselftest disk: mount: /tmp/orch-kselftest: unknown filesystem" in mm
    assert got["kselftest/mincore/m"].message.startswith("no KTAP output; the kselftest disk")
    assert g.ok and g.finished   # the harness ended: the tests are MISS, the verdict says so


def test_a_named_test_the_kernel_lacks_is_miss(tmp_path):
    files = per_target("kselftest-pass.log")
    res, con = results_with(tmp_path, {"kselftest-cachestat.ktap": files["cachestat"]})
    sel = [Selected(build("cachestat", ["test_cachestat"]), ("test_cachestat", "new_test"))]
    got = by_name(vm.outcome(res, con, kselftest_run.expected_ids(sel), kselftests=sel))
    assert got["kselftest/cachestat/test_cachestat"].status is P
    assert got["kselftest/cachestat/new_test"].status is M
    assert "not in this kernel's kselftest list" in got["kselftest/cachestat/new_test"].message


def test_kselftests_alone_need_no_junit(tmp_path):
    files = per_target("kselftest-pass.log")
    res, con = results_with(tmp_path, {"kselftest-cachestat.ktap": files["cachestat"]})
    sel = [Selected(build("cachestat", ["test_cachestat"]))]
    g = vm.outcome(res, con, kselftest_run.expected_ids(sel), kselftests=sel)
    assert g.ok and g.finished and g.harness_rc is None and g.junit is None
    # with a pytest id expected too, its missing JUnit file is the error it always was
    g = vm.outcome(res, con, ["guest_tests/test_x.py::test_y",
                              *kselftest_run.expected_ids(sel)], kselftests=sel)
    assert not g.ok and "JUnit" in g.error
    assert by_name(g)["kselftest/cachestat/test_cachestat"].status is P


def test_without_kselftests_their_files_are_not_read(tmp_path):
    files = per_target("kselftest-pass.log")
    res, con = results_with(tmp_path, {"kselftest-cachestat.ktap": files["cachestat"]},
                            done=False)
    (res / "junit.xml").write_text(
        '<testsuites><testsuite name="pytest"><testcase classname="guest_tests.test_x" '
        'name="test_y" time="0.1"/></testsuite></testsuites>')
    (res / "harness-rc").write_text("0\n")
    g = vm.outcome(res, con, ["guest_tests/test_x.py::test_y"])
    assert g.ok and g.finished and [t.name for t in g.tests] == ["guest_tests/test_x.py::test_y"]
    assert vm.runs_pytest(["guest_tests/test_x.py::test_y"])
    assert vm.runs_pytest([]) and not vm.runs_pytest(["kselftest/a/b"])


# -- kept results ----------------------------------------------------------------------

def test_kept_results_give_the_same_kselftest_results(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    files = per_target("kselftest-failures.log")
    res, con = results_with(tmp_path, {
        **{f"kselftest-{kselftest_run.slug(t)}.ktap": x for t, x in files.items()},
        "kselftest-mm.rc": "1\n"})
    names = {"cachestat": "test_cachestat", "mincore": "mincore_selftest",
             "filesystems/binderfs": "binderfs_test", "mm": "map_fixed_noreplace"}
    sel = [Selected(build(t, [x])) for t, x in names.items()]
    sel[-1] = Selected(sel[-1].build, ("map_fixed_noreplace", "new_test"))  # one it lacks
    expected = kselftest_run.expected_ids(sel)
    k = kernel_with(tmp_path)
    g = vm.check_booted(vm.outcome(res, con, expected, kselftests=sel), k, res)
    assert g.ok
    key = result_cache.key("ab" * 32, None, 300, "tcg",
                           kselftests=kselftest_run.key_parts(sel))
    result_cache.store(key, g)
    kept = sorted(p.name for p in (tmp_path / "cache" / "results" / key).iterdir())
    assert "harness-done" in kept and "kselftest-filesystems__binderfs.ktap" in kept
    assert "kselftest-mm.rc" in kept
    want = [(t.name, t.status, t.message, t.properties) for t in g.tests]
    assert ("kselftest/mm/new_test", M) in [w[:2] for w in want]
    back = result_cache.load(key, tmp_path / "again", tmp_path / "console2.log", k,
                             expected, 1, sel)
    assert back is not None and back.cached and back.ok and back.finished
    assert [(t.name, t.status, t.message, t.properties) for t in back.tests] == want
    # Read back from the ids alone (no selection), each file is its
    # collection's: the same results, but for the reason of the one it lacks.
    back = result_cache.load(key, tmp_path / "again", tmp_path / "console2.log", k,
                             expected, 1)
    assert back is not None and back.ok
    assert ([w[:3] for w in want if w[0] != "kselftest/mm/new_test"] == [
        (t.name, t.status, t.message) for t in back.tests if t.name != "kselftest/mm/new_test"])


# -- the results key -------------------------------------------------------------------

def _before(image: str, tests, timeout=300, accel="tcg", repeat=1, sample=0, confined=True,
            keyword=None) -> list:
    """The parts of a results key as orch computed them before kselftests."""
    parts = [__version__, image, sorted(tests or []),
             result_cache.suite_digest(tuple(sorted(tests or []))), timeout, accel, repeat,
             2, "2G", ["null_blk.nr_devices=0"], 256]
    if sample:
        parts.append(f"sample {sample}")
    if keyword is not None:
        parts.append(f"keyword {keyword}")
    if confined:
        parts.append("guest view 3")
    return parts


def _hash(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


KEY_CASES = [
    dict(tests=None),
    dict(tests=["guest_tests/test_dontcache.py"], timeout=120, accel="kvm"),
    dict(tests=None, repeat=3, sample=2, keyword="read"),
    dict(tests=None, confined=False),
]


@pytest.mark.parametrize("case", KEY_CASES)
def test_every_earlier_key_stays(case):
    """Without kselftests the key is byte for byte what it was: every kept
    result (the CI's baselines) still answers."""
    image = "ab" * 32
    c = {"timeout": 300, "accel": "tcg", "repeat": 1, "sample": 0, "confined": True,
         "keyword": None, **case}
    golden = _hash(_before(image, **c))
    args = (image, c["tests"], c["timeout"], c["accel"], c["repeat"], c["sample"],
            c["confined"], c["keyword"])
    assert result_cache.key(*args) == golden
    assert result_cache.key(*args, kselftests=kselftest_run.key_parts([])) == golden


def test_kselftests_are_another_key():
    image = "ab" * 32
    a = build("cachestat", ["test_cachestat"], key="1" * 32)
    parts = kselftest_run.key_parts([Selected(a)])
    before = _before(image, None)
    assert result_cache.key(image, None, 300, "tcg", kselftests=parts) == _hash(
        [*before[:-1], ["kselftests", *parts], before[-1]])
    keys = {result_cache.key(image, None, 300, "tcg", kselftests=kselftest_run.key_parts(s))
            for s in ([], [Selected(a)], [Selected(a, ("test_cachestat",))],
                      [Selected(build("cachestat", ["test_cachestat"], key="2" * 32))])}
    assert len(keys) == 4


# -- vm.run_tests, with a vng that plays the guest -------------------------------------

# The stand-in vng: writes down its command line, then does what the guest
# would with the harness it is given, on the disk it is given: the image is
# read back with debugfs (as the guest mounts it) into the private /tmp of
# the sandbox QEMU runs in, where the harness's `cd` finds it.
FAKE_VNG = """#!/bin/sh
printf '%s\\n' "$@" > {said}/argv
echo "[    0.000000] {banner}"
img=$(printf '%s\\n' "$@" | sed -n 's/.*-drive file=\\([^,]*\\),if=none,id=orchksft.*/\\1/p')
if [ -n "$img" ]; then
    [ -w "$img" ] && echo writable > {said}/image
    mkdir -p {mount}
    for d in $(debugfs -R 'ls /' "$img" 2>/dev/null | tr -s ' ' '\\n' | grep -v '^(' |
               grep -v '^[0-9]*$' | grep -v -e '^\\.' -e lost+found); do
        debugfs -R "rdump /$d {mount}" "$img" > /dev/null 2>&1
    done
fi
script=$(printf '%s\\n' "$@" | sed -n 's/^sh //p')
cp "$script" {said}/harness.sh
sh "$script"
# The guest's /proc/version is the booted kernel's (the harness read the
# host's here); orch checks it for a kselftest-only boot too.
[ -e {said}/wrong-kernel ] || echo "{banner}" > "$(dirname "$script")/proc-version"
"""


@pytest.fixture
def fake_vng(tmp_path, monkeypatch):
    said = tmp_path / "said"
    said.mkdir()
    said.chmod(0o777)
    fake = tmp_path / "vng"
    fake.write_text(FAKE_VNG.format(said=said, banner=BANNER, mount=kselftest_run.MOUNT))
    fake.chmod(0o755)
    monkeypatch.setattr(vm, "vng_command", lambda: [str(fake)])
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "no KVM here"))
    monkeypatch.setattr(vm, "guest_view", _view_with(vm.guest_view, said))
    return said


def _view_with(view, said: Path):
    def guest_view(*a, **kw):
        v = view(*a, **kw)
        return sandbox.View(v.readable, (*v.writable, said), v.devices, v.env, v.path, v.dirs,
                            v.hidden, v.overlays, v.remove)
    return guest_view


needs_sandbox = pytest.mark.skipif(not sandbox.probe()[0], reason="bwrap cannot run here")


@needs_sandbox
def test_run_tests_boots_with_the_disk_and_runs_the_harness(tmp_path, fake_vng):
    a = make_install(tmp_path, "cachestat", {"test_cachestat": PASS, "cwd_test": CWD})
    b = make_install(tmp_path, "drivers/net", {"x": FAIL, "y": PASS})
    k = kernel_with(tmp_path, a, b)
    sel = kselftest_run.plan(k, ["cachestat", "drivers/net:x"])
    results = tmp_path / "run" / "results"
    g = vm.run_tests(k, results, tmp_path / "console.log", timeout=120, test_timeout=1,
                     expected=kselftest_run.expected_ids(sel), kselftests=sel)
    argv = (fake_vng / "argv").read_text().splitlines()
    opts = argv[argv.index("--verbose") + 1]
    image = results.parent / ".results-kselftest.img"
    assert (f"-drive file={image},if=none,id=orchksft,format=raw -device virtio-blk-pci,"
            "drive=orchksft,serial=orch-kselftest") in opts
    assert (fake_vng / "image").read_text() == "writable\n"   # in the view, for QEMU
    harness = (fake_vng / "harness.sh").read_text()
    assert harness == "\n".join([kselftest_run.version_line(results),
                                 *kselftest_run.harness_lines(sel, results, 1)]) + "\n"
    assert "-m pytest" not in harness   # no pytest id expected: no pytest (not the tmp path's)
    assert not image.exists() and not list(results.parent.glob(".results-*"))
    got = by_name(g)
    assert {n: t.status for n, t in got.items()} == {
        "kselftest/cachestat/test_cachestat": P, "kselftest/cachestat/cwd_test": P,
        "kselftest/drivers/net/x": F}
    assert g.ok and g.finished, g.error
    assert (results / "kselftest-drivers__net.rc").read_text() == "1\n"


@needs_sandbox
def test_a_kselftest_only_boot_of_another_kernel_is_caught(tmp_path, fake_vng):
    """No JUnit file, but the harness ran: its /proc/version (the host's
    here) must be the built kernel's, as for a pytest boot."""
    (fake_vng / "wrong-kernel").touch()
    a = make_install(tmp_path, "cachestat", {"test_cachestat": PASS})
    k = kernel_with(tmp_path, a)
    sel = kselftest_run.plan(k, ["cachestat"])
    g = vm.run_tests(k, tmp_path / "run" / "results", tmp_path / "console.log", timeout=120,
                     test_timeout=1, expected=kselftest_run.expected_ids(sel), kselftests=sel)
    assert not g.ok and g.infra
    assert g.error.startswith("booted kernel is not the one built") and "/proc/version" in g.error


@needs_sandbox
def test_without_kselftests_the_harness_and_vng_line_are_as_before(tmp_path, fake_vng):
    k = kernel_with(tmp_path)
    results = tmp_path / "results"
    tests = ["guest_tests/test_dontcache.py"]
    vm.run_tests(k, results, tmp_path / "console.log", timeout=60, tests=tests,
                 expected=["guest_tests/test_dontcache.py::test_x"], test_timeout=300)
    harness = (fake_vng / "harness.sh").read_text()
    assert harness == vm.guest_command(results, tests, [*vm.timeout_args(300)], None) + "\n"
    argv = (fake_vng / "argv").read_text().splitlines()
    assert argv[argv.index("--verbose") + 1] == (
        f"--qemu-opts=-drive file={tmp_path / '.results-scratch.img'},if=none,id=orchscratch,"
        "format=raw -device virtio-blk-pci,drive=orchscratch,serial=orch-scratch")
    assert not (fake_vng / "image").exists()


def test_a_failed_mkfs_leaves_no_disk_behind(tmp_path, monkeypatch):
    a = make_install(tmp_path, "cachestat", {"test_cachestat": PASS})
    k = kernel_with(tmp_path, a)
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "no KVM here"))
    monkeypatch.setattr(kselftest_run, "mkfs", lambda: "/bin/false")
    results = tmp_path / "results"
    with pytest.raises(OrchError, match="making the kselftests' disk failed"):
        vm.run_tests(k, results, tmp_path / "console.log", timeout=60,
                     expected=["kselftest/cachestat/test_cachestat"],
                     kselftests=kselftest_run.plan(k, ["cachestat"]))
    assert not list(tmp_path.glob(".results-*"))


# -- the stand-in guest runs the real runner -------------------------------------------

@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr(standin_guest, "behaviour", lambda image: set())
    return standin_guest


@pytest.mark.parametrize("harness", [False, True])
def test_the_standin_runs_the_real_runner(tmp_path, standin, monkeypatch, harness):
    monkeypatch.setitem(standin.HARNESS, "on", harness)
    a = make_install(tmp_path, "mini", {"test_mini": PASS, "failing": FAIL, "skipping": SKIP,
                                        "cwd_test": CWD, "hanging": HANG},
                     settings="timeout=1\n")
    k = kernel_with(tmp_path, a)
    sel = kselftest_run.plan(k, ["mini"])
    g = standin.run_tests(k, tmp_path / "results", tmp_path / "console.log", test_timeout=1,
                          expected=kselftest_run.expected_ids(sel), kselftests=sel)
    got = by_name(g)
    assert {n: t.status for n, t in got.items()} == {
        "kselftest/mini/test_mini": P, "kselftest/mini/failing": F,
        "kselftest/mini/skipping": S, "kselftest/mini/cwd_test": P,
        "kselftest/mini/hanging": E}
    assert got["kselftest/mini/skipping"].message == "no widget here"
    assert "TIMEOUT 1 seconds" in got["kselftest/mini/hanging"].message
    assert "failing: second" in got["kselftest/mini/failing"].message
    assert g.ok and g.finished and g.harness_rc is None
    ktap = (tmp_path / "results" / "kselftest-mini.ktap").read_text()
    assert "# counters off" in ktap   # the program's own lines, through the runner's prefix
    # nothing written into the install the cache keeps
    assert not (a.install / "mini" / "tmpfile-probe").exists()


def test_the_standin_guest_dies_where_a_test_says_so(tmp_path, standin):
    a = make_install(tmp_path, "mini", {"first": PASS, "dying": DIE, "after": PASS})
    b = make_install(tmp_path, "later", {"never": PASS})
    k = kernel_with(tmp_path, a, b)
    sel = kselftest_run.plan(k, ["mini", "later"])
    g = standin.run_tests(k, tmp_path / "results", tmp_path / "console.log", test_timeout=1,
                          expected=kselftest_run.expected_ids(sel), kselftests=sel)
    got = by_name(g)
    assert {n: t.status for n, t in got.items()} == {
        "kselftest/mini/first": P, "kselftest/mini/dying": E, "kselftest/mini/after": M,
        "kselftest/later/never": M}
    assert not g.ok and g.died_in == "kselftest/mini/dying"
    assert "kernel panicked" in g.error and g.error.endswith("(during kselftest/mini/dying)")
    assert not (tmp_path / "results" / "harness-done").exists()


def test_the_standin_runs_pytest_and_kselftests_in_one_boot(tmp_path, standin):
    a = make_install(tmp_path, "mini", {"test_mini": PASS})
    k = kernel_with(tmp_path, a)
    sel = kselftest_run.plan(k, ["mini"])
    expected = ["guest_tests/test_x.py::test_y", *kselftest_run.expected_ids(sel)]
    g = standin.run_tests(k, tmp_path / "results", tmp_path / "console.log", test_timeout=1,
                          expected=expected, kselftests=sel)
    assert {t.name: t.status for t in g.tests} == {"guest_tests/test_x.py::test_y": P,
                                                   "kselftest/mini/test_mini": P}
    assert g.ok and g.finished and g.harness_rc == 0
