"""NIGHTLY.toml's kselftests, suites, kconfig, kconfig_add, cpus and memory
(issue 28): read and checked when the file is read (a bad value is one line
naming the key), kept in the plan, and in the Options every cell runs with;
a series with kselftests of its own boots a baseline of its own.

No kernel is built here: the plan's keys are checked through `orch plan`'s
library entry point against the loopback lore (test_nightly's world), the
cells' options through nightly.cells on a plan written by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from helpers import IRQ_TEST
from lore_mails import day
from night_sample import sample_night
from test_nightly import world  # noqa: F401 (the fixture)

from orchestrator.core.errors import BadInput
from orchestrator.fanout import planning
from orchestrator.guest import vm
from orchestrator.kernel import kconfig
from orchestrator.nightly import cells, config_file
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Cell, Night
from orchestrator.run.options import argv_of

SERIES = '[[series]]\nmsgid = "<a@b>"\n'
NIGHT = "2026-11-27"


def _toml(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "n.toml"
    f.write_text(text)
    return f


def _error(f: Path) -> str:
    with pytest.raises(BadInput) as e:
        config_file.load(f)
    return str(e.value)


# ---------------------------------------------------------------- the file

def test_every_new_key_is_read(tmp_path):
    (tmp_path / "suites" / "my-tests").mkdir(parents=True)
    (tmp_path / "debug-vm.config").write_text("CONFIG_DEBUG_VM=y\n")
    f = _toml(tmp_path, 'kselftests = ["cachestat,mincore", "cachestat", "mm:ksm_tests"]\n'
              'suites = ["suites/my-tests"]\n'
              'kconfig_add = ["debug-vm.config", "CONFIG_PROVE_LOCKING=y", '
              '"kvm_guest.config"]\n'
              'cpus = 4\nmemory = "2048M"\n'
              '[[series]]\nmsgid = "<a@b>"\nkselftests = ["mincore", "filesystems/binderfs"]\n'
              '[[series]]\nmsgid = "<c@d>"\nkselftests = ["cachestat"]\n')
    cfg = config_file.load(f)
    assert cfg.kselftests == ["cachestat", "mincore", "mm:ksm_tests"]
    # A series' own: those not already the night's; none left, none kept.
    assert cfg.series_kselftests == {"a@b": ["filesystems/binderfs"]}
    assert cfg.suites == [(tmp_path / "suites" / "my-tests").resolve()]
    # A fragment file beside the night's file is made absolute (cells run
    # elsewhere); an option and an in-tree fragment name stay as they are.
    frag = str((tmp_path / "debug-vm.config").resolve())
    assert cfg.kconfig_add == [frag, "CONFIG_PROVE_LOCKING=y", "kvm_guest.config"]
    # The configs are those the adds make, as `orch test --kconfig-add` names them.
    made = kconfig.custom("base", None, cfg.kconfig_add)
    assert cfg.configs == [made.name] and made.name.startswith("base+")
    assert (cfg.cpus, cfg.memory, cfg.kconfig) == (4, "2G", None)


def test_kconfig_is_the_whole_config(tmp_path):
    f = _toml(tmp_path, 'kconfig = "defconfig"\nkconfig_add = ["CONFIG_DEBUG_VM=y"]\n' + SERIES)
    cfg = config_file.load(f)
    assert cfg.kconfig == "defconfig"
    assert cfg.configs == [kconfig.custom(None, "defconfig", ["CONFIG_DEBUG_VM=y"]).name]
    assert cfg.configs[0].startswith("kconfig-")
    (tmp_path / "my.config").write_text("CONFIG_64BIT=y\nCONFIG_EXT4_FS=y\n")
    cfg = config_file.load(_toml(tmp_path, 'kconfig = "my.config"\n' + SERIES))
    assert cfg.kconfig == str((tmp_path / "my.config").resolve())
    # The file's content names the config: another .config, another config.
    first = cfg.configs
    (tmp_path / "my.config").write_text("CONFIG_64BIT=y\n")
    assert config_file.load(tmp_path / "n.toml").configs != first


def test_a_file_without_the_new_keys_reads_as_before(tmp_path):
    cfg = config_file.load(_toml(tmp_path, SERIES))
    assert (cfg.kselftests, cfg.series_kselftests, cfg.suites, cfg.kconfig, cfg.kconfig_add,
            cfg.cpus, cfg.memory) == ([], {}, [], None, [], None, None)
    assert cfg.configs == kconfig.default_matrix()[:1]


@pytest.mark.parametrize("text,says", [
    ('kselftests = "cachestat"\n', "kselftests: must be an array of TARGET or TARGET:TEST"),
    ('kselftests = [1]\n', "kselftests: must be an array of TARGET or TARGET:TEST"),
    ('kselftests = ["../etc"]\n', "kselftests: '../etc': expected TARGET or TARGET:TEST"),
    ('kselftests = ["mm:"]\n', "kselftests: 'mm:': expected TARGET or TARGET:TEST"),
    ('kselftests = ["cachestat; reboot"]\n', "kselftests: 'cachestat; reboot': expected"),
    (SERIES + 'kselftests = ["a b"]\n', "series[0].kselftests: 'a b': expected TARGET"),
    ('kselftests = [' + ", ".join(f'"t{i}"' for i in range(60)) + ']\n' + SERIES
     + 'kselftests = [' + ", ".join(f'"u{i}"' for i in range(5)) + ']\n',
     "series[0].kselftests: 65 given, at most 64"),
    ('suites = "my-tests"\n', "suites: must be a non-empty array of pytest suite directories "
     "(Debian suites go in a [[tree]]'s suites)"),
    ('suites = ["sid"]\n', "suites: sid: not a directory (a pytest suite written like "
     "guest_tests/; Debian suites go in a [[tree]]'s suites)"),
    ('suites = ["a/t", "b/t"]\n', "suites: b/t: another suite is named t ("),
    ('suites = ["kselftest"]\n', "suites: kselftest: the name 'kselftest' is orch's own "
     "(kselftest ids start with it); rename the directory"),
    ('suites = ["a", "a/t"]\n', "suites: a/t: "),
    ('configs = ["base"]\nkconfig = "defconfig"\n', "kconfig: is the whole config: give it "
     "or configs, not both"),
    ('kconfig = "https://example.org/x.config"\n', "kconfig: https://example.org/x.config: "
     "orch fetches no URLs"),
    ('kconfig = "no-such-file"\n', "kconfig: no-such-file: neither a .config file nor a make "
     "target"),
    ('kconfig_add = ["make:kvm_guest.config"]\n', "kconfig_add: make:kvm_guest.config: make "
     "targets are not run"),
    ('kconfig_add = ["https://example.org/f.config"]\n', "kconfig_add: "
     "https://example.org/f.config: orch fetches no URLs"),
    ('kconfig_add = ["PROVE_LOCKING=y"]\n', "kconfig_add: PROVE_LOCKING=y: not CONFIG_X=VALUE"),
    ('kconfig_add = []\n', "kconfig_add: must be a non-empty array"),
    ('cpus = 0\n', "cpus: must be a whole number of vCPUs, 1..64"),
    ('cpus = 65\n', "cpus: must be a whole number of vCPUs, 1..64"),
    ('cpus = true\n', "cpus: must be a whole number of vCPUs, 1..64"),
    ('cpus = "2"\n', "cpus: must be a whole number of vCPUs, 1..64"),
    ('cpus = 2.5\n', "cpus: must be a whole number of vCPUs, 1..64"),
    ('memory = "2X"\n', 'memory: must be a size in M or G, such as "512M" or "4G"'),
    ('memory = 2048\n', 'memory: must be a size in M or G, such as "512M" or "4G"'),
    ('memory = "128M"\n', "memory: the guest needs at least 256M"),
    ('kselftests = ["cachestat"]\n' + SERIES + 'expect_fixed = ["kselftest/mincore/x"]\n',
     "series[0].expect_fixed: kselftest/mincore/x: names no target of the kselftests this "
     "series runs (cachestat)"),
])
def test_a_bad_value_is_one_line_naming_the_key(tmp_path, text, says):
    (tmp_path / "a" / "t").mkdir(parents=True)
    (tmp_path / "b" / "t").mkdir(parents=True)
    (tmp_path / "kselftest").mkdir()
    f = _toml(tmp_path, text if "[[series]]" in text else text + SERIES)
    line = _error(f)
    assert line.startswith(f"{f}: {says}"), line
    assert "\n" not in line


def test_expect_fixed_may_name_the_series_kselftests_and_suites(tmp_path):
    (tmp_path / "mine").mkdir()
    f = _toml(tmp_path, 'kselftests = ["cachestat"]\nsuites = ["mine"]\n'
              f'guest_tests = ["{IRQ_TEST}"]\n'
              '[[series]]\nmsgid = "<a@b>"\nkselftests = ["mincore"]\n'
              'expect_fixed = ["kselftest/cachestat/test_cachestat", "kselftest/mincore/", '
              f'"mine/test_x.py", "{IRQ_TEST}"]\n')
    assert config_file.load(f).expect_fixed["a@b"][:2] == [
        "kselftest/cachestat/test_cachestat", "kselftest/mincore/"]
    # Only kselftests: the guest suite runs only when named, so a guest test
    # is no target of the series.
    f = _toml(tmp_path, 'kselftests = ["cachestat"]\n' + SERIES
              + f'expect_fixed = ["{IRQ_TEST}"]\n')
    assert "series[0].expect_fixed: " + IRQ_TEST + ": matches none of the 0 selected" in \
        _error(f)
    # A series' own kselftests add to the night's whole guest suite.
    f = _toml(tmp_path, SERIES + f'kselftests = ["mincore"]\nexpect_fixed = ["{IRQ_TEST}"]\n')
    assert config_file.load(f).expect_fixed == {"a@b": [IRQ_TEST]}


# ---------------------------------------------------------------- the plan

def test_the_plan_keeps_them_for_every_machine(world, tmp_path):
    """`orch plan` (and so `orch nightly`) writes them into plan.json; a
    night without them writes the plan it wrote before (no new key)."""
    world["srv"].archive.now = day(NIGHT)
    toml = world["toml"]
    plain = tmp_path / "plain"
    planning.write(config_file.load(toml), plain, NIGHT, "json")
    data = json.loads((plain / nightrec.PLAN_FILE).read_text())
    assert not {"kselftests", "series_kselftests", "suites", "kconfig", "kconfig_add", "cpus",
                "memory"} & set(data)

    (tmp_path / "my-tests").mkdir()
    text = toml.read_text()
    text = ('kselftests = ["cachestat"]\nsuites = ["my-tests"]\n'
            'kconfig_add = ["CONFIG_DEBUG_VM=y"]\ncpus = 3\nmemory = "1G"\n'
            + text.replace('configs = ["base"]\n', "")
            .replace("[[query]]", 'kselftests = ["mincore"]\n[[query]]'))
    toml.write_text(text)
    out = tmp_path / "planned"
    planning.write(config_file.load(toml), out, NIGHT, "json")
    data = json.loads((out / nightrec.PLAN_FILE).read_text())
    assert data["kselftests"] == ["cachestat"]
    assert data["series_kselftests"] == {"change-id:20261126-mini-feature-0a1b2c": ["mincore"]}
    assert data["suites"] == [str((tmp_path / "my-tests").resolve())]
    assert (data["kconfig_add"], data["cpus"], data["memory"]) == (["CONFIG_DEBUG_VM=y"], 3,
                                                                   "1G")
    assert "kconfig" not in data
    made = kconfig.custom("base", None, ["CONFIG_DEBUG_VM=y"]).name
    assert data["configs"] == [made]
    plan = nightrec.read_plan(out)
    assert (plan.kselftests, plan.cpus, plan.memory) == (["cachestat"], 3, "1G")
    jobs = json.loads((out / "jobs.json").read_text())
    assert {j["config"] for j in jobs["jobs"]} == {made}


# ---------------------------------------------------------------- the cells

def _plan_night(tmp_path: Path) -> Night:
    """sample_night()'s plan (two series, one tree, base and debug) with
    the night's kselftests, a suite, a guest machine, and kselftests of
    its own for the second series; no cell yet."""
    n = sample_night()
    n.cells = []
    p = n.plan
    (tmp_path / "mine").mkdir(exist_ok=True)
    p.kselftests, p.suites, p.cpus, p.memory = ["cachestat"], [str(tmp_path / "mine")], 4, "1G"
    p.series_kselftests = {p.series[1].key: ["mincore", "cachestat:test_cachestat"]}
    return n


def _booted_baseline(n: Night, s, config: str) -> Cell:
    t = n.plan.trees[0]
    return Cell(series=s.key, version=s.version, msgid=s.msgid, tree=t.label, commit=t.commit,
                config=config, status="PASS", detail="", run_dir=None, reproduce="",
                boot_seconds={"baseline": 90.0, "patched": 91.0})


def test_a_cell_runs_with_the_plans_keys(tmp_path):
    n = _plan_night(tmp_path)
    t = n.plan.trees[0]
    first, second = n.plan.series
    opts = cells.cell_options(n, tmp_path, first, t, "base", None, True)
    assert opts.kselftests == ["cachestat"]
    assert opts.suites == [tmp_path / "mine"]
    assert (opts.cpus, opts.memory, opts.guest_tests) == (4, "1G", None)
    # Its command says so: run again, it is the same cell.
    argv = opts.argv
    assert argv[argv.index("--kselftest") + 1] == "cachestat"
    assert argv[argv.index("--suite") + 1] == str(tmp_path / "mine")
    assert argv[argv.index("--cpus") + 1] == "4" and argv[argv.index("--memory") + 1] == "1G"
    # The second series: the night's kselftests, then its own.
    opts = cells.cell_options(n, tmp_path, second, t, "base", None, True)
    assert opts.kselftests == ["cachestat", "mincore", "cachestat:test_cachestat"]
    # A baseline job boots the night's selection (no series).
    assert cells.night_options(n.plan, "base", None, True).kselftests == ["cachestat"]


def test_a_plan_without_them_runs_cells_as_before(tmp_path):
    n = sample_night()
    opts = cells.cell_options(n, tmp_path, n.plan.series[0], n.plan.trees[0], "base", None,
                              True)
    assert (opts.kselftests, opts.suites, opts.cpus, opts.memory, opts.kconfig,
            opts.kconfig_add, opts.configs) == ([], [], vm.CPUS, vm.MEMORY, None, [], ["base"])
    assert not {"--kselftest", "--suite", "--cpus", "--memory", "--kconfig-add"} & \
        set(opts.argv)


def test_a_series_with_its_own_kselftests_boots_its_own_baseline(tmp_path):
    """The baseline of a tree x config is booted once a night, by the first
    cell that gets there; a cell with another kselftest selection boots
    another baseline (its results key differs), so it does not count a
    cell of the night's selection as having booted its baseline, nor a CI
    baseline job, which boots the night's selection."""
    n = _plan_night(tmp_path)
    t = n.plan.trees[0]
    first, second = n.plan.series

    def rerun(s, baseline_booted=False):
        return cells.cell_options(n, tmp_path, s, t, "base", None, True,
                                  baseline_booted=baseline_booted).rerun_baseline

    assert rerun(first) and rerun(second)              # nothing booted yet tonight
    n.cells.append(_booted_baseline(n, first, "base"))
    assert not rerun(dataclasses.replace(first, key="other"))
    assert rerun(second)                                # another selection
    # A CI series job: the baseline job booted the night's selection only.
    assert not rerun(first, baseline_booted=True)
    assert rerun(second, baseline_booted=True)
    # Once a cell of the second series' selection booted its baseline, it is tonight's.
    n.cells = [_booted_baseline(n, second, "base")]
    third = dataclasses.replace(second, key="change-id:third")
    n.plan.series.append(third)
    n.plan.series_kselftests[third.key] = list(n.plan.series_kselftests[second.key])
    assert not rerun(third) and rerun(first)
    # Another config is another baseline.
    assert cells.cell_options(n, tmp_path, third, t, "debug", None, True).rerun_baseline


