"""What every command shares: the flag groups (so one flag means one thing
everywhere), the exit statuses its help ends with, and the settings."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import exits, paths
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.guest import vm
from orchestrator.kernel import kconfig
from orchestrator.run import settings

# orch test's; every command's comes from the one table in core/exits.py.
EXIT_STATUSES = exits.epilog("test")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit status is 2 too
        print(f"orch: error: {message}", file=sys.stderr)
        sys.exit(int(Exit.BAD_INPUT))


def parser_kwargs(epilog: str = EXIT_STATUSES) -> dict:
    return {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _configs_help(matrix: bool) -> str:
    """`matrix`: the command builds every config given (orch test); else
    one, the first (bisect, check)."""
    try:
        known = ", ".join(kconfig.available())
        default = kconfig.default_matrix()
    except (OSError, OrchError):  # no kconfigs/ (a bad ORCH_DATA): the command says so
        known, default = "?", ["?"]
    if not matrix:
        return (f"kernel config: one of {known}; default: the first of kconfigs/matrix "
                f"({default[0]}), or of `configs` in the config file")
    return (f"kernel config (repeatable): one of {known}; default: the matrix in "
            f"kconfigs/matrix ({' '.join(default)}) or `configs` in the config file")


def file_default(name: str, shown: object = None) -> str:
    """How a setting's flag says its default: orch's own (the constant that
    settings.defaults() takes, so --help cannot drift from it), and that
    the config file may set another."""
    value = settings.defaults()[name] if shown is None else shown
    return f"(default: {value}, or `{name}` in the config file)"


CACHE_HELP = ("where orch keeps trees, worktrees, kernels and kept results (default: "
              "$ORCH_CACHE, else `cache` in the config file, else ~/.cache/orch)")


def add_cache(g) -> None:
    g.add_argument("--cache", type=Path, metavar="DIR", help=CACHE_HELP)


def add_intake(p: argparse.ArgumentParser, with_range: bool = True) -> None:
    """`with_range`: --range, a tree's commits as the series (orch test;
    a bisect takes --good and --bad for that)."""
    g = p.add_argument_group("series intake")
    g.add_argument("--mbox", type=Path, help="read the series from a local mbox")
    if with_range:
        g.add_argument("--range", metavar="A..B",
                       help="test the commits A..B of the --tree (or the default tree) as the "
                       "series: one patch per commit, oldest first, no merges, on base A; "
                       "no Message-ID or --mbox with it")
    g.add_argument("--lore-url", help="lore or a mirror, with its https:// (a trailing /all "
                   "is the same) " + file_default("lore_url"))
    g.add_argument("--lore-timeout", type=float, metavar="S",
                   help="seconds b4 may take to fetch the series " + file_default("lore_timeout"))
    g.add_argument("--offline-mode", dest="offline", action="store_true",
                   help="no network: with --mbox, b4 looks nothing up")
    g.add_argument("--latest", action="store_true",
                   help="test the newest revision b4 finds, not the one named")


def add_tree(p: argparse.ArgumentParser, series: bool = True) -> None:
    """`series`: the command applies a series to a tree it may import
    (--debian-source, --base); orch check only reads the checkout it runs in."""
    g = p.add_argument_group("tree")
    if not series:
        g.add_argument("--tree", type=Path, help="the kernel git checkout whose HEAD (or "
                       "BISECT_HEAD) is checked (default: the current directory)")
        add_cache(g)
        return
    g.add_argument("--tree", type=Path, help="kernel git tree (default: `tree` in the config "
                   "file, else Debian's linux-source: --debian-source)")
    g.add_argument("--debian-source", help="Debian package of the default tree "
                   + file_default("debian_source"))
    g.add_argument("--base", help="base commit/ref when the tree lacks the series' base-commit "
                   "(default: the tree's HEAD)")
    add_cache(g)


def add_build(p: argparse.ArgumentParser, matrix: bool = True) -> None:
    """`matrix`: --config is repeatable (orch test); bisect and check follow one."""
    g = p.add_argument_group("build")
    g.add_argument("--config", action="append", dest="configs", metavar="NAME",
                   help=_configs_help(matrix))
    g.add_argument("--kconfig", metavar="FILE|TARGET",
                   help="the whole config instead of --config: a .config file, or a make "
                   "target such as defconfig or tinyconfig; kconfigs/vm.config (what a "
                   "virtme-ng boot needs) goes on top")
    g.add_argument("--kconfig-add", action="append", metavar="X",
                   help="on top of each config (repeatable, in order): CONFIG_X=y|m|n|VALUE, "
                   "'# CONFIG_X is not set', a fragment file, or a fragment of the tree under "
                   "test such as kvm_guest.config; each option must survive olddefconfig")
    g.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="make jobs shared by all concurrent builds "
                   + file_default("jobs", "the number of CPUs + 1"))
    g.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build and boot without bubblewrap's curated view (the network, "
                   "every file and orch's environment reachable: only for series you trust)")


def chosen_configs(args: argparse.Namespace, configs: list[str]) -> list[str]:
    """`configs` (--config's, else the config file's), or none with
    --kconfig: it is the whole config, so the file's do not apply, and a
    --config with it is refused."""
    if args.kconfig is None:
        return list(configs)
    if args.configs:
        raise BadInput("--kconfig is the whole config: give it or --config, not both")
    return []


def kconfig_options(args: argparse.Namespace) -> dict[str, object]:
    return {"kconfig": args.kconfig, "kconfig_add": list(args.kconfig_add or [])}


def guest_options(args: argparse.Namespace) -> dict[str, object]:
    """--kselftest and --suite, checked before any work: a bad spec or a
    suite that is not a directory is one line, exit 2."""
    from orchestrator.guest import selection
    from orchestrator.kernel import kselftest_build
    from orchestrator.core import sandbox
    specs = kselftest_build.parse_specs(args.kselftests or [])
    suites = [s.path for s in selection.suites(args.suites or [])]
    for s in suites if getattr(args, "sandbox", True) else ():
        d = sandbox.unreadable(s)
        if d is not None:
            # Else its tests would come back MISS with no word of why.
            raise BadInput(f"--suite {s}: the guest runs as nobody and cannot read {d} "
                           f"(mode {d.lstat().st_mode & 0o777:o}): make it readable "
                           "(chmod o+rx) or keep the suite elsewhere")
    return {"kselftests": [s.text for s in specs], "suites": suites}


def add_boot(p: argparse.ArgumentParser, baseline: bool = True) -> None:
    """`baseline`: the command boots a baseline (orch test does; a bisect's
    commits have none)."""
    g = p.add_argument_group("boot and guest tests")
    g.add_argument("--guest-test", action="append", dest="guest_tests", metavar="ID",
                   help="run only this guest test: a node id, file or directory under "
                   "guest_tests/, or a test file of your own (repeatable; default: the "
                   "whole suite)")
    g.add_argument("--suite", action="append", dest="suites", type=Path, metavar="DIR",
                   help="run this pytest suite of your own too, written like guest_tests/ "
                   "(repeatable; its test ids start with the directory's name; default: none)")
    g.add_argument("--kselftest", action="append", dest="kselftests", metavar="TARGET[:TEST]",
                   help="build this target of the tree's tools/testing/selftests with each "
                   "kernel and run it in the guest with the kernel's runner (repeatable, or "
                   "comma separated: cachestat,mincore; TARGET:TEST runs one test of it; "
                   "default: none)")
    g.add_argument("-k", dest="keyword", metavar="EXPR",
                   help="run only the guest tests that match this pytest -k expression "
                   "(of those --guest-test names), e.g. 'irq and not task'")
    g.add_argument("--list-tests", action="store_true",
                   help="print the ids of the guest tests selected (--guest-test, -k), one "
                   "per line, and exit: nothing is fetched, built or booted")
    g.add_argument("--guest-timeout", type=float, metavar="S",
                   help="seconds for one boot + guest tests " + file_default("guest_timeout"))
    g.add_argument("--test-timeout", type=float, metavar="S",
                   help="seconds for one guest test; a hung test fails and the suite goes on "
                   + file_default("test_timeout"))
    g.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each guest test N times in the same boot; a test whose runs "
                   "differ is FLAKY, a failure (default: %(default)s)")
    g.add_argument("--cpus", type=cpus_count, default=vm.CPUS, metavar="N",
                   help=f"the guest's vCPUs, 1..{vm.MAX_CPUS} (default: %(default)s)")
    g.add_argument("--memory", type=memory_size, default=vm.MEMORY, metavar="SIZE",
                   help=f"the guest's memory, e.g. 512M or 4G, at least {vm.MIN_MEMORY_MB}M "
                   "(default: %(default)s)")
    g.add_argument("--rerun", action="store_true",
                   help="boot every kernel even when its results with this suite, selection "
                   "and VM settings are kept from an earlier run")
    if baseline:
        g.add_argument("--rerun-baseline", action="store_true",
                       help="boot the baseline kernels even when their results are kept")


def cpus_count(text: str) -> int:
    """--cpus N: argparse's type, so a bad N is its one-line usage error."""
    if not re.fullmatch(r"[1-9][0-9]*", text) or int(text) > vm.MAX_CPUS:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of vCPUs, "
                                         f"1..{vm.MAX_CPUS}")
    return int(text)


