"""What the commands build from their flags, each in one place: the command
lines orch records and prints (run.options.argv_of), the boot settings
runs keep their results under (run.options.boot_settings), the settings
object (run.settings.resolve), the names made from text (core.names.slug),
and the rule that no command imports another (pyproject's independence
contract). Each check is shown to catch a broken variant."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.commands import common
from orchestrator.commands import test as test_command
from orchestrator.core.models import Kernel
from orchestrator.core.names import slug
from orchestrator.fanout import job_run
from orchestrator.nightly import cell_rows, cells
from orchestrator.nightly.night import Night, Plan, SeriesRev, TreeState
from orchestrator.run import boots, options, settings
from orchestrator.run.options import Options, argv_of

LORE = "https://lore.example.org"


# -- one Options -> argv --------------------------------------------------------------

def test_a_bisects_reproduce_line_is_as_it_was():
    opts = Options(tree=Path("/src/linux"), range="p..f", configs=["base"],
                   guest_tests=["guest_tests/a.py::t", "guest_tests/b.py"], repeat=3,
                   build_only=True)
    assert options.command_line(opts) == (
        "orch test --tree /src/linux --range p..f --config base --guest-test guest_tests/a.py::t"
        " --guest-test guest_tests/b.py --repeat 3 --build-only")
    assert options.command_line(Options(tree=Path("."), range="p..f", configs=["x"])) == \
        "orch test --tree . --range p..f --config x"


def _night(tmp_path) -> tuple[Night, SeriesRev, TreeState]:
    s = SeriesRev("change-id:20261126-a", "mini: a", "a@example.org", 2, "20261126-a", "tracked",
                  "series/a-v2.mbx")
    t = TreeState("mini", "git", str(tmp_path / "linux"), "c0ffee" * 6 + "abcd")
    return Night("2026-11-27", "t0", Plan("2026-11-27", LORE, ["base"], [s], [t],
                                          guest_tests=["guest_tests/a.py"])), s, t


def test_a_cells_recorded_command_says_all_it_ran_with(tmp_path):
    n, s, t = _night(tmp_path)
    ndir = tmp_path / "nights" / n.night
    opts = cells.cell_options(n, ndir, s, t, "base", n.plan.guest_tests, sandbox=False)
    run_dir = ndir / "cells/20261126-a-v2--mini--base"
    assert opts.run_dir == run_dir
    # The whole command (issue 27): what the night asks, nothing left out.
    assert opts.argv == argv_of(opts) == [
        "orch", "test", "--mbox", str(ndir / s.mbox), "--lore-url", LORE, "--tree", t.path,
        "--on", t.commit, "--config", "base", "--run-dir", str(run_dir),
        "--guest-test", "guest_tests/a.py", "--offline-mode", "--no-sandbox", "--rerun-baseline"]
    assert (opts.offline, opts.lore_url, opts.guest_tests, opts.sandbox, opts.rerun_patched) \
        == (True, LORE, ["guest_tests/a.py"], False, True)


@pytest.mark.parametrize("kind", ["debian", "git"])
@pytest.mark.parametrize("lore", [None, "https://lore.kernel.org/", LORE])
@pytest.mark.parametrize("test", [None, "guest_tests/a.py::t"])
def test_a_cells_reproduce_line_is_argv_of(tmp_path, kind, lore, test):
    """cell_rows.reproduce() writes the same line argv_of() does, so it
    can be argv_of() (a Debian tree is named by its package, even the
    default one: debian_package None means "not given")."""
    _, s, t = _night(tmp_path)
    if kind == "debian":
        t = TreeState("debian:linux-source-7.2", "debian", "/cache/debian/7.2", "ab" * 20)
    opts = Options(msgid=s.msgid, lore_url=lore or Options().lore_url, on=t.commit,
                   configs=["base"], guest_tests=[test] if test else None,
                   **({"debian_package": t.label.removeprefix("debian:")} if kind == "debian"
                      else {"tree": Path(t.path)}))
    assert argv_of(opts) == shlex.split(cell_rows.reproduce(s, t, "base", test, lore))


def _round_trip(opts: Options) -> Options:
    """`opts` as `orch test` reads argv_of(opts) back: through the real
    parser, the settings and the command's own options()."""
    argv = argv_of(opts)[1:]
    args = cli.parser().parse_args(argv)
    return test_command.options(args, argv, common.settings_of(args))


def _every_flag() -> Options:
    return Options(msgid="a@example.org", lore_url=LORE, lore_timeout=7.0, offline=True,
                   latest=True, tree=Path("/src/linux"), on="abc123",
                   configs=["base", "debug"], run_dir=Path("/runs/r"), json_out=Path("/r.json"),
                   guest_timeout=99.0, guest_tests=["guest_tests/a.py"], test_timeout=12.5,
                   repeat=2, timeout=600.0, each_patch=True, rerun=True, keyword="irq",
                   cpus=4, memory="512M", kselftests=["cachestat", "mm:ksm_tests"],
                   suites=[(Path(__file__).parents[2] / "guest_selftest" / "smoke").resolve()],
                   kconfig_add=["CONFIG_KASAN=y", "# CONFIG_X is not set", "kvm_guest.config"],
                   expect_fixed=["guest_tests/a.py"],
                   rerun_baseline=True, sandbox=False, jobs=3)


def _differences(opts: Options) -> list[str]:
    back = _round_trip(opts)
    return [f.name for f in dataclasses.fields(Options)
            if f.name not in ("argv", "rerun_patched")
            and getattr(back, f.name) != getattr(opts, f.name)]


