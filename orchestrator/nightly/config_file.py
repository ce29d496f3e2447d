"""NIGHTLY.toml: what `orch nightly` tests every night.

    lore_url = "https://lore.kernel.org/all"     # optional
    configs  = ["base", "debug"]
    guest_tests = ["guest_tests/test_blockdev_dontcache.py"]   # optional: the whole suite
    guest_timeout = 1800   # optional, as test_timeout and timeout: config.toml's, else orch's
    kselftests = ["cachestat", "mincore"]   # optional: the tree's own selftests (--kselftest)
    suites = ["my_tests"]  # optional: pytest suites of one's own (--suite), beside this file
    kconfig_add = ["CONFIG_PROVE_LOCKING=y"]   # optional, as kconfig, cpus and memory
    [[series]]  msgid = "<any mail of a tracked series>"
                expect_fixed = ["guest_tests/test_many_folios.py"]   # optional
                kselftests = ["mm"]   # optional: on top of the night's, for this series
    [[query]]   q = 's:RWF_DONTCACHE AND d:2.days.ago..'
    [[tree]]    debian_source = "linux-source-7.2"   # suites = [...] optional
    [[tree]]    path = "~/linux"  ref = "origin/master"

Anything wrong is one BadInput line naming the file and the key (exit 2):
a night that starts on a misread file tests the wrong thing for hours.

The top-level `suites` are pytest suites (directories, like `--suite`); a
`[[tree]]`'s `suites` are Debian suites (sid, trixie) its package comes from.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.errors import BadInput
from orchestrator.guest import kselftest_run, selection, vm
from orchestrator.kernel import kconfig, kselftest_build
from orchestrator.nightly.night import Plan
from orchestrator.run import settings, targets
from orchestrator.source import debsrc, intake, lore

# The settings the night's file may give every cell, over each machine's
# config.toml (a TCG machine needs longer boots than the author's KVM one).
# Kept in plan.json, so every machine that runs a cell of the night (a CI
# runner's `orch job` too, which has the plan and not this file) uses them.
TIMEOUTS = ("guest_timeout", "test_timeout", "timeout")
# What every cell boots and builds with besides the selection (run.options'
# names), kept in plan.json for the same reason.
MACHINE = ("kconfig", "kconfig_add", "cpus", "memory")
TOP = ("lore_url", "lore_timeout", *TIMEOUTS, "configs", *MACHINE, "guest_tests", "suites",
       "kselftests", "series", "query", "tree")
TABLES = {"series": ("msgid", "expect_fixed", "kselftests"), "query": ("q",),
          "tree": ("debian_source", "suites", "path", "ref", "label")}


@dataclass(frozen=True)
class TreeSpec:
    label: str
    debian_source: str | None = None
    suites: tuple[str, ...] = debsrc.DEFAULT_SUITES
    path: Path | None = None
    ref: str | None = None


@dataclass
class NightlyConfig:
    file: Path
    lore_url: str = intake.DEFAULT_LORE
    lore_timeout: float = intake.B4_TIMEOUT
    configs: list[str] = field(default_factory=lambda: list(kconfig.default_matrix()[:1]))
    guest_tests: list[str] | None = None
    series: list[str] = field(default_factory=list)     # normalized Message-IDs
    # A tracked series' --expect-fixed (run.targets), by its normalized Message-ID.
    expect_fixed: dict[str, list[str]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    trees: list[TreeSpec] = field(default_factory=list)
    # TIMEOUTS as the file gives them; None: the machine's (cell_settings).
    guest_timeout: float | None = None
    test_timeout: float | None = None
    timeout: float | None = None
    digest: str = ""          # sha256 of the file's bytes: which plans are this file's
    # --kselftest for every cell (kselftest_build.Spec.text), and a tracked
    # series' own on top, by its normalized Message-ID.
    kselftests: list[str] = field(default_factory=list)
    series_kselftests: dict[str, list[str]] = field(default_factory=dict)
    suites: list[Path] = field(default_factory=list)    # --suite DIRs, absolute
    # --kconfig (a make target, or a .config file made absolute) and
    # --kconfig-add (fragment files made absolute): `configs` then holds the
    # names of the configs they make (kconfig.custom), which the cells build.
    kconfig: str | None = None
    kconfig_add: list[str] = field(default_factory=list)
    cpus: int | None = None                # None: vm.CPUS
    memory: str | None = None              # None: vm.MEMORY; else written as --memory does


def _bad(path: Path, key: str, why: str) -> BadInput:
    return BadInput(f"{path}: {key}: {why}")


def _unknown(path: Path, where: str, key: str, known: tuple[str, ...]) -> BadInput:
    # The closest; of equally close ones, the first known ("config" is
    # "configs", not "kconfig").
    near = sorted(difflib.get_close_matches(key, known, len(known)), key=lambda k: (
        -difflib.SequenceMatcher(None, key, k).ratio(), known.index(k)))
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return _bad(path, f"{where}{key}", f"unknown key{hint}; known: {', '.join(known)}")


def _text(path: Path, key: str, v) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _bad(path, key, "must be a non-empty string")
    return v.strip()


def _seconds(path: Path, key: str, v) -> float:
    # bool is an int subclass, and TOML has inf and nan: none of them is a timeout.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(path, key, "must be a positive number of seconds")
    return float(v)


def _tables(path: Path, data: dict, name: str) -> list[dict]:
    v = data.get(name, [])
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise _bad(path, name, f"must be an array of tables ([[{name}]])")
    for i, t in enumerate(v):
        for k in t:
            if k not in TABLES[name]:
                raise _unknown(path, f"{name}[{i}].", k, TABLES[name])
    return v


def load(path: Path, base: settings.Settings | None = None) -> NightlyConfig:
    """The night's file, checked. `base`: this machine's settings (config.toml,
    run.settings), whose lore_url and lore_timeout the file may override."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode())
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not valid TOML: {e}")
    for k in data:
        if k not in TOP:
            raise _unknown(path, "", k, TOP)
    cfg = NightlyConfig(path, digest=hashlib.sha256(raw).hexdigest())
    if base is not None:
        cfg.lore_url, cfg.lore_timeout = base.lore_url, base.lore_timeout
    if "lore_url" in data:
        # orch's lore_url is the host; the documented form names the /all inbox.
        cfg.lore_url = lore.base_url(_text(path, "lore_url", data["lore_url"]),
                                     f"{path}: lore_url")
    for key in ("lore_timeout", *TIMEOUTS):
        if key in data:
            setattr(cfg, key, _seconds(path, key, data[key]))
    if "configs" in data:
        v = data["configs"]
        if not isinstance(v, list) or not v or not all(isinstance(c, str) for c in v):
            raise _bad(path, "configs", "must be a non-empty array of config names")
        for c in v:
            try:
                kconfig.load(c)
            except BadInput as e:
                raise _bad(path, "configs", str(e))
        cfg.configs = list(dict.fromkeys(v))
    _machine(path, data, cfg)
    if "guest_tests" in data:
        v = data["guest_tests"]
        if not isinstance(v, list) or not v or not all(isinstance(t, str) and t for t in v):
            raise _bad(path, "guest_tests", "must be a non-empty array of test ids")
        cfg.guest_tests = list(v)
    if "suites" in data:
        cfg.suites = _suites(path, data["suites"])
    if "kselftests" in data:
        cfg.kselftests = _kselftests(path, "kselftests", data["kselftests"])
    for i, t in enumerate(_tables(path, data, "series")):
        if "msgid" not in t:
            raise _bad(path, f"series[{i}]", "needs msgid")
        try:
            cfg.series.append(intake.normalize_msgid(_text(path, f"series[{i}].msgid",
                                                           t["msgid"])))
        except BadInput as e:
            raise _bad(path, f"series[{i}].msgid", str(e))
        if "kselftests" in t:
            own = _kselftests(path, f"series[{i}].kselftests", t["kselftests"], cfg.kselftests)
            if own:
                cfg.series_kselftests[cfg.series[-1]] = own
        if "expect_fixed" in t:
            cfg.expect_fixed[cfg.series[-1]] = _expect_fixed(
                path, i, t["expect_fixed"], cfg,
                cfg.kselftests + cfg.series_kselftests.get(cfg.series[-1], []))
    for i, t in enumerate(_tables(path, data, "query")):
        if "q" not in t:
            raise _bad(path, f"query[{i}]", "needs q")
        cfg.queries.append(_text(path, f"query[{i}].q", t["q"]))
    for i, t in enumerate(_tables(path, data, "tree")):
        cfg.trees.append(_tree(path, i, t))
    if not cfg.trees:
        cfg.trees.append(TreeSpec(f"debian:{debsrc.DEFAULT_PACKAGE}", debsrc.DEFAULT_PACKAGE))
    labels = [t.label for t in cfg.trees]
    if len(set(labels)) != len(labels):
        raise _bad(path, "tree", "two trees with the same label: give each a label = \"...\"")
    if not cfg.series and not cfg.queries:
        raise _bad(path, "series", "nothing to test: give at least one [[series]] or [[query]]")
    return cfg


