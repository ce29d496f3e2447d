"""What an `orch test` run is asked to do (Options), the one command line
that says it (argv_of) and the one that runs it again (reproduce_argv), and
the one way any run's options become the boot settings its results are kept
under (boot_settings).

The nightly's cells, a CI job's baseline and a bisect's steps all boot
through boot_settings, so two of them that boot the same kernel with the
same suite find each other's results (result_cache) by construction.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.core.names import slug
from orchestrator.guest import selection, vm
from orchestrator.kernel import build
from orchestrator.run.boots import BootSettings
from orchestrator.source import intake


@dataclass
class SourceFlags:
    """Where the series and its tree come from: what test and bisect share."""
    msgid: str | None = None
    mbox: Path | None = None
    lore_url: str = intake.DEFAULT_LORE
    lore_timeout: float = intake.B4_TIMEOUT
    offline: bool = False
    latest: bool = False
    tree: Path | None = None
    base: str | None = None
    debian_package: str | None = None       # None: debsrc.DEFAULT_PACKAGE


@dataclass
class BootFlags:
    """How kernels are built and booted: what test, bisect and check share."""
    guest_tests: list[str] | None = None
    keyword: str | None = None              # -k EXPR: pytest's selection by expression
    # --kselftest TARGET[:TEST], as given (kernel/kselftest_build.parse_specs)
    kselftests: list[str] = field(default_factory=list)
    suites: list[Path] = field(default_factory=list)   # --suite DIR: pytest suites of one's own
    repeat: int = 1                         # each guest test N times in one boot
    guest_timeout: float = vm.BOOT_TIMEOUT
    test_timeout: float = vm.TEST_TIMEOUT   # one guest test
    cpus: int = vm.CPUS                     # the guest's vCPUs
    memory: str = vm.MEMORY                 # the guest's memory, as --memory writes it (2G)
    rerun: bool = False                     # boot every kernel again
    sandbox: bool = True
    jobs: int = field(default_factory=build.jobs)
    # --kconfig FILE|TARGET (the whole config, instead of --config) and the
    # --kconfig-add options, fragment files and in-tree fragments on top.
    kconfig: str | None = None
    kconfig_add: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)


@dataclass
class Options(BootFlags, SourceFlags):
    """`orch test`'s options."""
    range: str | None = None                # A..B of the tree, the series
    on: str | None = None                   # exactly this commit (--on), whatever the series names
    configs: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    json_out: Path | None = None
    timeout: float | None = None            # the whole run
    each_patch: bool = False
    build_only: bool = False
    rerun_baseline: bool = False            # boot the baselines again
    rerun_patched: bool = False             # boot the patched kernels again (the nightly)
    # The guest tests the series is expected to fix (--expect-fixed ID|GLOB):
    # None means "the tests about what the series touches"; ["none"], none.
    expect_fixed: list[str] | None = None


# Each option's flag, in the order a command line names them: the series,
# where it is tested, on what, then how (a reader finds the first part in
# every command orch prints). None: the positional Message-ID.
# rerun_patched, argv: no flag (the nightly's own, and the line itself).
FLAGS: tuple[tuple[str, str | None], ...] = (
    ("msgid", None), ("mbox", "--mbox"), ("lore_url", "--lore-url"),
    ("debian_package", "--debian-source"), ("tree", "--tree"), ("range", "--range"),
    ("base", "--base"), ("on", "--on"), ("configs", "--config"),
    ("kconfig", "--kconfig"), ("kconfig_add", "--kconfig-add"), ("run_dir", "--run-dir"),
    ("guest_tests", "--guest-test"), ("suites", "--suite"), ("kselftests", "--kselftest"),
    ("keyword", "-k"), ("expect_fixed", "--expect-fixed"),
    ("repeat", "--repeat"), ("cpus", "--cpus"), ("memory", "--memory"),
    ("build_only", "--build-only"),
    ("offline", "--offline-mode"), ("latest", "--latest"), ("lore_timeout", "--lore-timeout"),
    ("jobs", "--jobs"), ("sandbox", "--no-sandbox"), ("guest_timeout", "--guest-timeout"),
    ("test_timeout", "--test-timeout"), ("timeout", "--timeout"),
    ("each_patch", "--each-patch"), ("rerun", "--rerun"),
    ("rerun_baseline", "--rerun-baseline"), ("json_out", "--json"),
)


def argv_of(opts: Options, fields: Collection[str] | None = None) -> list[str]:
    """`orch test` with `opts`: every option that differs from its default
    (of `fields` only, when given), in FLAGS' order. What orch records and
    prints as a command line to run again."""
    default = Options()
    argv = ["orch", "test"]
    for name, flag in FLAGS:
        if fields is not None and name not in fields:
            continue
        value = getattr(opts, name)
        if not _given(name, value, getattr(default, name)):
            continue
        argv += _words(flag, value)
    return argv


