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

import enum
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import jsonio
from orchestrator.core.errors import BadInput
from orchestrator.core.figures import Declaration
from orchestrator.core.models import Status
from orchestrator.run.record import RunState

SCHEMA_VERSION = "1.0"
FILE = "night.json"
PLAN_FILE = "plan.json"


class CellStatus(enum.StrEnum):
    """A cell's status, worst first (the matrix sorts and colours by it)."""
    ERROR = "ERROR"
    BUILD_FAILED = "BUILD-FAILED"
    NO_APPLY = "NO-APPLY"
    FAIL = "FAIL"
    PASS = "PASS"


STATUSES = tuple(CellStatus)


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
    # NIGHTLY.toml's expect_fixed for a tracked series: its cells' --expect-fixed.
    expect_fixed: list[str] | None = jsonio.opt()


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
    # NIGHTLY.toml's timeouts, for the same reason (config_file.cell_settings);
    # None: each machine's own (its config.toml, else orch's default).
    guest_timeout: float | None = jsonio.opt()
    test_timeout: float | None = jsonio.opt()
    timeout: float | None = jsonio.opt()
    # The NIGHTLY.toml it was made from and the sha256 of its bytes: `orch
    # plan` reuses a plan directory only for the same file content.
    nightly_toml: str | None = jsonio.opt()
    nightly_toml_sha256: str | None = jsonio.opt()
    # NIGHTLY.toml's selection and machine besides guest_tests, for the same
    # reason (nightly.cells.night_options); None: not given. `kselftests`:
    # every cell's --kselftest; `series_kselftests`: a tracked series' own on
    # top, by SeriesRev.key (its cells boot a baseline of their own);
    # `suites`: --suite DIRs, absolute (on every runner at that path).
    kselftests: list[str] | None = jsonio.opt()
    series_kselftests: dict[str, list[str]] | None = jsonio.opt()
    suites: list[str] | None = jsonio.opt()
    # --kconfig and --kconfig-add (files absolute): `configs` are then the
    # names of the configs they make (kconfig.custom), which cells build.
    kconfig: str | None = jsonio.opt()
    kconfig_add: list[str] | None = jsonio.opt()
    cpus: int | None = jsonio.opt()
    memory: str | None = jsonio.opt()


@dataclass
class TestCell:
    __test__ = False         # not a pytest class, whatever its name
    name: str
    baseline: Status | None  # None when not run
    patched: Status | None
    transition: str          # fixed, regressed, still failing, passing, ...
    message: str = ""        # the patched side's failure message (untrusted)
    properties: dict[str, str] = field(default_factory=dict)   # the patched side's


@dataclass
class CellSplat:
    """A splat as a cell keeps it (guest.splats.Splat is the console's)."""
    fingerprint: str
    title: str               # untrusted
    side: str                # patched (a new splat) or baseline


@dataclass(kw_only=True)
class Cell:
    """One series revision x tree x config, as tonight found it."""
    series: str              # SeriesRev.key
    version: int
    msgid: str
    tree: str                # TreeState.label
    commit: str
    config: str
    status: CellStatus
    detail: str              # one line: why (untrusted parts cleaned)
    run_dir: str | None      # relative to the night directory
    reproduce: str           # the one command that reproduces this on a developer's machine
    tests: list[TestCell] = field(default_factory=list)
    splats: list[CellSplat] = field(default_factory=list)
    build_seconds: dict[str, float] = field(default_factory=dict)   # side -> seconds (0: cached)
    boot_seconds: dict[str, float] = field(default_factory=dict)    # side -> seconds (0: kept)
    built: dict[str, bool] = field(default_factory=dict)            # side -> compiled tonight
    booted: dict[str, bool] = field(default_factory=dict)           # side -> booted tonight
    # Figures the guest's tests declared (advisory under TCG), keyed
    # "<name>:<test>" (the patched kernel's, over the nights) and
    # "scale:<side>:<name>:<x>" (a sweep's points): orchestrator.core.figures.
    figures: dict[str, float] = field(default_factory=dict)
    accel: str | None = None
    # Their declarations by name (title, unit, which way is better); left out
    # of night.json when there are none, as in nights before declarations.
    declarations: dict[str, Declaration] | None = jsonio.opt()

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


KINDS = ("new-failure", "fixed", "known-failure", "no-longer-applies", "applies-again",
         "new-splat", "new-revision", "new-series", "new-series-failing", "figure-moved",
         "tree-moved", "tree-stale", "build-broken", "error")


@dataclass
class Night:
    night: str
    started: str
    plan: Plan
    schema_version: str = SCHEMA_VERSION
    state: RunState = RunState.RUNNING
    cells: list[Cell] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    previous: dict[str, str] = field(default_factory=dict)  # cell id -> night compared with
    exit_code: int | None = None
    finished: str | None = None

    def to_json(self) -> dict:
        return jsonio.dump(self)

    @classmethod
    def from_json(cls, data: dict) -> "Night":
        major = int(str(data.get("schema_version", "1.0")).split(".")[0])
        if major > int(SCHEMA_VERSION.split(".")[0]):
            raise BadInput(f"night.json is schema version {data['schema_version']}, "
                           f"newer than this orch reads ({SCHEMA_VERSION})")
        return jsonio.load(cls, data)

    def write(self, directory: Path) -> None:
        jsonio.write(directory / FILE, self.to_json())

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
    except BadInput:
        return None


def read(directory: Path) -> Night:
    try:
        data = jsonio.read(directory / FILE)
        return Night.from_json(data)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {directory / FILE}: {e}")
    except (TypeError, KeyError, AttributeError) as e:
        raise BadInput(f"{directory / FILE} is not an orch night record: {e}")


def read_plan(directory: Path) -> Plan:
    return jsonio.load(Plan, jsonio.read(directory / PLAN_FILE))


def write_plan(directory: Path, plan: Plan) -> None:
    jsonio.write(directory / PLAN_FILE, jsonio.dump(plan))


@dataclass
class HistoryPoint:
    """One past (or tonight's) result of a series, for its page."""
    night: str
    version: int
    tree: str
    commit: str
    config: str
    status: CellStatus
    figures: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None       # relative to the output directory
