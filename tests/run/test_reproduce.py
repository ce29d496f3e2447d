"""Every command line orch records or prints is the run it stands for: read
back through orch's own parser and `orch test`'s own options(), it gives the
options that run used (run.options: argv_of for a run's own record,
reproduce_argv for a line that runs it again, which leaves out only
NOT_REPRODUCED).

Here the lines as the nightly's cells and a bisect's steps build them; the
tests that run the recorded lines of real runs as `orch` and compare the
results are tests/nightly/test_nightly.py, tests/bisect/test_bisect.py and
tests/fanout/test_job_reproduce.py, which read their lines with parsed().
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.bisect.judge import Mode
from orchestrator.bisect.stepping import Stepper, StepSettings
from orchestrator.commands import common
from orchestrator.commands import test as test_command
from orchestrator.core.progress import Progress
from orchestrator.guest import vm
from orchestrator.kernel import kconfig
from orchestrator.nightly import cell_rows, cells
from orchestrator.nightly.night import Night, Plan, SeriesRev, TreeState
from orchestrator.run import options
from orchestrator.run.boots import BootSettings
from orchestrator.run.options import NOT_REPRODUCED, Options
from orchestrator.source import debsrc, tree

LORE = "https://lore.example.org"
# Fields no command line holds: the line itself, and the nightly's own
# rerun of a patched kernel (no flag: whether a kept boot answers).
UNFLAGGED = ("argv", "rerun_patched")


def parsed(line: str | list[str]) -> Options:
    """An `orch test` line as `orch test` reads it: orch's parser, the
    settings, the command's own options() (the caller isolates ORCH_CACHE)."""
    argv = shlex.split(line) if isinstance(line, str) else list(line)
    assert argv[:2] == ["orch", "test"], argv
    args = cli.parser().parse_args(argv[1:])
    return test_command.options(args, argv[1:], common.settings_of(args))


def differences(ran: Options, line: str | list[str], leave_out=()) -> dict[str, tuple]:
    """Each option whose value `line` does not give back: name -> (ran, read)."""
    back = parsed(line)
    skip = {*UNFLAGGED, *leave_out}
    return {f.name: (_value(ran, f.name), _value(back, f.name))
            for f in dataclasses.fields(Options)
            if f.name not in skip and _value(ran, f.name) != _value(back, f.name)}


def _value(o: Options, name: str) -> object:
    # No --debian-source is the default package, which `orch test` fills in.
    v = getattr(o, name)
    return debsrc.DEFAULT_PACKAGE if name == "debian_package" and v is None else v


def as_reproduced(ran: Options, msgid: str, t: TreeState) -> Options:
    """A cell's options as its reproduce line states them: the revision by
    its Message-ID (not the night's pinned mbox, so not offline), the
    plan's tree."""
    debian = t.kind == "debian"
    return dataclasses.replace(ran, msgid=msgid, mbox=None, offline=False,
                               tree=None if debian else Path(t.path),
                               debian_package=t.label.removeprefix("debian:") if debian
                               else ran.debian_package)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))


# -- the builder -------------------------------------------------------------------------

def _every_flag() -> Options:
    return Options(msgid="a@example.org", lore_url=LORE, lore_timeout=7.0, offline=True,
                   latest=True, tree=Path("/src/linux"), on="abc123", configs=["base", "debug"],
                   run_dir=Path("/runs/r"), json_out=Path("/r.json"), guest_timeout=99.0,
                   guest_tests=["guest_tests/a.py"], keyword="not slow", test_timeout=12.5,
                   repeat=2, timeout=600.0, each_patch=True, rerun=True,
                   rerun_baseline=True, sandbox=False, jobs=3, expect_fixed=["none"])


def test_a_reproduce_line_is_the_run_less_where_it_went_and_how_fast():
    o = _every_flag()
    assert differences(o, options.reproduce_argv(o), NOT_REPRODUCED) == {}
    # ... and it does leave those out: a rerun writes into a directory of its own.
    line = options.reproduce_argv(o)
    assert not {"--run-dir", "--json", "--jobs", "--rerun", "--rerun-baseline"} & set(line)
    assert "--run-dir" in options.argv_of(o)


def test_a_line_that_loses_a_flag_is_caught(monkeypatch):
    monkeypatch.setattr(options, "FLAGS", tuple(f for f in options.FLAGS
                                                if f[0] != "test_timeout"))
    o = _every_flag()
    assert differences(o, options.reproduce_argv(o), NOT_REPRODUCED) == \
        {"test_timeout": (12.5, vm.TEST_TIMEOUT)}


# -- a night's cells ---------------------------------------------------------------------