def test_a_series_own_kselftests_come_on_top_of_the_whole_guest_suite(tmp_path):
    """A night that names no guest tests runs the whole guest suite; a
    series' own kselftests add to it (alone, --kselftest would run only them)."""
    n = sample_night()
    n.plan.series_kselftests = {n.plan.series[1].key: ["mincore"]}
    t = n.plan.trees[0]
    plain, own = (cells.cell_options(n, tmp_path, s, t, "base", None, True)
                  for s in n.plan.series)
    assert (plain.guest_tests, plain.kselftests) == (None, [])
    assert (own.guest_tests, own.kselftests) == (["guest_tests"], ["mincore"])
    # A night of kselftests alone stays so: the series adds only its own.
    n.plan.kselftests = ["cachestat"]
    own = cells.cell_options(n, tmp_path, n.plan.series[1], t, "base", None, True)
    assert (own.guest_tests, own.kselftests) == (None, ["cachestat", "mincore"])


def test_a_cell_builds_the_config_kconfig_add_makes(tmp_path):
    frag = tmp_path / "frag.config"
    frag.write_text("CONFIG_DEBUG_VM=y\n")
    n = sample_night()
    made = kconfig.custom("base", None, ["CONFIG_X=y", str(frag)]).name
    n.plan.configs, n.plan.kconfig_add = [made], ["CONFIG_X=y", str(frag)]
    s, t = n.plan.series[0], n.plan.trees[0]
    opts = cells.cell_options(n, tmp_path, s, t, made, None, True)
    assert (opts.configs, opts.kconfig, opts.kconfig_add) == (["base"], None,
                                                             ["CONFIG_X=y", str(frag)])
    assert kconfig.chosen(opts.configs, opts.kconfig, opts.kconfig_add)[0].name == made
    assert argv_of(opts)[argv_of(opts).index("--config") + 1] == "base"
    # kconfig: the whole config, no --config.
    whole = kconfig.custom(None, "defconfig", []).name
    n.plan.configs, n.plan.kconfig, n.plan.kconfig_add = [whole], "defconfig", None
    opts = cells.cell_options(n, tmp_path, s, t, whole, None, True)
    assert (opts.configs, opts.kconfig, opts.kconfig_add) == ([], "defconfig", [])
    assert "--config" not in opts.argv
    # A fragment edited since the plan makes another config: refused, not
    # built under the plan's name.
    n.plan.configs, n.plan.kconfig, n.plan.kconfig_add = [made], None, ["CONFIG_X=y",
                                                                         str(frag)]
    frag.write_text("CONFIG_DEBUG_VM=n\n")
    with pytest.raises(BadInput, match=re.escape(f"config {made} of the night's plan: its "
                                                 "kconfig / kconfig_add now make base+")):
        cells.cell_options(n, tmp_path, s, t, made, None, True)


def test_a_cells_reproduce_line_makes_its_config_again(tmp_path):
    from orchestrator.nightly import cell_rows
    n = sample_night()
    made = kconfig.custom("base", None, ["CONFIG_X=y"]).name
    n.plan.configs, n.plan.kconfig_add = [made], ["CONFIG_X=y"]
    s, t = n.plan.series[0], n.plan.trees[0]
    opts = cells.cell_options(n, tmp_path, s, t, made, None, True)
    line = cell_rows.reproduce(s, t, made, run=opts)
    assert "--config base --kconfig-add CONFIG_X=y" in line, line