def _expect_fixed(path: Path, i: int, v, cfg: NightlyConfig,
                  kselftests: list[str]) -> list[str]:
    """The guest tests a tracked series is expected to fix, checked against
    the night's selection now rather than in every cell. A kselftest's ids
    are its build's list, and a suite of one's own is collected in the
    guest's view: patterns naming them are checked against the series'
    kselftest targets and the suites' names."""
    key = f"series[{i}].expect_fixed"
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(path, key, 'must be a non-empty array of test ids or globs (["none"]: '
                   "no test)")
    patterns = [x.strip() for x in v]
    try:
        if targets.NONE in patterns:
            targets.check_patterns(patterns, [])    # "none" alone, or refused
            return patterns
        ksft = tuple(f"{kselftest_run.PREFIX}{s.target}/"
                     for s in kselftest_build.parse_specs(kselftests))
        own = tuple(f"{d.name}/" for d in cfg.suites)
        for p in patterns:
            if p.startswith(kselftest_run.PREFIX) and not p.startswith(ksft):
                raise BadInput(f"{p}: names no target of the kselftests this series runs "
                               f"({', '.join(kselftests) or 'none'})")
        builtin = [p for p in patterns if not p.startswith((kselftest_run.PREFIX, *own))]
        if builtin:
            targets.check_patterns(builtin, _builtin_ids(cfg, own))
    except BadInput as e:
        raise _bad(path, key, str(e).replace("--expect-fixed ", "", 1))
    return patterns


