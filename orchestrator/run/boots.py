"""The boot stage: boot kernels with a test selection and judge each side.

Returns values and writes no run record: `orch test`, bisect and the nightly
job each keep their own. A kernel's results with the same suite, selection
and VM settings are taken from result_cache instead of booting it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import untrusted
from orchestrator.core.models import GuestRun, Kernel
from orchestrator.guest import kselftest_run, result_cache, splats, vm
from orchestrator.run import verdict


@dataclass(frozen=True)
class BootSettings:
    """What decides a boot's outcome besides the kernel (and so its results key)."""
    tests: list[str] | None = None         # --guest-test ids; None: the whole suite
    expected: list[str] = field(default_factory=list)   # what they must report
    test_timeout: float = vm.TEST_TIMEOUT
    repeat: int = 1
    accel: str = "tcg"
    # Not the outcome, but where the results may go: a guest confined to
    # vm.guest_view() (False only with --no-sandbox).
    confined: bool = True
    # -k EXPR over `tests`, pytest's matching on the host and in the guest.
    keyword: str | None = None
    cpus: int = vm.CPUS
    memory: str = vm.MEMORY    # written one way by --memory (2048M is 2G): one key per size
    # --kselftest TARGET[:TEST] specs, as parsed (kselftest_build.Spec.text): each
    # kernel runs its own build of them (Kernel.kselftests)
    kselftests: tuple[str, ...] = ()
    # --suite DIRs (absolute), each its own pytest session beside guest_tests/
    suites: tuple[Path, ...] = ()


@dataclass
class Booted:
    """One kernel booted (or its kept results) and judged on its own."""
    kernel: Kernel
    guest: GuestRun
    judged: verdict.Side       # its splats too: what the console showed
    guest_data: dict


@dataclass
class BootJob:
    kernel: Kernel
    results: Path          # the guest's results directory
    console: Path
    side: str              # baseline or patched: a patched side on which nothing ran is an ERROR
    reuse: bool = True     # results kept from an earlier boot may answer
    sample: int = 0        # which independent boot of this kernel (result_cache.key)

    @property
    def label(self) -> str:
        return f"{self.side} {self.kernel.config}"


def results_key(kernel: Kernel, settings: BootSettings, sample: int = 0,
                sel: list[kselftest_run.Selected] | None = None) -> str:
    """Where a boot of `kernel` with `settings` keeps its results (result_cache).
    Its kselftests are the kernel's own builds of them (their keys; `sel`
    when the caller planned them already)."""
    if sel is None:
        sel = kselftest_run.plan(kernel, settings.kselftests)
    return result_cache.key(result_cache.image_digest(kernel.image), settings.tests,
                            settings.test_timeout, settings.accel, settings.repeat, sample,
                            settings.confined, settings.keyword, settings.cpus,
                            settings.memory, kselftests=kselftest_run.key_parts(sel),
                            suites=settings.suites)


def expected_of(settings: BootSettings, sel: list[kselftest_run.Selected]) -> list[str]:
    """What a boot must report: the selection's ids and its kernel's own
    kselftests' (`sel`; a run that knows both sides' lists has them all in
    settings.expected already; a bisect step learns them from its build)."""
    have = set(settings.expected)
    return [*settings.expected,
            *(i for i in kselftest_run.expected_ids(sel) if i not in have)]


def boot(job: BootJob, settings: BootSettings, timeout: float,
         status: Callable[[str | None], None] = lambda text: None) -> Booted:
    k = job.kernel
    sel = kselftest_run.plan(k, settings.kselftests)
    key = results_key(k, settings, job.sample, sel)
    expected = expected_of(settings, sel)
    g = (result_cache.load(key, job.results, job.console, k, expected, settings.repeat,
                           sel, settings.suites)
         if job.reuse else None)
    if g is None:
        g = vm.run_tests(k, job.results, job.console, timeout=timeout, tests=settings.tests,
                         test_timeout=settings.test_timeout, expected=expected,
                         repeat=settings.repeat, keyword=settings.keyword, status=status,
                         confined=settings.confined, cpus=settings.cpus,
                         memory=settings.memory, suites=settings.suites,
                         kselftests=sel)
        result_cache.store(key, g)
    judged = verdict.judge_side(expected, g, job.side == "patched",
                                splats.scan(vm.console_text(g.console)))
    return Booted(k, g, judged, guest_data(g.results if g.junit else None))


def boot_all(jobs: Iterable[BootJob], settings: BootSettings,
             timeout: Callable[[BootJob], float],
             on_booted: Callable[[BootJob, Booted], None] = lambda job, b: None,
             status: Callable[[BootJob, str | None], None] = lambda job, text: None,
             ) -> list[Booted]:
    """One at a time: two TCG guests on two cores only slow each other.
    `timeout(job)` gives each boot its limit (a whole-run deadline may cut
    it); `on_booted` sees each result as it comes, so a caller can record it
    before the next boot."""
    out = []
    for job in jobs:
        b = boot(job, settings, timeout(job), lambda text, job=job: status(job, text))
        on_booted(job, b)
        out.append(b)
    return out


MAX_GUEST_JSON = 1 << 20


def guest_data(results: Path | None) -> dict:
    """JSON the guest suite left beside its JUnit file (benchmark figures,
    such as scale.json): untrusted, so no links, size-capped, strict JSON
    (no NaN, no deep nesting), never run. A bad file is an error entry."""
    data: dict = {}
    if results is None:
        return data
    for f in sorted(results.glob("*.json"))[:20]:
        try:
            raw = untrusted.read_capped(f, MAX_GUEST_JSON)
            data[f.name] = untrusted.load_json(raw.decode(errors="replace"))
        except untrusted.UntrustedError as e:
            data[f.name] = {"error": str(e)}
        except (ValueError, RecursionError) as e:
            data[f.name] = {"error": f"not acceptable JSON: {str(e)[:100]}"}
    return data