def test_every_option_round_trips_through_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    assert _differences(_every_flag()) == []
    # A --range run (no Message-ID) and one that keeps every default.
    assert _differences(dataclasses.replace(_every_flag(), msgid=None, range="a..b",
                                            on=None)) == []
    assert _differences(Options(msgid="a@example.org", debian_package="linux-source-7.2",
                                run_dir=Path("/runs/r"))) == []
    # --kconfig is the whole config: no --config with it.
    assert _differences(dataclasses.replace(_every_flag(), configs=[],
                                            kconfig="x86_64_defconfig")) == []
    # --build-only boots nothing, so it takes no boot flag (refused, not ignored).
    assert _differences(Options(msgid="a@example.org", build_only=True, each_patch=True,
                                debian_package="linux-source-7.2",
                                configs=["base"], run_dir=Path("/runs/r"))) == []


def test_a_flag_left_out_of_the_line_is_caught(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(options, "FLAGS", tuple(f for f in options.FLAGS if f[0] != "repeat"))
    assert _differences(_every_flag()) == ["repeat"]


# -- one BootSettings builder -----------------------------------------------------------

def _job_and_cell_settings(tmp_path) -> tuple[boots.BootSettings, boots.BootSettings]:
    """A CI baseline job's boot settings and those of a cell of the same
    tree x config, as each builds them."""
    n, s, t = _night(tmp_path)
    expected = ["guest_tests/a.py::t"]
    job = job_run.baseline_settings(n.plan, "base", False, expected, "kvm")
    opts = cells.cell_options(n, tmp_path, s, t, "base", n.plan.guest_tests, False,
                              baseline_booted=True)
    return job, options.boot_settings(opts, expected, "kvm")


def _results_keys(tmp_path, *settings_: boots.BootSettings) -> set[str]:
    image = tmp_path / "bzImage"
    image.write_bytes(b"a kernel")
    k = Kernel("base", image, tmp_path / ".config", False, 1.0, None)
    return {boots.results_key(k, s) for s in settings_}


def test_a_baseline_job_and_a_cell_keep_results_under_one_key(tmp_path):
    job, cell = _job_and_cell_settings(tmp_path)
    assert job == cell and job.tests == ["guest_tests/a.py"] and not job.confined
    assert len(_results_keys(tmp_path, job, cell)) == 1


def test_a_job_that_builds_its_own_settings_is_caught(tmp_path, monkeypatch):
    """The broken variant: the baseline job's settings written out by hand
    again, one value off (the cell's test_timeout is the default)."""
    monkeypatch.setattr(job_run, "boot_settings", lambda opts, expected, accel: boots.BootSettings(
        opts.guest_tests, expected, 60.0, opts.repeat, accel, confined=opts.sandbox))
    job, cell = _job_and_cell_settings(tmp_path)
    assert job != cell and len(_results_keys(tmp_path, job, cell)) == 2


# -- one settings object -----------------------------------------------------------------

def test_the_settings_object_is_every_setting_typed(monkeypatch, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('guest_timeout = 1234\nconfigs = ["base"]\n')
    monkeypatch.setenv("ORCH_CONFIG", str(cfg))
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    args = cli.parser().parse_args(["test", "--jobs", "3", "x@example.org"])
    s = common.settings_of(args)
    assert tuple(f.name for f in dataclasses.fields(s) if f.name != "effective") == \
        settings.NAMES
    assert (s.jobs, s.guest_timeout, s.configs, s.cache) == (3, 1234, ["base"],
                                                             tmp_path / "cache")
    assert {n: e.value for n, e in s.effective.items()} == \
        {n: getattr(s, n) for n in settings.NAMES}
    assert s.effective["jobs"].source == "flag --jobs"
    assert s.effective["guest_timeout"].source == str(cfg)


# -- one slug --------------------------------------------------------------------------

OLD_NAMES = {   # each caller's expression before core.names, and the slug that replaces it
    "run dir": (lambda x: re.sub(r"[^A-Za-z0-9._-]+", "_", x).strip("._-")[:60] or "run",
                lambda x: slug(x, 60, empty="run")),
    "cell dir": (lambda x: re.sub(r"[^A-Za-z0-9._-]+", "_", x).strip("._-")[:50] or "x",
                 lambda x: slug(x, 50)),
    "job id": (lambda x: re.sub(r"[^a-z0-9]+", "-", x.lower()).strip("-")[:30] or "x",
               lambda x: slug(x.lower(), 30, keep="a-z0-9", sep="-")),
    "mbox name": (lambda x: re.sub(r"[^A-Za-z0-9._-]+", "_", x)[:60],
                  lambda x: slug(x, 60, strip=False, empty="")),
    "page name": (lambda x: re.sub(r"[^A-Za-z0-9._-]+", "_", x)[:80] + ".html",
                  lambda x: slug(x, 80, strip=False, empty="") + ".html"),
}
TEXTS = ["<20260227-blk-dontcache-v3-0-cd309ccd5868@columbia.edu>", "debian:linux-source-7.2",
         "..", "", "--x--", "Ünïcödé tree/label", "a" * 200, "change-id:2026 x/../y",
         "/tmp/linux@origin/main", "_.-"]


@pytest.mark.parametrize("caller", sorted(OLD_NAMES))
def test_one_slug_keeps_every_name(caller):
    old, new = OLD_NAMES[caller]
    assert [new(t) for t in TEXTS] == [old(t) for t in TEXTS]


def test_a_slug_with_another_callers_arguments_is_caught():
    old, _ = OLD_NAMES["cell dir"]
    assert [slug(t, 60, empty="run") for t in TEXTS] != [old(t) for t in TEXTS]
