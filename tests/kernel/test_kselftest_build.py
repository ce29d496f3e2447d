"""Building the tree's own kselftests (kernel/kselftest_build.py) on the
stand-in tree: its tools/testing/selftests has the real runner files, a
reduced copy of the real Makefile and lib.mk, and a target `mini` whose
build, like mm's, writes local_config.h into its own source directory and
whose test, like cachestat's, needs the tree's exported headers. Real make,
gcc, rsync and the build sandbox; seconds per build. The real kernel's
cachestat and mincore are built in tests/run/test_kselftest_e2e.py."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest
from helpers import git

from orchestrator.core import sandbox
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Kernel
from orchestrator.core.progress import Progress
from orchestrator.kernel import build, buildtree, kconfig, kselftest_build
from orchestrator.run import builds
from orchestrator.source import tree

KC = kconfig.KConfig("base", "tinyconfig", "", {})
TEST_C = "tools/testing/selftests/mini/test_mini.c"
MINI_MK = "tools/testing/selftests/mini/Makefile"
TESTS = ["mini:test_mini", "mini:mini_script.sh"]
RUNNER = ["kselftest/ksft.py", "kselftest/ktap_helpers.sh", "kselftest/module.sh",
          "kselftest/prefix.pl", "kselftest/runner.sh", "run_kselftest.sh"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def makes(monkeypatch):
    """Every make build._maker runs, by its argv."""
    seen: list[list[str]] = []
    real = build._maker

    def maker(*a, **kw):
        make = real(*a, **kw)

        def counted(argv, *b, **kwb):
            seen.append(list(argv))
            return make(argv, *b, **kwb)
        return counted
    monkeypatch.setattr(build, "_maker", maker)
    return seen


def _rev(src: Path, rev: str = "HEAD") -> str:
    return subprocess.run(["git", "-C", str(src), "rev-parse", rev], check=True,
                          capture_output=True, text=True).stdout.strip()


def _tree_id(src: Path) -> str:
    return _rev(src, "HEAD^{tree}")


def _commit(src: Path, files: dict[str, str], msg: str = "mini: change") -> None:
    for rel, text in files.items():
        (src / rel).write_text(text)
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", msg)


def _behaviour(src: Path, what: str) -> dict[str, str]:
    text = (src / TEST_C).read_text()
    assert '#define MINI_BEHAVIOUR "pass"' in text
    return {TEST_C: text.replace('#define MINI_BEHAVIOUR "pass"',
                                 f'#define MINI_BEHAVIOUR "{what}"')}


def _trusted(tmp_path: Path) -> buildtree.BuildDir:
    return buildtree.BuildDir(tmp_path / "bd", tmp_path / "bd-meta")


def _kernel(src: Path, bd: buildtree.BuildDir, tmp_path: Path, side: str = "baseline"):
    return build.build(src, bd, KC, _tree_id(src), tmp_path / "logs" / f"build-{side}.log",
                       side)


def _ksft(src, bd, kernel, tmp_path, side="baseline", names=("mini",)):
    return kselftest_build.build_for(src, bd, kernel, list(names),
                                     lambda t: tmp_path / "logs" / f"kselftest-{side}-{t}.log",
                                     side, build.BuildOptions())


def _snapshot(top: Path) -> dict[str, tuple]:
    """Every entry of a tree: kind, owner, mode and bytes (the .git file
    aside, which names the repository)."""
    out = {}
    for dirpath, dirnames, files in os.walk(top):
        for name in [*dirnames, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(p.relative_to(top))] = (stat.S_IFMT(st.st_mode), st.st_uid,
                                            stat.S_IMODE(st.st_mode), data)
        dirnames[:] = [d for d in dirnames if d != ".git"]
    return out


def _run_mini(install: Path) -> str:
    return subprocess.run([str(install / "mini" / "test_mini")], capture_output=True,
                          text=True, timeout=30, check=False).stdout


# --- building ---------------------------------------------------------------

def test_mini_builds_in_the_sandbox_and_the_worktree_stays_as_it_was(tmp_path, cache, mini):
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path)
    before = _snapshot(mini)
    (b,) = _ksft(mini, bd, k, tmp_path)
    assert (b.target, b.cached, b.tests) == ("mini", False, TESTS)
    assert b.key == kselftest_build.key(k.key, "mini") and b.install == cache / \
        "kselftests" / b.key / "install"
    assert sorted(str(p.relative_to(b.install)) for p in b.install.rglob("*") if p.is_file()) \
        == sorted([*RUNNER, "kselftest-list.txt", "mini/mini_script.sh", "mini/settings",
                   "mini/test_mini"])
    # Its local_config.h was written and read (in the layer), and the test
    # was built against the tree's header in the build directory.
    log = b.log.read_text()
    assert "CHK      local_config.h" in log and "HDRINST usr/include/linux/mini.h" in log
    assert (bd.path / "usr/include/linux/mini.h").exists()
    assert "ok 2 mini_config" in _run_mini(b.install)
    # Nothing of it in the worktree, not even an owner changed.
    assert _snapshot(mini) == before
    assert not (mini / "tools/testing/selftests/mini/local_config.h").exists()
    # The entry is orch's own files, nothing of the sandbox's; no scratch left.
    entry = b.install.parent
    assert all(p.lstat().st_uid == os.geteuid() for p in entry.rglob("*"))
    assert [p.name for p in entry.parent.iterdir()] == [b.key]
    assert (entry / "tests.json").exists() and (entry / "sha256").exists()


def _no_target_dirs(src, target, scratch):
    return (sandbox.Overlay(src, scratch / "upper", scratch / "work", src),)


@pytest.mark.parametrize("mutant", ["no layer", "no target directories in the layer"])
def test_without_its_layer_mini_cannot_write_its_source_directory(tmp_path, cache, mini,
                                                                  monkeypatch, mutant):
    """The layer is what lets mm-like targets build at all: without it the
    worktree is read-only; with it but without the target's directories made
    in its upper side, the worktree's own owner (root's, when orch runs as
    root) keeps the unprivileged build out."""
    if mutant == "no layer":
        monkeypatch.setattr(kselftest_build, "_source_layer", lambda src, t, s: ())
    elif os.geteuid() != 0:
        pytest.skip("as another user the build is the worktree's owner in its namespace")
    else:
        monkeypatch.setattr(kselftest_build, "_source_layer", _no_target_dirs)
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path)
    before = _snapshot(mini)
    with pytest.raises(OrchError) as e:
        _ksft(mini, bd, k, tmp_path)
    assert e.value.exit == Exit.INFRA and "local_config" in str(e.value)
    assert "cannot create local_config.h" in (tmp_path / "logs/kselftest-baseline-mini.log") \
        .read_text()
    assert _snapshot(mini) == before


def test_a_second_build_for_finds_it_cached_and_runs_no_make(tmp_path, cache, mini, makes):
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path)
    makes.clear()
    (first,) = _ksft(mini, bd, k, tmp_path)
    assert [a[1:] for a in makes if "headers" in a] == [[f"O={bd.path}", "ARCH=x86_64",
                                                         "headers"]]
    assert len(makes) == 2
    makes.clear()
    (again,) = _ksft(mini, bd, k, tmp_path)
    assert makes == []
    assert (again.cached, again.key, again.install, again.tests) == \
        (True, first.key, first.install, TESTS)
    assert again.log.read_text() == f"# cached kselftest mini: {first.install.parent}\n"


def test_a_changed_source_is_a_new_kernel_key_and_a_new_build(tmp_path, cache, mini):
    """The patched side: a layer over the baseline's build directory, a new
    tree (test_mini now fails), a new kernel key, so its own kselftest build;
    the baseline's stays."""
    bd = _trusted(tmp_path)
    base = _kernel(mini, bd, tmp_path)
    (b,) = _ksft(mini, bd, base, tmp_path)
    _commit(mini, _behaviour(mini, "fail"))
    layer = buildtree.new_layer(bd, "t")
    try:
        patched = _kernel(mini, layer, tmp_path, "patched")
        assert patched.key != base.key
        (p,) = _ksft(mini, layer, patched, tmp_path, "patched")
    finally:
        buildtree.drop(layer)
    assert p.key != b.key and not p.cached
    assert "not ok 2 mini_config" in _run_mini(p.install)
    assert "ok 2 mini_config" in _run_mini(b.install)
    assert not (bd.path / "kselftest").exists()   # BUILD= is the scratch directory's


