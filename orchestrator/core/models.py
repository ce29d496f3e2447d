"""The typed values passed between stages of a run."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Status(enum.StrEnum):
    """A test's status."""
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the harness or an infrastructure step broke
    SKIP = "SKIP"
    MISS = "MISS"    # expected but never reported
    FLAKY = "FLAKY"  # mixed outcomes over --repeat runs in one boot: a failure


class PatchStatus(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"   # after the one that failed


@dataclass
class Patch:
    index: int
    subject: str
    author: str
    patch_id: str | None
    trailers: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)  # trailers b4 found in replies
    status: PatchStatus = PatchStatus.PENDING
    detail: str = ""


@dataclass
class Series:
    msgid: str
    version: int
    subject: str
    patches: list[Patch]
    mbx: Path                 # the am-ready mbox b4 wrote
    cover: str | None = None
    base_commit: str | None = None
    change_id: str | None = None
    source: str = "lore"      # lore, mbox or range (orch test --range)
    range: str | None = None  # the --range A..B, as given
    commits: list[str] = field(default_factory=list)  # a range's commits, one per patch
    # The mail a reply for the list answers (the cover letter, else the first
    # patch): its Message-ID, References, From, To, Cc, Subject and Date as
    # intake.original_headers() keeps them; None when there is none (a
    # --range, mails without Message-IDs) or it could not be read.
    reply: dict | None = None


@dataclass
class Base:
    commit: str
    reason: str


@dataclass
class Kernel:
    config: str
    image: Path
    dotconfig: Path
    cached: bool
    seconds: float
    log: Path | None
    key: str = ""                    # kernel cache key
    warnings: dict | None = None     # compiler_warnings snapshot
    ccache: dict | None = None       # this build's ccache hits and misses
    compiled: int = 0                # objects compiled (0 when cached)
    banner: str = ""                 # linux_banner inside the image, checked against the build
    uncached: list[str] = field(default_factory=list)  # compiled without ccache (.incbin)
    kselftests: list[KselftestBuild] = field(default_factory=list)  # built for this kernel


@dataclass
class KselftestBuild:
    """One kselftest target built from the same source state and headers as
    a kernel, installed (run_kselftest.sh, kselftest/, the target's files,
    kselftest-list.txt) under `install` in the cache."""
    target: str               # tools/testing/selftests/<target>
    key: str                  # kselftest cache key: kernel key, target, recipe, host libs
    install: Path             # the install directory (KSFT_INSTALL_PATH)
    tests: list[str]          # "collection:test" lines of its kselftest-list.txt
    seconds: float = 0.0
    cached: bool = False
    log: Path | None = None


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class
    name: str
    status: Status
    message: str = ""
    seconds: float = 0.0
    properties: dict[str, str] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=list)  # each run's status, with --repeat


@dataclass
class GuestRun:
    ok: bool                  # the guest came up and the harness reported
    accel: str                # kvm or tcg
    seconds: float
    console: Path
    junit: Path | None
    tests: list[TestResult]
    error: str = ""
    cached: bool = False      # results of an earlier boot of the same kernel and suite
    banner: str | None = None  # the banner of the kernel that booted (its console)
    harness_rc: int | None = None  # the guest pytest's exit status, when it reported one
    died_in: str | None = None     # the test running when the guest died (console marks)
    finished: bool = False         # the guest's pytest session ran to its end
    infra: bool = False            # the error is orch's or the machine's, not the kernel's
    harness_log: Path | None = None
    results: Path | None = None    # the directory the guest wrote its results into
    timed_out: bool = False        # killed at the guest timeout
    vng_rc: int = 0                # virtme-ng's exit status
    # What orch removed from the results directory after the boot (not
    # regular files, over the quota) or made plain (setuid bits), one line each.
    removed: list[str] = field(default_factory=list)
