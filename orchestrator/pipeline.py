"""`orch test`: intake -> tree -> apply -> build -> boot+test -> verdict.

Every step records what it learned in run.json before the next starts, so
whatever stops a run (an error, Ctrl-C, a kill) leaves a readable record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor

from . import (__version__, build, compiler_warnings, debsrc, intake, kconfig, proc,
               report, result_cache, selection, splats, tree, untrusted, verdict, vm)
from .errors import Exit, OrchError
from .jobserver import JobServer
from .models import GuestRun, Kernel, Series
from .progress import Progress


@dataclass
class Options:
    msgid: str | None = None
    mbox: Path | None = None
    lore_url: str = intake.DEFAULT_LORE
    lore_timeout: float = intake.B4_TIMEOUT
    offline: bool = False
    latest: bool = False
    tree: Path | None = None
    base: str | None = None
    debian_package: str = debsrc.DEFAULT_PACKAGE
    configs: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    json_out: Path | None = None
    guest_timeout: float = vm.BOOT_TIMEOUT
    guest_tests: list[str] | None = None
    test_timeout: float = vm.TEST_TIMEOUT   # one guest test
    repeat: int = 1                         # each guest test N times in one boot
    timeout: float | None = None            # the whole run
    each_patch: bool = False
    build_only: bool = False
    rerun_baseline: bool = False
    sandbox: bool = True
    jobs: int = field(default_factory=build.jobs)
    argv: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:60] or "run"


def default_run_dir(opts: Options) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    what = opts.msgid or (opts.mbox.name if opts.mbox else "run")
    return Path("orch-runs") / f"{stamp}-{slug(what)}"


class Run:
    """The run directory and its record; `save()` after every change."""

    def __init__(self, opts: Options, progress: Progress):
        self.opts = opts
        self.dir = (opts.run_dir or default_run_dir(opts)).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs = self.dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.progress = progress
        self.t0 = time.monotonic()
        self.rec: dict = {"orch_version": __version__, "state": "running",
                          "command": opts.argv, "run_dir": str(self.dir),
                          "started": dt.datetime.now(dt.timezone.utc).isoformat(),
                          "verdict": None, "exit_code": None, "error": None,
                          "series": None, "tree": None, "configs": []}
        self.deadline = (time.monotonic() + opts.timeout) if opts.timeout else None
        self.save()

    def left(self, limit: float, before: str) -> float:
        """`limit`, or less when the whole-run timeout is nearer."""
        if self.deadline is None:
            return limit
        rest = self.deadline - time.monotonic()
        if rest <= 0:
            raise OrchError(f"the whole-run timeout ({self.opts.timeout:.0f}s) ran out "
                            f"before {before}", Exit.INFRA)
        return min(limit, rest)

    def save(self) -> None:
        report.write_json(self.dir / "run.json", self.rec)
        if self.opts.json_out:
            report.write_json(self.opts.json_out, self.rec)

    def say(self, msg: str) -> None:
        self.progress.say(msg)

    def finish(self, code: Exit, verdict_: str, error: str | None = None,
               state: str = "done") -> int:
        self.rec.update(exit_code=int(code), verdict=verdict_, error=error, state=state,
                        finished=dt.datetime.now(dt.timezone.utc).isoformat())
        self.save()
        return int(code)


def series_record(s: Series) -> dict:
    d = dataclasses.asdict(s)
    d["mbx"] = str(s.mbx)
    d["cover"] = s.cover is not None
    return d


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


def _build_record(kernel: Kernel) -> dict:
    return {"status": "cached" if kernel.cached else "ok", "seconds": round(kernel.seconds, 1),
            "cached": kernel.cached, "image": str(kernel.image), "log": str(kernel.log),
            "key": kernel.key, "compiled": kernel.compiled, "ccache": kernel.ccache,
            "banner": kernel.banner, "uncached": kernel.uncached}


def _side(kernel: Kernel | None, build_status: str, guest: GuestRun | None,
          found: list[splats.Splat] = (), judged: verdict.Side | None = None) -> dict:
    """The record of one side; `judged` comes with `guest` (a boot is always judged)."""
    out: dict = {"build": {"status": build_status}}
    if kernel:
        out["build"].update(_build_record(kernel))
        out["build"]["status"] = build_status
    if guest:
        out["boot"] = {"status": "ok" if guest.ok else "failed", "accel": guest.accel,
                       "cached": guest.cached,
                       "seconds": round(guest.seconds, 1), "console": str(guest.console),
                       "junit": str(guest.junit) if guest.junit else None,
                       "harness_log": str(guest.harness_log) if guest.harness_log else None,
                       "harness_rc": guest.harness_rc, "died_in": guest.died_in,
                       "error": guest.error, "banner": guest.banner}
        if not guest.ok:
            out["boot"]["console_tail"] = vm.console_tail(guest.console)
        out["outcome"] = verdict.side_record(judged)
        out["tests"] = verdict.test_records(judged)
        out["splats"] = [s.as_dict() for s in found]
        out["guest_data"] = guest_data(guest.junit.parent if guest.junit else None)
    else:
        out["boot"] = {"status": "not run"}
        out["tests"] = []
    return out


def test(opts: Options, progress: Progress | None = None) -> int:
    run = Run(opts, progress or Progress())
    try:
        return _test(run)
    except OrchError as e:
        names = {Exit.BAD_INPUT: "BAD-INPUT", Exit.NO_APPLY: "NO-APPLY",
                 Exit.PATCHED_BUILD: "PATCHED-BUILD-FAILED", Exit.INFRA: "INFRA-ERROR"}
        run.finish(e.exit, names.get(e.exit, "ERROR"), str(e))
        raise
    except KeyboardInterrupt:
        run.finish(Exit.INTERRUPTED, "INTERRUPTED", "interrupted", state="interrupted")
        raise
    except Exception as e:
        import traceback
        (run.logs / "traceback.txt").write_text(traceback.format_exc())
        run.finish(Exit.INFRA, "INFRA-ERROR", f"internal error: {type(e).__name__}: {e}"[:500])
        raise
    finally:
        run.progress.done()


def _test(run: Run) -> int:
    opts = run.opts
    rec = run.rec
    configs = opts.configs or kconfig.default_matrix()
    kcs = [kconfig.load(c) for c in configs]  # bad names fail before any work
    # What the guests must report, known before any work: a selection that
    # matches nothing stops here (status 2), not after two boots.
    expected = [] if opts.build_only else selection.collect(opts.guest_tests)
    rec["expected_tests"] = expected
    rec["repeat"] = opts.repeat
    run.save()

    # 1. intake
    run.say("b4: fetching the series" + (f" {opts.msgid}" if opts.msgid else f" from {opts.mbox}"))
    series = intake.fetch(opts.msgid, mbox=opts.mbox, outdir=run.dir / "series",
                          log=run.logs / "b4.log", lore_url=opts.lore_url,
                          timeout=run.left(opts.lore_timeout, "b4"),
                          offline=opts.offline, latest=opts.latest)
    rec["series"] = series_record(series)
    run.save()
    run.say(f"series v{series.version}: {series.subject} ({len(series.patches)} patches)")

    # 2. tree and base
    t = tree.open_tree(opts.tree, opts.debian_package, log_dir=run.logs)
    base = tree.resolve_base(t, series, opts.base)
    rec["tree"] = {"path": str(t.repo), "label": t.label, "base": base.commit,
                   "base_reason": base.reason}
    run.save()
    run.say(f"base {base.commit[:12]}: {base.reason}")
    ws = tree.workspace(t, announce=run.say)
    try:
        return _in_workspace(run, series, ws, base, kcs, expected)
    finally:
        ws.lock.release()


def _in_workspace(run: Run, series: Series, ws: tree.Workspace, base, kcs,
                  expected: list[str]) -> int:
    rec = run.rec
    # 3. apply first: a series that does not apply costs no build.
    applied = tree.apply_series(ws, base, series, run.logs)
    rec["series"] = series_record(series)
    rec["apply"] = {"ok": applied.ok, "head": applied.head,
                    "failed_patch": applied.failed_patch,
                    "rejections": [dataclasses.asdict(r) for r in applied.rejections]}
    run.save()
    if not applied.ok:
        p = series.patches[applied.failed_patch - 1]
        raise OrchError(f"patch {p.index}/{len(series.patches)} \"{p.subject}\" does not apply "
                        f"to {base.commit[:12]}: {applied.error}", Exit.NO_APPLY)
    run.say(f"applied {len(series.patches)} patches on {base.commit[:12]}")
    # Keep the patched commit reachable while we move the worktree about.
    tree._repo(ws.src).git.update_ref("refs/orch/last-patched", applied.head)

    kernels: dict[tuple[str, str], Kernel] = {}
    for c in kcs:
        rec["configs"].append({"name": c.name, "baseline": {"build": {"status": "pending"}},
                               "patched": {"build": {"status": "pending"}}})
    cfg = {c["name"]: c for c in rec["configs"]}

    # 4. builds: every baseline, then (with --each-patch) every prefix of the
    # series, then every patched, so the worktree moves forward only and
    # each build is incremental on the previous one in its directory.
    repo = tree._repo(ws.src)
    base_tree = repo.git.rev_parse(f"{base.commit}^{{tree}}")
    for c, k in _build_all(run, ws, kcs, "baseline", base.commit, base_tree).items():
        kernels[(c, "baseline")] = k
    commits = repo.git.rev_list("--reverse", f"{base.commit}..{applied.head}").split()
    if run.opts.each_patch:
        _each_patch(run, ws, kcs, series, commits[:-1])
    for c, k in _build_all(run, ws, kcs, "patched", applied.head, applied.tree_id).items():
        kernels[(c, "patched")] = k
    for c in kcs:
        cfg[c.name]["warnings"] = compiler_warnings.diff(kernels[(c.name, "baseline")].warnings,
                                                         kernels[(c.name, "patched")].warnings)
        added = cfg[c.name]["warnings"]["added"]
        if added:
            run.say(f"config {c.name}: the series adds {len(added)} compiler warning(s): "
                    + "; ".join(added[:3]))
    run.save()
    if run.opts.build_only:
        return run.finish(Exit.OK, "BUILT")

    # 5. boot and test each kernel once
    kvm, why = vm.probe_kvm(next(iter(kernels.values())).image)
    rec["accel"] = {"mode": "kvm" if kvm else "tcg", "reason": why}
    run.say(f"vm: {rec['accel']['mode']} ({why})")
    judged: dict[tuple[str, str], verdict.Side] = {}
    found: dict[tuple[str, str], list[splats.Splat]] = {}
    for c in kcs:
        for side in ("baseline", "patched"):
            run.say(f"{side} boot + guest tests, config {c.name}")
            key = f"boot {c.name} {side}"
            results = run.dir / "results" / c.name / side
            console = run.logs / f"console-{c.name}-{side}.log"
            rkey = result_cache.key(kernels[(c.name, side)].key, run.opts.guest_tests,
                                    run.opts.test_timeout, rec["accel"]["mode"], run.opts.repeat)
            g = None
            if side == "baseline" and not run.opts.rerun_baseline:
                g = result_cache.load(rkey, results, console, kernels[(c.name, side)],
                                      expected, run.opts.repeat)
                if g:
                    run.say(f"baseline config {c.name}: results of an earlier boot of this "
                            "kernel with this suite (--rerun-baseline boots it again)")
            if g is None:
                g = vm.run_tests(kernels[(c.name, side)], results, console,
                                 timeout=run.left(run.opts.guest_timeout, f"the {side} boot"),
                                 tests=run.opts.guest_tests, test_timeout=run.opts.test_timeout,
                                 expected=expected, repeat=run.opts.repeat,
                                 status=lambda text, key=key: run.progress.status(key, text))
                if side == "baseline":
                    result_cache.store(rkey, g)
            j = judged[(c.name, side)] = verdict.judge_side(expected, g, side == "patched")
            found[(c.name, side)] = splats.scan(vm.console_text(g.console))
            cfg[c.name][side] = _side(kernels[(c.name, side)],
                                      cfg[c.name][side]["build"]["status"], g,
                                      found[(c.name, side)], j)
            run.save()
            counts: dict[str, int] = {}
            for tr in j.tests.values():
                counts[tr.status.value] = counts.get(tr.status.value, 0) + 1
            run.say(f"{side} config {c.name}: {j.status}: "
                    + ", ".join(f"{v} {k}" for k, v in counts.items())
                    + (f" ({j.reason})" if j.reason else ""))

    # 6. verdict: each config on its own, then the run
    verdicts: dict[str, verdict.ConfigVerdict] = {}
    for c in kcs:
        v = verdicts[c.name] = verdict.judge_config(
            c.name, expected, judged[(c.name, "baseline")], judged[(c.name, "patched")],
            found[(c.name, "baseline")], found[(c.name, "patched")])
        cfg[c.name].update(
            comparison=verdict.comparison_records(v.comparisons),
            new_splats=[s.as_dict() for s in v.new_splats],
            preexisting_splats=[s.as_dict() for s in v.preexisting_splats],
            verdict=v.verdict, regressions=len(v.regressions),
            problems={"regressions": v.regressions, "failures": v.failures,
                      "infra": v.infra})
    run.save()
    code, word = verdict.run_exit(verdicts)
    return run.finish(code, word, verdict.headline(verdicts) or None)


def _build_all(run: Run, ws: tree.Workspace, kcs: list[kconfig.KConfig], side: str,
               commit: str, tree_id: str, label: str | None = None) -> dict[str, Kernel]:
    """Build every config of one source state at once, sharing one job budget.

    Several configs build concurrently as clients of one make jobserver:
    one build's serial stretches (Kconfig, the link) overlap the others'
    compiles, and the machine never runs more than --jobs compilers.
    """
    label = label or side
    tree.checkout(ws.src, commit)
    cfg = {c["name"]: c for c in run.rec["configs"]}
    timeout = run.left(build.BUILD_TIMEOUT, f"the {label} build")
    out: dict[str, Kernel] = {}
    errors: list[OrchError] = []
    def log_of(c: kconfig.KConfig) -> Path:
        return run.logs / f"build-{c.name}-{label.replace(' ', '').replace('/', 'of')}.log"
    with JobServer(run.opts.jobs, len(kcs)) as js:
        def one(c: kconfig.KConfig) -> Kernel:
            run.say(f"{label} build, config {c.name}")
            opts = build.BuildOptions(
                sandbox=run.opts.sandbox, jobserver=js, timeout=timeout,
                status=lambda text: run.progress.status(f"build {c.name}", text))
            return build.build(ws.src, ws.build_dir(c.name), c, tree_id, log_of(c), side,
                               opts)
        pool = ThreadPoolExecutor(max_workers=len(kcs))
        try:
            futures = {c.name: pool.submit(one, c) for c in kcs}
            for c in kcs:
                try:
                    k = futures[c.name].result()
                except OrchError as e:
                    errors.append(e)
                    if label == side:
                        cfg[c.name][side] = _side(None, "failed", None)
                        cfg[c.name][side]["build"]["log"] = str(log_of(c))
                    run.save()
                    continue
                out[c.name] = k
                if label == side:
                    cfg[c.name][side] = _side(k, "cached" if k.cached else "ok", None)
                run.save()
                ratio = (k.ccache or {}).get("hit_rate")
                run.say(f"{label} build, config {c.name}: " + (
                    "cached" if k.cached else f"built in {k.seconds:.0f}s, {k.compiled} "
                    "compiled" + (f", ccache hit rate {ratio:.0%}" if ratio is not None else "")))
        except BaseException:
            # Ctrl-C/SIGTERM lands in this thread; the builds' make processes
            # belong to the workers, which would otherwise run on.
            proc.kill_all()
            raise
        finally:
            pool.shutdown(wait=True)
    if errors:
        if run.deadline is not None and time.monotonic() >= run.deadline:
            raise OrchError(f"the whole-run timeout ({run.opts.timeout:.0f}s) ran out during "
                            f"the {label} build", Exit.INFRA)
        raise errors[0]
    return out


def _each_patch(run: Run, ws: tree.Workspace, kcs: list[kconfig.KConfig], series: Series,
                commits: list[str]) -> None:
    """Build after every patch but the last (the patched build is the last):
    a series must build at each step, or bisecting through it breaks."""
    n = len(series.patches)
    steps = run.rec.setdefault("each_patch", [])
    repo = tree._repo(ws.src)
    for i, commit in enumerate(commits, start=1):
        p = series.patches[i - 1]
        step = {"patch": i, "subject": p.subject, "status": "building", "configs": {}}
        steps.append(step)
        run.save()
        try:
            ks = _build_all(run, ws, kcs, "patched", commit,
                            repo.git.rev_parse(f"{commit}^{{tree}}"), label=f"patch {i}/{n}")
        except OrchError as e:
            step.update(status="failed", error=str(e))
            p.detail = "breaks the build"
            run.rec["series"] = series_record(series)
            run.save()
            if e.exit != Exit.PATCHED_BUILD:
                raise
            raise OrchError(f"patch {i}/{n} \"{p.subject}\" breaks the build: {e}",
                            Exit.PATCHED_BUILD)
        step["status"] = "ok"
        step["configs"] = {name: _build_record(k) for name, k in ks.items()}
        run.save()