def test_the_key_holds_the_kernel_the_target_the_recipe_and_the_host_libraries(monkeypatch):
    k = kselftest_build.key("a" * 32, "mini")
    assert len(k) == 32 and k == kselftest_build.key("a" * 32, "mini")
    assert k != kselftest_build.key("b" * 32, "mini") != kselftest_build.key("a" * 32, "mm")
    monkeypatch.setattr(kselftest_build, "RECIPE", kselftest_build.RECIPE + " 2")
    assert kselftest_build.key("a" * 32, "mini") != k
    monkeypatch.undo()
    monkeypatch.setattr(kselftest_build, "host_libs_id", lambda: "libnuma-dev=2.0.99")
    assert kselftest_build.key("a" * 32, "mini") != k


def test_a_baseline_does_not_take_a_series_build_and_a_corrupt_entry_is_built_again(
        tmp_path, cache, mini):
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path)
    (p,) = _ksft(mini, bd, k, tmp_path, "patched")
    assert kselftest_build.lookup(p.key) == (kselftest_build.State.OK, "")
    assert kselftest_build.lookup(p.key, baseline=True)[0] == kselftest_build.State.SERIES
    (b,) = _ksft(mini, bd, k, tmp_path, "baseline")
    assert not b.cached and "was built by a series' build" in b.log.read_text()
    # Changed after it was kept: built again (a file's bytes, a link).
    (b.install / "mini" / "test_mini").write_bytes(b"#!/bin/sh\necho ok\n")
    (b2,) = _ksft(mini, bd, k, tmp_path, "baseline")
    assert not b2.cached and "failed its checksum; building it again" in b2.log.read_text()
    assert "ok 2 mini_config" in _run_mini(b2.install)
    (b2.install / "mini" / "settings").unlink()
    (b2.install / "mini" / "settings").symlink_to("/etc/passwd")
    assert kselftest_build.lookup(b2.key) == (kselftest_build.State.CORRUPT,
                                              "mini/settings is not a plain file")
    assert not b2.install.exists()