def memory_size(text: str) -> str:
    """--memory SIZE as vng takes it, written one way (2048M is 2G), since
    the kept results' key holds it: two spellings of one size share them."""
    m = re.fullmatch(r"([1-9][0-9]*)([MG])", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size in M or G, such as 512M "
                                         "or 4G")
    mb = int(m[1]) << (10 if m[2] == "G" else 0)
    if mb < vm.MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"{text!r}: the guest needs at least "
                                         f"{vm.MIN_MEMORY_MB}M")
    return f"{mb >> 10}G" if mb % 1024 == 0 else f"{mb}M"


@dataclass(frozen=True)
class Given:
    """How to tell from the parsed namespace that an option was given."""
    flag: str                # its name on the command line (MSGID for a positional)
    dest: str
    default: object
    const: object            # a flag's value (--build, --no-sandbox); None for a valued option


def option_defaults(p: argparse.ArgumentParser) -> list[Given]:
    """Each option of `p` as given_options() reads it (argparse's default
    and, for a flag, its value). Call it once every option is added."""
    return [Given(max(a.option_strings, key=len) if a.option_strings else a.dest.upper(),
                  a.dest, a.default, a.const)
            for a in p._actions if a.default is not argparse.SUPPRESS]


def given_options(args: argparse.Namespace, keep: tuple[str, ...] = (),
                  only: tuple[str, ...] | None = None) -> list[str]:
    """The options the command line gave (args.option_defaults, from
    option_defaults()) whose dest is in `only` (default: any) and not in
    `keep`: for a command to refuse what it would otherwise ignore. Several
    flags may share a dest (--build, --splat, --fixed): a flag was given
    when the dest holds its value."""
    out = []
    for g in args.option_defaults:
        if g.dest in keep or (only is not None and g.dest not in only):
            continue
        value = getattr(args, g.dest, g.default)
        if (value == g.const if g.const is not None else value != g.default):
            out.append(g.flag)
    return out