def _given(name: str, value: object, default: object) -> bool:
    if name == "lore_url":   # lore's address with or without its last "/"
        return str(value).rstrip("/") != intake.DEFAULT_LORE.rstrip("/")
    return value not in (default, None, [])


def _words(flag: str | None, value: object) -> list[str]:
    if flag is None:
        return [str(value)]
    if isinstance(value, bool):   # --no-sandbox is sandbox=False
        return [flag]
    if isinstance(value, list):
        return [w for v in value for w in (flag, str(v))]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [flag, str(value)]


def command_line(opts: Options, fields: Collection[str] | None = None) -> str:
    """argv_of() as one shell line."""
    return shlex.join(argv_of(opts, fields))


# What a line that runs a run again leaves out of its options; the run's own
# record of its command keeps them. --run-dir and --json: where that run
# went (a rerun must not overwrite it). --jobs: how many compilers make runs
# at once, which changes how long a build takes, never what it builds.
# --rerun and --rerun-baseline: whether kept results of an earlier boot of
# the same image may answer, which they do with the answer that boot gave.
NOT_REPRODUCED = frozenset({"run_dir", "json_out", "jobs", "rerun", "rerun_baseline"})


def reproduce_argv(opts: Options) -> list[str]:
    """The `orch test` that runs `opts` again: argv_of() without
    NOT_REPRODUCED. Every reproduce line orch records or prints is this."""
    return argv_of(opts, [name for name, _ in FLAGS if name not in NOT_REPRODUCED])


def reproduce_line(opts: Options) -> str:
    """reproduce_argv() as one shell line."""
    return shlex.join(reproduce_argv(opts))


class BootOptions(Protocol):
    """What decides a boot besides the kernel, in any command's options."""
    guest_tests: list[str] | None
    keyword: str | None
    test_timeout: float
    repeat: int
    sandbox: bool
    cpus: int
    memory: str
    kselftests: list[str]
    suites: list[Path]


def boot_settings(opts: BootOptions, expected: list[str], accel: str = "tcg") -> BootSettings:
    """The boot settings (and so the results key) of a run with `opts`:
    `expected` is what its selection collected, `accel` what the host offers."""
    return BootSettings(opts.guest_tests, expected, opts.test_timeout, opts.repeat, accel,
                        confined=opts.sandbox, keyword=opts.keyword, cpus=opts.cpus,
                        memory=opts.memory, kselftests=tuple(opts.kselftests),
                        suites=tuple(opts.suites))


def collect(guest_tests: list[str] | None, keyword: str | None, kselftests: Collection[str],
            suites: Collection[Path]) -> list[str]:
    """The pytest ids a run with these options expects, before any build:
    --guest-test's narrowed by -k, in the builtin suite and each --suite.
    The whole builtin suite runs only when nothing else is selected: with
    --kselftest or --suite alone, only those (kselftest ids come from each
    kernel's build)."""
    return selection.collect(guest_tests, keyword, suites=selection.suites(suites),
                             builtin=not (kselftests or suites))


def guest_machine(opts: BootOptions) -> tuple[int | None, str | None]:
    """--cpus and --memory as a record keeps them: None for the default, so
    a record of a default run reads as every record before the flags."""
    return (opts.cpus if opts.cpus != vm.CPUS else None,
            opts.memory if opts.memory != vm.MEMORY else None)


def boot_flags(settings: BootSettings, guest_timeout: float) -> dict[str, object]:
    """The options whose boot_settings() are `settings` (the inverse of
    boot_settings, with a boot's time limit): what a bisect step's
    reproduce line says about its boot, from what the step knows."""
    return {"guest_tests": settings.tests, "keyword": settings.keyword,
            "test_timeout": settings.test_timeout, "repeat": settings.repeat,
            "sandbox": settings.confined, "guest_timeout": guest_timeout,
            "cpus": settings.cpus, "memory": settings.memory,
            "kselftests": list(settings.kselftests), "suites": list(settings.suites)}


def default_run_dir(what: str, kind: str = "") -> Path:
    """orch-runs/<time>-[<kind>-]<what>, for a run given no --run-dir."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("orch-runs") / f"{stamp}-{kind + '-' if kind else ''}{slug(what, 60, empty='run')}"


def series_label(opts: Options) -> str:
    """What a test run is of, for its default directory."""
    return opts.msgid or opts.range or (opts.mbox.name if opts.mbox else "run")