def _builtin_ids(cfg: NightlyConfig, own: tuple[str, ...]) -> list[str]:
    """The builtin suite's tests a cell runs: those guest_tests names (a
    suite of one's own is collected in the guest's view), else the whole
    suite, unless the night's kselftests or suites are all it runs (a
    series' own kselftests come on top of it: nightly.cells.night_options)."""
    if cfg.guest_tests is None:
        return [] if cfg.kselftests or cfg.suites else selection.collect(None)
    named = [t for t in cfg.guest_tests if not t.startswith(own)]
    return selection.collect(named) if named else []


def _kselftests(path: Path, key: str, v, night: list[str] | None = None) -> list[str]:
    """TARGET[:TEST] strings as --kselftest takes them (commas too), each
    once; a series' are those not already the night's, and together they
    stay within kselftest_build.MAX_SPECS."""
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(path, key, 'must be an array of TARGET or TARGET:TEST strings '
                   '(["cachestat", "mm:ksm_tests"])')
    try:
        specs = kselftest_build.parse_specs(v)
        if night is not None:
            kselftest_build.parse_specs([*night, *(s.text for s in specs)])
    except BadInput as e:
        raise _bad(path, key, str(e).replace("--kselftest ", "", 1).replace("--kselftest: ",
                                                                             "", 1))
    return [s.text for s in specs if night is None or s.text not in night]


def _suites(path: Path, v) -> list[Path]:
    """The top-level `suites`: pytest suite directories (--suite), relative
    to the file like a [[tree]]'s path, checked as --suite is
    (selection.suites); not a [[tree]]'s Debian suites."""
    key = "suites"
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(path, key, "must be a non-empty array of pytest suite directories "
                   "(Debian suites go in a [[tree]]'s suites)")
    given: list[tuple[str, Path]] = []
    for raw in v:
        where = Path(raw.strip()).expanduser()
        where = (where if where.is_absolute() else path.parent / where).resolve()
        if not where.is_dir():
            raise _bad(path, key, f"{raw}: not a directory (a pytest suite written like "
                       "guest_tests/; Debian suites go in a [[tree]]'s suites)")
        given.append((raw, where))
    try:
        return [s.path for s in selection.suites([w for _, w in given])]
    except BadInput as e:
        why = str(e)
        for raw, where in given:     # each named as the file names it
            why = why.replace(f"--suite {where}: ", f"{raw}: ", 1)
        raise _bad(path, key, why)


