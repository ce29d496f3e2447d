"""The nightly job's record: one night's plan, its cells and what changed.

`orch nightly` is the only writer (night.json in the night's directory, after
every cell); the reports (HTML, JUnit, KCIDB, the mail summary) and `orch
merge` read this type and nothing else. A cell is one series revision x tree
x config; its `orch test` run directory (run.json, logs) lies under the
night's directory, at `run_dir`.

Everything in here that came from a mail or a guest (titles, test messages,
properties, splat titles) is untrusted text: the HTML escapes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import untrusted
from orchestrator.run import record

SCHEMA_VERSION = "1.0"
FILE = "night.json"
PLAN_FILE = "plan.json"

# A cell's status, worst first (the matrix sorts and colours by it).
STATUSES = ("ERROR", "BUILD-FAILED", "NO-APPLY", "FAIL", "PASS")


@dataclass
class SeriesRev:
    """A series at the revision tonight tests."""
    key: str                 # identity across revisions: "change-id:<id>", else "msgid:<msgid>"
    title: str               # the cover letter's subject (untrusted)
    msgid: str               # Message-ID of this revision's cover letter or first patch
    version: int
    change_id: str | None
    source: str              # "tracked" or "query: <q>"
    mbox: str                # the pinned mbox, relative to the night directory


@dataclass
class TreeState:
    label: str               # "debian:linux-source-7.2" or the git path as configured
    kind: str                # debian or git
    path: str                # the git repository orch tests in
    commit: str
    version: str | None = None    # Debian version, or the git ref
    moved_from: str | None = None  # last night's version/commit when it changed
    stale: str | None = None      # a failed fetch: why (tested at its last known commit)
    # Debian trees: what a runner that lacks `path` imports (orch job).
    package: str | None = None
    suites: list[str] | None = None


@dataclass
class Plan:
    """What a night tests, fixed before anything runs; a rerun of the same
    night follows it instead of discovering again."""
    night: str               # YYYY-MM-DD
    lore_url: str
    configs: list[str]
    series: list[SeriesRev]
    trees: list[TreeState]
    created: str = ""
    problems: list[str] = field(default_factory=list)   # what discovery could not do, one line each
    # The guest tests every cell runs (None: the whole suite). In the plan so
    # that a CI job, which has the plan and not NIGHTLY.toml, runs the same.
    guest_tests: list[str] | None = None


@dataclass
class TestCell:
    __test__ = False         # not a pytest class, whatever its name
    name: str
    baseline: str | None     # PASS, FAIL, ERROR, SKIP, or None when not run
    patched: str | None
    transition: str          # fixed, regressed, still failing, passing, ...
    message: str = ""        # the patched side's failure message (untrusted)
    properties: dict[str, str] = field(default_factory=dict)   # the patched side's


@dataclass
class Splat:
    fingerprint: str
    title: str               # untrusted
    side: str                # patched (a new splat) or baseline


@dataclass
class Cell:
    """One series revision x tree x config, as tonight found it."""
    series: str              # SeriesRev.key
    version: int
    msgid: str
    tree: str                # TreeState.label
    commit: str
    config: str
    status: str              # one of STATUSES
    detail: str              # one line: why (untrusted parts cleaned)
    run_dir: str | None      # relative to the night directory
    reproduce: str           # the one command that reproduces this on a developer's machine
    tests: list[TestCell] = field(default_factory=list)
    splats: list[Splat] = field(default_factory=list)
    build_seconds: dict[str, float] = field(default_factory=dict)   # side -> seconds (0: cached)
    boot_seconds: dict[str, float] = field(default_factory=dict)    # side -> seconds (0: kept)
    built: dict[str, bool] = field(default_factory=dict)            # side -> compiled tonight
    booted: dict[str, bool] = field(default_factory=dict)           # side -> booted tonight
    # Figures (advisory under TCG): "evicted:<test>" -> fraction of the
    # test's DONTCACHE pages that left the cache; "scale:<side>:mib_per_s:<n>"
    # and "scale:<side>:contentions:<n>" -> the scale benchmark's means.
    figures: dict[str, float] = field(default_factory=dict)
    accel: str | None = None

    @property
    def id(self) -> str:
        return cell_id(self.series, self.tree, self.config)


def cell_id(series: str, tree: str, config: str) -> str:
    """A cell's identity within a night: series key, tree label, config."""
    return f"{series}|{tree}|{config}"