def _night(tmp_path, kind: str = "git") -> tuple[Night, SeriesRev, TreeState]:
    s = SeriesRev("change-id:20261126-a", "mini: a", "a@example.org", 2, "20261126-a", "tracked",
                  "series/a-v2.mbx", expect_fixed=["guest_tests/a.py::t"])
    t = (TreeState("mini", "git", str(tmp_path / "linux"), "c0ffee" * 6 + "abcd")
         if kind == "git" else
         TreeState("debian:linux-source-7.2", "debian", "/cache/debian/7.2", "ab" * 20))
    plan = Plan("2026-11-27", LORE, ["base"], [s], [t], guest_tests=["guest_tests/a.py"],
                guest_timeout=1234.0, test_timeout=45.0)
    return Night("2026-11-27", "t0", plan), s, t


@pytest.mark.parametrize("baseline_booted", [False, True])
@pytest.mark.parametrize("sandbox", [False, True])
def test_a_cells_recorded_command_is_the_cell(tmp_path, sandbox, baseline_booted):
    """run.json's command of a cell: every option the cell ran with (the
    night's lore, guest tests and timeouts, --offline-mode, --no-sandbox,
    --expect-fixed, whether it boots the baseline), its run directory too."""
    n, s, t = _night(tmp_path)
    ndir = tmp_path / "nights" / n.night
    ran = cells.cell_options(n, ndir, s, t, "base", n.plan.guest_tests, sandbox,
                             baseline_booted, tree_path=tmp_path / "here")
    assert differences(ran, ran.argv) == {}
    # The run is what the night asks (so the line is not trivially empty).
    assert (ran.offline, ran.lore_url, ran.guest_tests, ran.sandbox, ran.guest_timeout,
            ran.test_timeout, ran.expect_fixed, ran.rerun_baseline) == \
        (True, LORE, ["guest_tests/a.py"], sandbox, 1234.0, 45.0, ["guest_tests/a.py::t"],
         not baseline_booted)


@pytest.mark.parametrize("kind", ["git", "debian"])
@pytest.mark.parametrize("failing", [None, "guest_tests/a.py::t"])
def test_a_cells_reproduce_line_is_the_cell_by_its_message_id(tmp_path, kind, failing):
    n, s, t = _night(tmp_path, kind)
    ran = cells.cell_options(n, tmp_path, s, t, "base", n.plan.guest_tests, sandbox=False)
    line = cell_rows.reproduce(s, t, "base", failing, run=ran)
    want = as_reproduced(ran, s.msgid, t)
    if failing:    # narrowed to the one failing test
        want.guest_tests = [failing]
    assert differences(want, line, NOT_REPRODUCED) == {}
    if kind == "debian":   # named by its package, as orch imports it
        assert "--debian-source linux-source-7.2" in line and "--tree" not in line


# -- a bisect's steps --------------------------------------------------------------------

@pytest.fixture
def stepper(tmp_path, mini) -> Stepper:
    """A Stepper on the stand-in tree, with every boot setting off its default."""
    (mini / "x.c").write_text("int x(void) { return 1; }\n")
    subprocess.run(["git", "-C", str(mini), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(mini), "-c", "user.name=T", "-c", "user.email=t@e",
                    "commit", "-qm", "x"], check=True)
    ws = tree.workspace(tree.open_tree(mini))
    ws.lock.release()
    boot = BootSettings(["guest_tests/a.py"], ["guest_tests/a.py::t"], 45.0, 3, "kvm",
                        confined=False, keyword="not slow", cpus=4, memory="1G")
    return Stepper(ws, kconfig.load("base"), StepSettings(Mode.TEST, 3, False, boot, 99.0),
                   tmp_path / "run", Progress(), tree_path=mini)


def test_a_steps_reproduce_line_builds_and_boots_that_step_again(stepper, mini):
    head = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD", "HEAD^"],
                          capture_output=True, text=True, check=True).stdout.split()
    ran = stepper.reproduce_options(head[0])
    line = stepper.reproduce(head[0])
    assert differences(ran, line, NOT_REPRODUCED) == {}
    back = parsed(line)
    # The same commit, on its parent, with the step's config ...
    assert (back.tree, back.range, back.configs) == (mini, f"{head[1]}..{head[0]}", ["base"])
    # ... booted exactly as the step booted it: its results key, its time limit.
    s = stepper.settings
    assert options.boot_settings(back, s.boot.expected, s.boot.accel) == s.boot
    assert back.guest_timeout == s.guest_timeout


def test_a_root_commit_has_no_reproduce_line(stepper, mini):
    root = subprocess.run(["git", "-C", str(mini), "rev-list", "--max-parents=0", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert stepper.reproduce(root) is None