def _machine(path: Path, data: dict, cfg: NightlyConfig) -> None:
    """kconfig, kconfig_add, cpus, memory: what every cell builds and boots
    with, as `orch test`'s flags of the same names take them (files
    relative to this file). With kconfig or kconfig_add, `configs` become
    the names of the configs they make."""
    if "kconfig" in data:
        if "configs" in data:
            raise _bad(path, "kconfig", "is the whole config: give it or configs, not both")
        cfg.kconfig = _beside(path, _text(path, "kconfig", data["kconfig"]))
    if "kconfig_add" in data:
        v = data["kconfig_add"]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip()
                                                        for x in v):
            raise _bad(path, "kconfig_add", "must be a non-empty array of CONFIG_X=VALUE, "
                       "fragment files or in-tree fragment names")
        cfg.kconfig_add = [_beside(path, x.strip()) for x in v]
        for x in cfg.kconfig_add:
            try:
                kconfig.parse_add(x)
            except BadInput as e:
                raise _bad(path, "kconfig_add", str(e).replace("--kconfig-add ", "", 1))
    if cfg.kconfig is not None or cfg.kconfig_add:
        key = "kconfig" if cfg.kconfig is not None else "kconfig_add"
        try:
            made = kconfig.chosen([] if cfg.kconfig is not None else cfg.configs, cfg.kconfig,
                                  cfg.kconfig_add)
        except BadInput as e:
            raise _bad(path, key, str(e).replace("--kconfig ", "", 1))
        cfg.configs = list(dict.fromkeys(k.name for k in made))
    if "cpus" in data:
        v = data["cpus"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= vm.MAX_CPUS:
            raise _bad(path, "cpus", f"must be a whole number of vCPUs, 1..{vm.MAX_CPUS}")
        cfg.cpus = v
    if "memory" in data:
        cfg.memory = _memory(path, data["memory"])


def _beside(path: Path, value: str) -> str:
    """A file named relative to the night's file, made absolute (the cells
    run elsewhere); anything else (an option, a make target, an in-tree
    fragment name) as it is."""
    if value.startswith(("CONFIG_", "#")):
        return value
    where = Path(value).expanduser()
    where = where if where.is_absolute() else path.parent / where
    return str(where.resolve()) if where.is_file() else value


def _memory(path: Path, v) -> str:
    """A size as --memory takes it (512M, 4G), written one way: the kept
    results' key holds it (commands.common.memory_size)."""
    m = re.fullmatch(r"([1-9][0-9]*)([MG])", v) if isinstance(v, str) else None
    if not m:
        raise _bad(path, "memory", 'must be a size in M or G, such as "512M" or "4G"')
    mb = int(m[1]) << (10 if m[2] == "G" else 0)
    if mb < vm.MIN_MEMORY_MB:
        raise _bad(path, "memory", f"the guest needs at least {vm.MIN_MEMORY_MB}M")
    return f"{mb >> 10}G" if mb % 1024 == 0 else f"{mb}M"


def _tree(path: Path, i: int, t: dict) -> TreeSpec:
    key = f"tree[{i}]"
    if ("debian_source" in t) == ("path" in t):
        raise _bad(path, key, "give exactly one of debian_source or path")
    if "debian_source" in t:
        if "ref" in t:
            raise _bad(path, f"{key}.ref", "only for a git tree (path = ...)")
        pkg = _text(path, f"{key}.debian_source", t["debian_source"])
        suites = debsrc.DEFAULT_SUITES
        if "suites" in t:
            s = t["suites"]
            if not isinstance(s, list) or not s or not all(isinstance(x, str) and x for x in s):
                raise _bad(path, f"{key}.suites", "must be a non-empty array of suite names")
            suites = tuple(s)
        label = _text(path, f"{key}.label", t["label"]) if "label" in t else f"debian:{pkg}"
        return TreeSpec(label, debian_source=pkg, suites=suites)
    if "suites" in t:
        raise _bad(path, f"{key}.suites", "only for a Debian tree (debian_source = ...)")
    raw = _text(path, f"{key}.path", t["path"])
    where = Path(raw).expanduser()
    if not where.is_absolute():
        where = (path.parent / where)   # relative to the file, like a CI checkout
    ref = _text(path, f"{key}.ref", t["ref"]) if "ref" in t else "HEAD"
    label = _text(path, f"{key}.label", t["label"]) if "label" in t else f"{raw}@{ref}"
    return TreeSpec(label, path=where.resolve(), ref=ref)


@dataclass(frozen=True)
class CellSettings:
    """What every cell of a night runs with besides its series, tree and
    tests, on the machine that runs it."""
    jobs: int
    guest_timeout: float
    test_timeout: float
    timeout: float | None            # each cell's whole `orch test` run


def cell_settings(plan: Plan, machine: settings.Settings | None = None) -> CellSettings:
    """Each timeout from the night's file (kept in the plan), else this
    machine's settings (`machine`: its config.toml over orch's defaults),
    else orch's defaults; make's jobs are always the machine's."""
    here = machine or settings.builtin()
    chosen = {k: getattr(plan, k) if getattr(plan, k) is not None else getattr(here, k)
              for k in TIMEOUTS}
    return CellSettings(jobs=here.jobs, **chosen)