# What only a boot uses: a bisect or check with --build boots nothing.
BOOT_ONLY = ("guest_tests", "keyword", "list_tests", "repeat", "guest_timeout", "test_timeout",
             "rerun", "cpus", "memory", "suites")


def refuse_boot_flags(args: argparse.Namespace) -> None:
    """With --build, the boot's flags would be ignored: refused instead."""
    from orchestrator.bisect.judge import Mode
    given = given_options(args, only=BOOT_ONLY) if args.mode == Mode.BUILD else []
    if given:
        raise BadInput(f"{', '.join(given)}: --build only builds each commit, it boots none")


def list_tests(args: argparse.Namespace) -> int:
    """--list-tests: the ids a run with these flags would expect, the same
    collection (selection.collect) that runs before its first build."""
    from orchestrator.guest import kselftest_run
    from orchestrator.kernel import kselftest_build
    from orchestrator.run import options
    chosen = guest_options(args)
    for nodeid in options.collect(args.guest_tests, args.keyword, chosen["kselftests"],
                                  chosen["suites"]):
        print(nodeid)
    # A target's tests are its kselftest-list.txt, known once it is built.
    for spec in kselftest_build.parse_specs(chosen["kselftests"]):
        print(kselftest_run.test_id(spec.target, spec.test or "*"))
    return int(Exit.OK)


def settings_of(args: argparse.Namespace) -> settings.Settings:
    """The command's settings, built once: flags over the environment over
    the config file over the defaults (settings.py checks them all alike);
    the cache location takes effect for the whole command."""
    # Each setting's flag has the setting's name as its argparse dest.
    return settings.resolve({name: getattr(args, name) for name in settings.NAMES
                             if getattr(args, name, None) is not None})


def checked_cache(s: settings.Settings) -> Path:
    """The cache the settings chose, checked before any work (paths.writable_dir),
    the error naming where it came from: --cache, ORCH_CACHE or the file."""
    source = s.effective["cache"].source
    what = {"flag --cache": "--cache", f"env {settings.ENV_CACHE}": f"{settings.ENV_CACHE}=",
            settings.DEFAULT: "the cache"}.get(source, f"{source}: cache")
    return paths.writable_dir(s.cache, what)


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


def machine_settings(args: argparse.Namespace) -> settings.Settings:
    """The settings of `orch nightly`, `orch plan` and `orch job`, resolved as
    settings_of does for the others: their --cache over ORCH_CACHE over the
    config file over the defaults, the cache checked before any work. What
    the night's file sets wins over them (nightly.config_file)."""
    # Absolute: ccache's base_dir is the cache, and relative to what else.
    given = {"cache": args.cache.expanduser().resolve()} if args.cache else {}
    s = settings.resolve(given)
    checked_cache(s)
    return s


def night_args(args: argparse.Namespace):
    """NIGHTLY.toml over this machine's settings, and --night, of `orch
    nightly` and `orch plan`: (the night's config, the night, the settings)."""
    from orchestrator.nightly import config_file
    night = night_of(args.night)
    s = machine_settings(args)
    return config_file.load(args.file, base=s), night, s