@dataclass
class Change:
    """Something that differs from the last night with a result for the same
    series (by change-id), tree and config: the headline of every report."""
    kind: str                # see KINDS
    text: str                # one line
    regression: bool         # counts for exit status 1
    series: str | None = None
    tree: str | None = None
    config: str | None = None
    test: str | None = None
    reproduce: str | None = None


KINDS = ("new-failure", "fixed", "no-longer-applies", "applies-again", "new-splat",
         "new-revision", "new-series", "new-series-failing", "figure-moved", "tree-moved",
         "tree-stale", "build-broken", "error")


@dataclass
class Night:
    night: str
    started: str
    plan: Plan
    schema_version: str = SCHEMA_VERSION
    state: str = "running"   # running, done, interrupted
    cells: list[Cell] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    previous: dict[str, str] = field(default_factory=dict)  # cell id -> night compared with
    exit_code: int | None = None
    finished: str | None = None

    def to_json(self) -> dict:
        return record._dump(self)

    @classmethod
    def from_json(cls, data: dict) -> "Night":
        major = int(str(data.get("schema_version", "1.0")).split(".")[0])
        if major > int(SCHEMA_VERSION.split(".")[0]):
            raise record.BadInput(f"night.json is schema version {data['schema_version']}, "
                                  f"newer than this orch reads ({SCHEMA_VERSION})")
        return record._load(cls, data)

    def write(self, directory: Path) -> None:
        record.write_json(directory / FILE, self.to_json())

    def cell(self, cid: str) -> Cell | None:
        return next((c for c in self.cells if c.id == cid), None)

    def put(self, cell: Cell) -> None:
        """The cell, in place of any earlier one with its id."""
        self.cells = [c for c in self.cells if c.id != cell.id] + [cell]


def read_if_any(directory: Path) -> Night | None:
    """The night recorded in `directory`, or None when there is none or it
    is torn (a kill while writing): its cells are then run again."""
    if not (directory / FILE).exists():
        return None
    try:
        return read(directory)
    except record.BadInput:
        return None


# A night's or a plan's JSON, read back (from a shard too: an artifact)
# as a regular file, not a link, at most this long.
MAX_RECORD = 256 << 20


def read_json(path: Path, limit: int = MAX_RECORD):
    """JSON orch wrote, read back from a directory an artifact may have
    replaced: ValueError for a link, a FIFO or a file over `limit`, as for
    bad JSON."""
    import json
    try:
        data = untrusted.read_capped(path, limit)
    except untrusted.UntrustedError as e:
        raise ValueError(str(e))
    return json.loads(data)


def read(directory: Path) -> Night:
    try:
        data = read_json(directory / FILE)
        return Night.from_json(data)
    except (OSError, ValueError) as e:
        raise record.BadInput(f"cannot read {directory / FILE}: {e}")
    except (TypeError, KeyError, AttributeError) as e:
        raise record.BadInput(f"{directory / FILE} is not an orch night record: {e}")


def read_plan(directory: Path) -> Plan:
    return record._load(Plan, read_json(directory / PLAN_FILE))


def write_plan(directory: Path, plan: Plan) -> None:
    record.write_json(directory / PLAN_FILE, record._dump(plan))


@dataclass
class HistoryPoint:
    """One past (or tonight's) result of a series, for its page."""
    night: str
    version: int
    tree: str
    commit: str
    config: str
    status: str
    figures: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None       # relative to the output directory
