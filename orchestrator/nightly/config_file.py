"""NIGHTLY.toml: what `orch nightly` tests every night.

    lore_url = "https://lore.kernel.org/all"     # optional
    configs  = ["base", "debug"]
    guest_tests = ["guest_tests/test_blockdev_dontcache.py"]   # optional: the whole suite
    guest_timeout = 1800   # optional, as test_timeout and timeout: config.toml's, else orch's
    [[series]]  msgid = "<any mail of a tracked series>"
                expect_fixed = ["guest_tests/test_many_folios.py"]   # optional
    [[query]]   q = 's:RWF_DONTCACHE AND d:2.days.ago..'
    [[tree]]    debian_source = "linux-source-7.2"   # suites = [...] optional
    [[tree]]    path = "~/linux"  ref = "origin/master"

Anything wrong is one BadInput line naming the file and the key (exit 2):
a night that starts on a misread file tests the wrong thing for hours.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.errors import BadInput
from orchestrator.guest import selection
from orchestrator.kernel import kconfig
from orchestrator.nightly.night import Plan
from orchestrator.run import settings, targets
from orchestrator.source import debsrc, intake, lore

# The settings the night's file may give every cell, over each machine's
# config.toml (a TCG machine needs longer boots than the author's KVM one).
# Kept in plan.json, so every machine that runs a cell of the night (a CI
# runner's `orch job` too, which has the plan and not this file) uses them.
TIMEOUTS = ("guest_timeout", "test_timeout", "timeout")
TOP = ("lore_url", "lore_timeout", *TIMEOUTS, "configs", "guest_tests", "series", "query",
       "tree")
TABLES = {"series": ("msgid", "expect_fixed"), "query": ("q",),
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


def _bad(path: Path, key: str, why: str) -> BadInput:
    return BadInput(f"{path}: {key}: {why}")


def _unknown(path: Path, where: str, key: str, known: tuple[str, ...]) -> BadInput:
    near = difflib.get_close_matches(key, known, 1)
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
    if "guest_tests" in data:
        v = data["guest_tests"]
        if not isinstance(v, list) or not v or not all(isinstance(t, str) and t for t in v):
            raise _bad(path, "guest_tests", "must be a non-empty array of test ids")
        cfg.guest_tests = list(v)
    for i, t in enumerate(_tables(path, data, "series")):
        if "msgid" not in t:
            raise _bad(path, f"series[{i}]", "needs msgid")
        try:
            cfg.series.append(intake.normalize_msgid(_text(path, f"series[{i}].msgid",
                                                           t["msgid"])))
        except BadInput as e:
            raise _bad(path, f"series[{i}].msgid", str(e))
        if "expect_fixed" in t:
            cfg.expect_fixed[cfg.series[-1]] = _expect_fixed(path, i, t["expect_fixed"],
                                                             cfg.guest_tests)
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


def _expect_fixed(path: Path, i: int, v, guest_tests: list[str] | None) -> list[str]:
    """The guest tests a tracked series is expected to fix, checked against
    the night's selection now rather than in every cell."""
    key = f"series[{i}].expect_fixed"
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise _bad(path, key, 'must be a non-empty array of test ids or globs (["none"]: '
                   "no test)")
    patterns = [x.strip() for x in v]
    try:
        targets.check_patterns(patterns, selection.collect(guest_tests))
    except BadInput as e:
        raise _bad(path, key, str(e).replace("--expect-fixed ", "", 1))
    return patterns


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
