"""What every command shares: the flag groups (so one flag means one thing
everywhere), the exit statuses its help ends with, and the settings."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.kernel import kconfig
from orchestrator.run import settings

EXIT_STATUSES = """\
exit status:
  0    passed: the patched kernel passed every test on every config
  1    failed: a regression, a patched failure, a new splat or a new hang
  2    bad input: a bad flag, unknown Message-ID, unreadable mbox, no such tree/config
  3    the series does not apply
  4    the patched build failed
  5    infrastructure: the baseline build, the VM, a timeout (not the series' fault)
  130  interrupted (Ctrl-C, SIGTERM); the run record says how far it got"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit status is 2 too
        print(f"orch: error: {message}", file=sys.stderr)
        sys.exit(int(Exit.BAD_INPUT))


def parser_kwargs(epilog: str = EXIT_STATUSES) -> dict:
    return {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _configs_help() -> str:
    try:
        known = ", ".join(kconfig.available())
        matrix = " ".join(kconfig.default_matrix())
    except (OSError, OrchError):  # no kconfigs/ (a bad ORCH_DATA): the command says so
        known = matrix = "?"
    return (f"kernel config (repeatable): one of {known}; default: the matrix in "
            f"kconfigs/matrix ({matrix}) or `configs` in the config file")


def add_intake(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("series intake")
    g.add_argument("--mbox", type=Path, help="read the series from a local mbox")
    g.add_argument("--range", metavar="A..B",
                   help="test the commits A..B of the --tree (or the default tree) as the "
                   "series: one patch per commit, oldest first, no merges, on base A; "
                   "no Message-ID or --mbox with it")
    g.add_argument("--lore-url", help="lore base URL (a mirror)")
    g.add_argument("--lore-timeout", type=float,
                   help="seconds b4 may take to fetch the series")
    g.add_argument("--offline-mode", dest="offline", action="store_true",
                   help="no network: with --mbox, b4 looks nothing up")
    g.add_argument("--latest", action="store_true",
                   help="test the newest revision b4 finds, not the one named")


def add_tree(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tree")
    g.add_argument("--tree", type=Path, help="kernel git tree (default: Debian's linux-source)")
    g.add_argument("--debian-source", help="Debian package of the default tree")
    g.add_argument("--base", help="base commit/ref when the tree lacks the series' base-commit")
    g.add_argument("--cache", type=Path, metavar="DIR",
                   help="where orch keeps trees, worktrees, kernels and kept results "
                   "(default: $ORCH_CACHE, else ~/.cache/orch)")


def add_build(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build")
    g.add_argument("--config", action="append", dest="configs", metavar="NAME",
                   help=_configs_help())
    g.add_argument("--jobs", "-j", type=int,
                   help="make jobs shared by all concurrent builds (default: CPUs)")
    g.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without bubblewrap's curated view (the network, "
                   "every file and orch's environment reachable: only for series you trust)")


def add_boot(p: argparse.ArgumentParser, baseline: bool = True) -> None:
    """`baseline`: the command boots a baseline (orch test does; a bisect's
    commits have none)."""
    g = p.add_argument_group("boot and guest tests")
    g.add_argument("--guest-test", action="append", dest="guest_tests", metavar="ID",
                   help="run only this guest test (pytest node id; repeatable)")
    g.add_argument("--guest-timeout", type=float,
                   help="seconds for one boot + guest tests")
    g.add_argument("--test-timeout", type=float,
                   help="seconds for one guest test; a hung test fails and the suite goes on")
    g.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each guest test N times in the same boot; a test whose runs "
                   "differ is FLAKY, a failure (default: %(default)s)")
    g.add_argument("--rerun", action="store_true",
                   help="boot every kernel even when its results with this suite, selection "
                   "and VM settings are kept from an earlier run")
    if baseline:
        g.add_argument("--rerun-baseline", action="store_true",
                       help="boot the baseline kernels even when their results are kept")


def settings_of(args: argparse.Namespace) -> settings.Settings:
    """The command's settings, built once: flags over the environment over
    the config file over the defaults (settings.py checks them all alike);
    the cache location takes effect for the whole command."""
    # Each setting's flag has the setting's name as its argparse dest.
    return settings.resolve({name: getattr(args, name) for name in settings.NAMES
                             if getattr(args, name, None) is not None})


def add_modes(g, build: str, splat: str, fixed: str) -> None:
    """--build / --splat / --fixed: what makes a commit bad (bisect, check)."""
    from orchestrator.bisect.judge import Mode
    m = g.add_mutually_exclusive_group()
    for flag, mode, text in (("--build", Mode.BUILD, build), ("--splat", Mode.SPLAT, splat),
                             ("--fixed", Mode.FIXED, fixed)):
        m.add_argument(flag, dest="mode", action="store_const", const=mode, help=text)
    g.set_defaults(mode=Mode.TEST)


def night_of(text: str | None) -> str:
    """A --night value (YYYY-MM-DD, a real date), default today in UTC: the
    nightly's and orch plan's."""
    night = text or dt.datetime.now(dt.timezone.utc).date().isoformat()
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", night):
        raise BadInput(f"--night wants YYYY-MM-DD, not {night!r}")
    try:
        dt.date.fromisoformat(night)
    except ValueError:
        raise BadInput(f"--night {night}: no such date")
    return night


def use_cache(path: Path | None) -> None:
    """--cache of the nightly commands: through ORCH_CACHE, which every
    `orch test` they run inside them reads."""
    if path:
        os.environ["ORCH_CACHE"] = str(path.expanduser().resolve())


def night_args(args: argparse.Namespace):
    """NIGHTLY.toml, --night and --cache of `orch nightly` and `orch plan`."""
    from orchestrator.nightly import config_file
    cfg = config_file.load(args.file)
    night = night_of(args.night)
    use_cache(args.cache)
    return cfg, night