HOSTILE = """
install: hostile
hostile:
\t@mkdir -p $(INSTALL_PATH)
\tln -sf /etc/passwd $(INSTALL_PATH)/passwd
\tmkfifo $(INSTALL_PATH)/fifo
\tcp check_config.sh $(INSTALL_PATH)/setuid && chmod 4755 $(INSTALL_PATH)/setuid
\ttruncate -s 1G $(INSTALL_PATH)/huge
"""


def test_a_hostile_install_is_kept_only_as_plain_files(tmp_path, cache, mini):
    """A series' target installs a link to /etc/passwd, a FIFO, a setuid
    file and a (sparse) 1 GiB file: the entry keeps none of them but the
    file, without its setuid bit, and the log says what was left out."""
    _commit(mini, {MINI_MK: (mini / MINI_MK).read_text() + HOSTILE})
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path, "patched")
    (b,) = _ksft(mini, bd, k, tmp_path, "patched")
    mine = b.install / "mini"
    assert sorted(p.name for p in mine.iterdir()) == ["mini_script.sh", "settings", "setuid",
                                                      "test_mini"]
    assert stat.S_IMODE((mine / "setuid").stat().st_mode) == 0o755
    log = b.log.read_text()
    for line in ("mini/passwd: a symbolic link, left out", "mini/fifo: a FIFO, left out",
                 "mini/huge: 1024 MiB, over the 64 MiB a file may hold, left out"):
        assert f"# orch: kselftest install: {line}\n" in log
    assert kselftest_build.lookup(b.key)[0] == kselftest_build.State.OK


@pytest.mark.parametrize("side, code", [("baseline", Exit.INFRA), ("patched", Exit.PATCHED_BUILD)])
def test_a_target_that_does_not_build_names_itself_and_its_first_error(tmp_path, cache, mini,
                                                                       side, code):
    text = (mini / TEST_C).read_text().replace("return config_ok ? 0 : 1;",
                                               "return undeclared_thing;")
    _commit(mini, {TEST_C: text})
    bd = _trusted(tmp_path)
    k = _kernel(mini, bd, tmp_path, side)
    with pytest.raises(OrchError) as e:
        _ksft(mini, bd, k, tmp_path, side)
    log = tmp_path / "logs" / f"kselftest-{side}-mini.log"
    assert e.value.exit == code
    msg = str(e.value)
    assert msg.startswith(f"kselftest mini build failed on the {side} kernel of config base: ")
    assert "test_mini.c" in msg and "error: 'undeclared_thing' undeclared" in msg
    assert msg.endswith(f"(see {log})") and "\n" not in msg
    # Nothing kept, nothing left behind.
    assert list((cache / "kselftests").iterdir()) == []


