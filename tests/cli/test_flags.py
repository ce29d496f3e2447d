"""Each command's flags: none is accepted and then ignored (it is refused in
one line instead), and every default is shown in --help, from the constant
the code uses (no kernel, no network; real `orch` subprocesses for what a
user sees)."""

from __future__ import annotations

import argparse
import os

import pytest
from helpers import one_error_line, orch

from orchestrator import cli
from orchestrator.commands import bisect as bisect_command
from orchestrator.core.errors import BadInput
from orchestrator.guest import vm
from orchestrator.kernel import build
from orchestrator.source import debsrc, intake


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {max(a.option_strings, key=len): a for a in parser._actions if a.option_strings}


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as --help prints it (%(default)s filled in), on one line."""
    text = (action.help or "") % {**vars(action), "prog": parser.prog}
    return " ".join(text.split())


# -- refused, not ignored --------------------------------------------------------------

@pytest.mark.parametrize("args,status,says", [
    (["bisect", "--range=a..b", "--good", "x"], 2, "unrecognized arguments: --range=a..b"),
    (["check", "--base", "v1", "--build"], 128, "unrecognized arguments: --base v1"),
    (["check", "--debian-source", "linux-source-7.3", "--build"], 128,
     "unrecognized arguments: --debian-source linux-source-7.3"),
])
def test_a_flag_the_command_would_ignore_is_refused(env, tmp_path, args, status, says):
    r = orch(env, tmp_path, *args)
    assert r.returncode == status, r.stderr
    assert says in one_error_line(r.stderr)
    assert not (tmp_path / "orch-runs").exists()


@pytest.mark.parametrize("args,status,says", [
    (["check", "--build", "--guest-test", "guest_tests/x.py", "-k", "irq"], 128,
     "--guest-test, -k: --build only builds each commit, it boots none"),
    (["check", "--build", "--repeat", "2", "--test-timeout", "5"], 128,
     "--test-timeout, --repeat: --build only builds each commit, it boots none"),
    (["bisect", "--build", "--good", "v1", "--rerun"], 2,
     "--rerun: --build only builds each commit, it boots none"),
    (["bisect", "--good", "v1", "--bad", "v2", "--guest-test", "g", "--latest", "--base", "v0"],
     2, "--latest, --base: for a series (a Message-ID or --mbox); --good/--bad bisect the "
     "tree's own commits"),
    (["bisect", "--good", "v1", "--guest-test", "g", "--lore-url", "https://lore.example.org"],
     2, "--lore-url: for a series"),
    (["bisect", "--good", "v1", "--build", "--tree", "/src/linux", "--debian-source", "pkg"], 2,
     "--debian-source picks the default tree, and the tree is /src/linux (flag --tree)"),
    (["test", "--mbox", "x.mbox", "--build-only", "--guest-test", "g", "--rerun-baseline"], 2,
     "--guest-test, --rerun-baseline: --build-only boots nothing"),
    (["test", "--mbox", "x.mbox", "--build-only", "--repeat", "2"], 2,
     "--repeat: --build-only boots nothing"),
    (["test", "--mbox", "x.mbox", "--tree", "/src/linux", "--debian-source", "pkg"], 2,
     "--debian-source names the default tree; with a --tree"),
])
def test_a_flag_the_mode_would_ignore_is_refused(env, tmp_path, args, status, says):
    r = orch(env, tmp_path, *args)
    assert r.returncode == status, r.stderr
    assert one_error_line(r.stderr).startswith(f"orch: error: {says}")
    assert not (tmp_path / "orch-runs").exists()


@pytest.mark.parametrize("extra,named", [
    (["--config", "base"], "--config"),
    (["--guest-test", "guest_tests/test_x.py"], "--guest-test"),
    (["-k", "irq"], "-k"),
    (["--build"], "--build"),
    (["--fixed"], "--fixed"),
    (["--good", "v1", "--bad", "v2"], "--good, --bad"),
    (["--repeat", "3"], "--repeat"),
    (["--tree", "/src/linux"], "--tree"),
    (["--base", "v1"], "--base"),
    (["--run-dir", "elsewhere"], "--run-dir"),
    (["--lore-url", "https://lore.example.org"], "--lore-url"),
    (["--offline-mode"], "--offline-mode"),
    (["a@example.org"], "MSGID"),
])
def test_resume_refuses_what_would_change_the_bisect(env, tmp_path, extra, named):
    r = orch(env, tmp_path, "bisect", "--resume", str(tmp_path / "run"), *extra)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith("orch: error: --resume goes on with the bisect as its run.json "
                           f"says: {named} cannot change it (beside --resume: --cache, --jobs, ")


def test_resume_takes_how_this_machine_goes_on():
    """What run.json does not keep may be given again (and is used:
    options() reads each of these)."""
    args = cli.parser().parse_args(
        ["bisect", "--resume", "/r", "--jobs", "3", "--cache", "/c", "--guest-timeout", "9",
         "--test-timeout", "8", "--no-sandbox", "--rerun"])
    bisect_command._resume_alone(args)          # no BadInput
    args = cli.parser().parse_args(["bisect", "--resume", "/r", "--splat"])
    with pytest.raises(BadInput, match="--splat cannot change it"):
        bisect_command._resume_alone(args)
    # Without --resume, every flag is a new bisect's.
    bisect_command._resume_alone(cli.parser().parse_args(["bisect", "--good", "v1", "--build"]))


@pytest.mark.parametrize("fmt,flag,value", [
    ("github", "--tags", "kvm,big"), ("json", "--tags", "kvm"),
    ("gitlab", "--runs-on", "self-hosted"), ("json", "--runs-on", "ubuntu-latest"),
    ("json", "--shared-ccache", "redis"),
])
def test_plan_refuses_an_engine_flag_its_format_has_no_place_for(env, tmp_path, fmt, flag,
                                                                 value):
    r = orch(env, tmp_path, "plan", tmp_path / "nosuch.toml", "--out", tmp_path / "p",
             "--format", fmt, flag, value)
    assert r.returncode == 2, r.stderr
    assert f"orch: error: {flag} is for --format " in one_error_line(r.stderr)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("size", ["0", "-1"])
def test_plan_refuses_a_group_size_below_one_before_anything(env, tmp_path, size):
    r = orch(env, tmp_path, "plan", tmp_path / "nosuch.toml", "--out", tmp_path / "p",
             "--group-size", size)
    assert (r.returncode, one_error_line(r.stderr)) == \
        (2, f"orch: error: --group-size must be at least 1, not {size}")
    assert not (tmp_path / "p").exists()


def test_check_and_bisect_have_no_flag_they_ignore():
    cmds = _commands()
    assert {"--base", "--debian-source", "--range"}.isdisjoint(_options(cmds["check"]))
    assert "--range" not in _options(cmds["bisect"])
    assert {"--base", "--debian-source", "--range"} <= set(_options(cmds["test"]))


# -- defaults in --help ----------------------------------------------------------------

# A setting's flag has no argparse default (a given flag must win over the
# config file): its help says orch's own, which is the code's constant.
SETTING_DEFAULTS = {
    "--lore-url": intake.DEFAULT_LORE,
    "--lore-timeout": intake.B4_TIMEOUT,
    "--guest-timeout": vm.BOOT_TIMEOUT,
    "--test-timeout": vm.TEST_TIMEOUT,
    "--debian-source": debsrc.DEFAULT_PACKAGE,
}
# Options that are simply not used unless given: nothing to show.
NO_DEFAULT = {"--mbox", "--on", "-k", "--json", "--good", "--resume", "--history", "--import",
              "--kconfig", "--kconfig-add"}   # no default: none given is none


def test_jobs_help_says_what_build_jobs_is():
    assert build.jobs() == os.cpu_count() + 1
    for name, parser in _commands().items():
        if "--jobs" in _options(parser):
            assert "(default: the number of CPUs + 1, or `jobs` in the config file)" in \
                _help(parser, _options(parser)["--jobs"]), name


def test_every_default_is_in_the_help_and_is_the_codes():
    seen = set()
    for name, parser in _commands().items():
        for flag, action in _options(parser).items():
            text = _help(parser, action)
            if flag in SETTING_DEFAULTS:
                value = SETTING_DEFAULTS[flag]
                assert f"(default: {value}, or `{action.dest}` in the config file)" in text, \
                    (name, flag, text)
                seen.add(flag)
            elif action.default not in (None, False, [], argparse.SUPPRESS) and \
                    action.nargs != 0:
                assert f"default: {action.default}" in text, (name, flag, text)
                seen.add(flag)
            elif action.nargs != 0 and not action.required and flag not in NO_DEFAULT \
                    and action.default is not argparse.SUPPRESS:
                assert "default" in text, (name, flag, text)
                seen.add(flag)
    # Not vacuous: each kind of default was checked.
    assert set(SETTING_DEFAULTS) | {"--repeat", "--group-size", "--out", "--timeout",
                                    "--cache", "--tree", "--config", "--run-dir"} <= seen


def test_timeouts_in_the_help_as_the_user_reads_it(env, tmp_path):
    r = orch(env, tmp_path, "test", "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    for flag, value in (("--guest-timeout S", vm.BOOT_TIMEOUT), ("--test-timeout S",
                        vm.TEST_TIMEOUT), ("--lore-timeout S", intake.B4_TIMEOUT)):
        start = text.index(flag + " ")
        assert f"(default: {value}, or" in text[start:start + 200], flag
