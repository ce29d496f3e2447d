"""The run record: what one run did, as typed values, and its run.json.

Only the command that owns a run writes its record (stages return values and
write nothing); the summary, `orch report` and every later output read this
one type. run.json is its JSON form, described by data/run.schema.json and
versioned by SCHEMA_VERSION: a reader refuses a newer major version rather
than misreading it, and a minor version only ever adds fields.

A field that is None and marked optional is left out of run.json, as it
always was: a side not yet booted has no "outcome", a config not yet judged
no "verdict". Statuses are StrEnums: run.json holds their values, the same
strings as before they were Enums, and a reader refuses any other string.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core import jsonio, paths, untrusted
from orchestrator.core.errors import BadInput
from orchestrator.core.jsonio import opt
from orchestrator.core.models import Status
from orchestrator.run.targets import Rule as TargetRule
from orchestrator.run.verdict import SideStatus, Verdict

SCHEMA_VERSION = "1.3"   # 1.1: bisect; 1.2: sandbox; 1.3: targets, known failures,
#                          a bisect step's kernel and reproduce line, -k, --cpus,
#                          --memory, --kconfig(-add), kselftests, suites: all new in
#                          1.3 (unreleased)
SCHEMA_FILE = paths.DATA / "run.schema.json"


class BuildStatus(enum.StrEnum):
    PENDING = "pending"
    OK = "ok"
    CACHED = "cached"
    FAILED = "failed"


class BootStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not run"


class EachPatchStatus(enum.StrEnum):
    BUILDING = "building"
    OK = "ok"
    FAILED = "failed"


class StepOutcome(enum.StrEnum):
    """A bisect step's answer, in git bisect's terms (old and new with --fixed)."""
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    OLD = "old"
    NEW = "new"


class RunState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"


class RunVerdict(enum.StrEnum):
    """What a whole run came to: a test's verdict (verdict.Verdict's words),
    what stopped it, or what a bisect or a check found."""
    PASS = "PASS"
    FAIL = "FAIL"
    INFRA_ERROR = "INFRA-ERROR"
    BUILT = "BUILT"                  # orch test --build-only
    BAD_INPUT = "BAD-INPUT"
    NO_APPLY = "NO-APPLY"
    PATCHED_BUILD_FAILED = "PATCHED-BUILD-FAILED"
    ERROR = "ERROR"                  # any other exit status of an OrchError
    INTERRUPTED = "INTERRUPTED"
    FOUND = "FOUND"                  # orch bisect
    INCONCLUSIVE = "INCONCLUSIVE"
    GOOD = "GOOD"                    # orch check: its step's outcome
    BAD = "BAD"
    SKIP = "SKIP"
    OLD = "OLD"
    NEW = "NEW"


@dataclass
class KselftestRecord:
    """One kselftest target built for a kernel (kernel/kselftest_build)."""
    target: str
    key: str
    cached: bool
    seconds: float
    tests: list[str]       # its kselftest-list.txt: "collection:test"
    install: str
    log: str | None = opt()


@dataclass(kw_only=True)
class BuildRecord:
    status: BuildStatus
    seconds: float | None = None
    cached: bool | None = None
    image: str | None = None
    log: str | None = None
    key: str | None = None
    compiled: int | None = None
    ccache: dict | None = None       # this build's ccache hits and misses (None when cached)
    banner: str | None = None
    uncached: list[str] | None = None
    dotconfig: str | None = None     # the kernel's .config (in the kernel cache)
    kselftests: list[KselftestRecord] | None = None   # --kselftest targets built with it

    def _omitted(self) -> set[str]:
        # A kernel that exists has every field (ccache may be null); one
        # that does not has its status, and a failed one its log.
        # kselftests only when some were asked for: a record as before.
        if self.status in (BuildStatus.OK, BuildStatus.CACHED):
            return set() if self.kselftests is not None else {"kselftests"}
        keep = {"status", "log"} if self.log else {"status"}
        return {f.name for f in dataclasses.fields(self)} - keep


@dataclass(kw_only=True)
class BootRecord:
    status: BootStatus
    accel: str | None = opt()
    cached: bool | None = opt()      # results of an earlier boot of this kernel and suite
    seconds: float | None = opt()
    console: str | None = opt()
    junit: str | None = None
    harness_log: str | None = None
    harness_rc: int | None = None
    died_in: str | None = None
    error: str | None = None
    banner: str | None = None
    console_tail: list[str] | None = opt()   # only when the boot failed

    def _omitted(self) -> set[str]:
        if self.status == BootStatus.NOT_RUN:
            return {f.name for f in dataclasses.fields(self)} - {"status"}
        return jsonio.none_optionals(self)


@dataclass
class Outcome:
    """One side judged alone (verdict.Side without its tests)."""
    status: SideStatus
    reason: str
    infra: bool
    died_in: str | None


@dataclass
class TestRecord:
    __test__ = False  # not a pytest test class
    name: str
    status: Status
    message: str
    seconds: float
    properties: dict[str, str]
    outcomes: list[Status] | None = opt()   # each run's status, with --repeat


@dataclass
class SideRecord:
    build: BuildRecord
    boot: BootRecord | None = opt()
    outcome: Outcome | None = opt()
    tests: list[TestRecord] | None = opt()
    splats: list[dict] | None = opt()        # splats.Splat.as_dict()
    guest_data: dict | None = opt()          # JSON files the guest suite left (untrusted, capped)


@dataclass
class Problems:
    regressions: list[str]
    failures: list[str]
    infra: list[str]
    # Still failing, failing on the baseline too, and not a test the series
    # is expected to fix (run.targets): listed, not a failure. (1.3)
    known: list[str] | None = opt()


@dataclass
class Comparison:
    """One test on both sides as run.json keeps it (verdict.JudgedComparison
    is the judge's)."""
    name: str
    baseline: Status
    patched: Status
    transition: str
    reason: str
    known: bool | None = opt()       # a known failure (Problems.known); absent otherwise


def _pending() -> SideRecord:
    return SideRecord(BuildRecord(status=BuildStatus.PENDING))


@dataclass
class ConfigRecord:
    name: str
    baseline: SideRecord = field(default_factory=_pending)
    patched: SideRecord = field(default_factory=_pending)
    warnings: dict | None = opt()            # compiler_warnings.diff()
    comparison: list[Comparison] | None = opt()
    new_splats: list[dict] | None = opt()
    preexisting_splats: list[dict] | None = opt()
    verdict: Verdict | None = opt()
    regressions: int | None = opt()
    problems: Problems | None = opt()
    # --kconfig and --kconfig-add it was made with (its name is a hash of them)
    kconfig: str | None = opt()
    kconfig_add: list[str] | None = opt()

    def side(self, name: str) -> SideRecord:
        return self.baseline if name == "baseline" else self.patched


@dataclass
class TargetsRecord:
    """The guest tests the series is expected to fix (run.targets): only
    these fail the run when they fail on the baseline too. (1.3)"""
    rule: TargetRule                 # expect-fixed, touched, all
    tests: list[str]
    patterns: list[str] | None = opt()     # --expect-fixed as given
    about: list[str] | None = opt()        # the about.toml files read (rule touched)
    touched: list[str] | None = opt()      # the files the series touches, the first 50
    touched_count: int | None = opt()


@dataclass
class TreeRecord:
    path: str
    label: str
    base: str
    base_reason: str


@dataclass
class Rejection:
    """A file of a patch that did not apply, as run.json keeps it
    (tree.RejectedFile is what git apply --reject reported)."""
    file: str
    hunks: list[str]


@dataclass
class ApplyRecord:
    ok: bool
    head: str
    failed_patch: int | None
    rejections: list[Rejection]


@dataclass
class Accel:
    mode: str        # kvm or tcg
    reason: str


@dataclass
class EachPatchStep:
    patch: int
    subject: str
    status: EachPatchStatus
    configs: dict[str, BuildRecord] = field(default_factory=dict)
    error: str | None = opt()


@dataclass
class CommitRecord:
    commit: str
    subject: str
    author: str


@dataclass(kw_only=True)
class BisectStep:
    """One kernel a bisect built and booted: an end, a step or a confirmation."""
    role: str                        # good end, bad end, step, confirm
    commit: str
    subject: str
    outcome: StepOutcome
    reason: str
    build: str                       # built, cached, failed, unsatisfiable
    build_seconds: float
    build_log: str
    boot: str | None = opt()         # booted, kept (results of an earlier boot)
    boot_seconds: float | None = opt()
    boots: int | None = opt()        # boots of this step (a retry is a second)
    console: str | None = opt()
    tests: dict[str, Status] | None = opt()  # test -> status
    splats: list[dict] | None = opt()
    steps_left: int | None = opt()   # git's estimate after this step
    # The kernel it built and booted, as `orch test` records a build's: its
    # kernel cache key, the banner inside the image, the image's SHA-256
    # (what its kept results are keyed by) and the banner the booted
    # kernel printed. (1.3)
    key: str | None = opt()
    banner: str | None = opt()
    sha256: str | None = opt()
    boot_banner: str | None = opt()
    reproduce: str | None = opt()    # the `orch test` that builds and boots it again (1.3)


@dataclass(kw_only=True)
class BisectRecord:
    mode: str                        # test, build, splat, fixed
    terms: list[str]                 # git's old and new terms
    good: str                        # the commits as resolved
    bad: str
    config: str
    tests: list[str]
    repeat: int
    commits: int                     # commits the answer may be (good..bad)
    max_steps: int                   # ceil(log2(commits)) + 1
    steps: list[BisectStep] = field(default_factory=list)
    result: str | None = None        # found, inconclusive, only-skipped, endpoint-disagrees
    log: str | None = None           # the run's bisect.log (git bisect replay)
    first_bad: CommitRecord | None = opt()
    candidates: list[CommitRecord] | None = opt()
    reproduce: str | None = opt()    # an orch test of the finding
    note: str | None = opt()         # why the result is not a plain "found"
    keyword: str | None = opt()      # -k EXPR: the selection besides `tests` (resume keeps it)
    # --cpus, --memory, when not vm.CPUS and vm.MEMORY (resume keeps them)
    cpus: int | None = opt()
    memory: str | None = opt()
    # --kconfig, --kconfig-add (resume keeps them; `config` is then their hash's name)
    kconfig: str | None = opt()
    kconfig_add: list[str] | None = opt()
    # --kselftest, --suite (resume keeps them)
    kselftests: list[str] | None = opt()
    suites: list[str] | None = opt()


@dataclass
class RunRecord:
    orch_version: str
    command: list[str]
    run_dir: str
    started: str
    schema_version: str = SCHEMA_VERSION
    state: RunState = RunState.RUNNING
    verdict: RunVerdict | None = None
    exit_code: int | None = None
    error: str | None = None
    series: dict | None = None       # the Series as b4 gave it (and apply marked it)
    tree: TreeRecord | None = None
    configs: list[ConfigRecord] = field(default_factory=list)
    expected_tests: list[str] | None = opt()
    repeat: int | None = opt()
    # The guest's --cpus and --memory, only when not vm.CPUS and vm.MEMORY:
    # a record without them booted 2 vCPUs and 2G, as every orch before them.
    cpus: int | None = opt()
    memory: str | None = opt()
    # --kselftest TARGET[:TEST] and --suite DIR, only when given
    kselftests: list[str] | None = opt()
    suites: list[str] | None = opt()
    targets: TargetsRecord | None = opt()
    apply: ApplyRecord | None = opt()
    accel: Accel | None = opt()
    each_patch: list[EachPatchStep] | None = opt()
    bisect: BisectRecord | None = opt()
    # "view": every build and guest saw only sandbox.py's allowlisted view
    # and environment; "off": --no-sandbox (the run may hold host secrets).
    sandbox: str | None = opt()
    # The orch process writing it, and its host: `orch runs` tells a run
    # still going from a killed one by them while the state is "running". (1.3)
    pid: int | None = opt()
    host: str | None = opt()
    finished: str | None = opt()

    def config(self, name: str) -> ConfigRecord:
        return next(c for c in self.configs if c.name == name)

    def to_json(self) -> dict:
        return jsonio.dump(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        check_version(data)
        return jsonio.load(cls, data)

    def write(self, path: Path) -> None:
        jsonio.write(path, self.to_json())


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def check_version(data: Any) -> None:
    """A run.json this orch can read: a newer major version may mean anything."""
    if not isinstance(data, dict):
        raise BadInput("run.json is not a JSON object")
    version = str(data.get("schema_version", "1.0"))  # records before the field: 1.0
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BadInput(f"run.json has an unreadable schema_version {version!r}")
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major > ours:
        raise BadInput(f"run.json is schema version {version}, newer than this orch reads "
                       f"({SCHEMA_VERSION}); upgrade orch to read it")


# The largest run.json read back. The biggest real one (a bisect with every
# step's tests) is under 1 MiB; a run directory may come from a CI artifact
# or another user, so a huge file, a FIFO or a device named run.json must be
# one error line, not a hang or the host's memory.
MAX_RECORD = 64 << 20


def read(path: Path) -> RunRecord:
    """A run.json as a RunRecord; any problem is one BadInput line. The
    file must be a regular file of at most MAX_RECORD bytes (a symbolic
    link to one is followed: `orch report` takes the user's own paths)."""
    try:
        real = path.resolve(strict=True)
        data = untrusted.load_json(untrusted.read_capped(real, MAX_RECORD).decode())
    except FileNotFoundError:
        raise BadInput(f"cannot read {path}: no such file")
    except (OSError, ValueError, untrusted.UntrustedError) as e:
        raise BadInput(f"cannot read {path}: {e}")
    try:
        return RunRecord.from_json(data)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise BadInput(f"{path} is not an orch run record: {type(e).__name__}: {e}")


def json_schema() -> dict:
    """The JSON Schema of run.json, made from these types. data/run.schema.json
    is this, committed so other tools can read it; a test keeps the two equal
    and validates every run.json the test suite writes against the file."""
    defs: dict[str, dict] = {}
    top = _schema_of(RunRecord, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"orch run record (run.json), schema version {SCHEMA_VERSION}",
            "description": "Minor versions only add fields; a reader refuses a newer major.",
            **defs.pop(top["$ref"].split("/")[-1]), "$defs": defs}


_JSON = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
         bool: {"type": "boolean"}, dict: {"type": "object"}, Any: {}}


def _schema_of(tp: Any, defs: dict[str, dict]) -> dict:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema_of(inner, defs), {"type": "null"}]}
    if origin is list:
        (inner,) = typing.get_args(tp)
        return {"type": "array", "items": _schema_of(inner, defs)}
    if origin is dict:
        _, inner = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _schema_of(inner, defs)}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}   # recursion guard
            hints = jsonio.type_hints(tp)
            fields = dataclasses.fields(tp)
            if hasattr(tp, "_omitted"):
                required = ["status"]   # the rest depends on the status
            else:
                required = [f.name for f in fields if not f.metadata.get("omit")]
            defs[name] = {"type": "object",
                          "properties": {f.name: _schema_of(hints[f.name], defs)
                                         for f in fields},
                          "required": required, "additionalProperties": False}
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        # As the statuses were before they were Enums: the schema file and
        # its version stay as they are.
        return {"type": "string"}
    return dict(_JSON[tp])