def test_build_all_builds_the_targets_of_each_kernel_into_their_own_logs(tmp_path, cache, mini):
    ws = tree.workspace(tree.Tree(mini, "mini"))
    try:
        head = _rev(mini)
        src = builds.Source(head, _tree_id(mini), "baseline", "baseline")
        settings = builds.BuildSettings(2, True, 600, kselftests=("mini",))
        logs = tmp_path / "run" / "logs"
        out = builds.build_all(ws, [KC], src, logs, settings, Progress(io.StringIO()))
        (b,) = out["base"].kselftests
        assert b.tests == TESTS and b.log == logs / "kselftest-base-baseline-mini.log"
        assert "CHK      local_config.h" in b.log.read_text()
        assert "selftests" not in (logs / "build-base-baseline.log").read_text()
        # A patched state that breaks it: the series' fault, in one line.
        _commit(mini, {TEST_C: "int main(void) { return undeclared_thing; }\n"})
        head = _rev(mini)
        src = builds.Source(head, _tree_id(mini), "patched", "patch 1/1")
        with pytest.raises(OrchError) as e:
            builds.build_all(ws, [KC], src, logs, settings, Progress(io.StringIO()))
        assert e.value.exit == Exit.PATCHED_BUILD
        assert str(e.value).startswith("kselftest mini build failed on the patched kernel of "
                                       "config base: ")
        assert (logs / "kselftest-base-patch1of1-mini.log").exists()
    finally:
        ws.close()
        ws.lock.release()


def test_the_scratch_of_a_dead_orch_is_swept(tmp_path, cache):
    root = cache / "kselftests"
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()
    for name in (f".build-{'a' * 32}-{dead}-0000", f".entry-{'a' * 32}-{dead}-0001",
                 f".build-{'a' * 32}-{os.getpid()}-0002"):
        (root / name / "work" / "work").mkdir(parents=True)
    (root / f".build-{'a' * 32}-{dead}-0000" / "work" / "work").chmod(0)
    kernel = Kernel("base", tmp_path, tmp_path, True, 0, None, key="k" * 32)
    assert kselftest_build.build_for(tmp_path, tmp_path, kernel, [], lambda t: tmp_path / t,
                                     "baseline", None) == []
    assert [p.name for p in root.iterdir()] == [f".build-{'a' * 32}-{os.getpid()}-0002"]


# --- what may be asked for ----------------------------------------------------

def test_check_targets_names_the_unknown_ones_before_any_build(tmp_path, mini):
    head = _rev(mini)
    kselftest_build.check_targets(mini, head, ["mini"])
    kselftest_build.check_targets(mini, head, [])
    with pytest.raises(BadInput) as e:
        kselftest_build.check_targets(mini, head, ["mini", "cachestat", "mincore"])
    assert e.value.exit == Exit.BAD_INPUT
    assert str(e.value) == (f"--kselftest: no target cachestat, mincore at {head[:12]} (no "
                            "tools/testing/selftests/cachestat/Makefile in the tree under test)")
    # A directory that is there but is no target (no Makefile).
    with pytest.raises(BadInput, match="no target kselftest at"):
        kselftest_build.check_targets(mini, head, ["kselftest"])
    with pytest.raises(BadInput, match="not a directory name"):
        kselftest_build.check_targets(mini, head, ["../mini"])


def test_parse_specs():
    S = kselftest_build.Spec
    assert kselftest_build.parse_specs(["cachestat,mincore", "mm:ksm_tests", "cachestat",
                                        " filesystems/binderfs "]) == (
        S("cachestat"), S("mincore"), S("mm", "ksm_tests"), S("filesystems/binderfs"))
    assert [s.text for s in kselftest_build.parse_specs(["mm:ksm_tests"])] == ["mm:ksm_tests"]
    assert kselftest_build.targets(kselftest_build.parse_specs(["mm:a,mm:b,mini"])) == \
        ["mm", "mini"]


@pytest.mark.parametrize("bad", ["mini:", ":test_mini", "../etc", "mm/../../x", "./mm",
                                 "mini:a:b", "mini:a/b", "mini test", "mini;rm", "$(x)"])
def test_parse_specs_refuses_what_is_no_target_or_test(bad):
    with pytest.raises(BadInput) as e:
        kselftest_build.parse_specs([bad])
    assert e.value.exit == Exit.BAD_INPUT and "--kselftest" in str(e.value)
