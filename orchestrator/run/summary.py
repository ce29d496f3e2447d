"""The terminal summary of a run record: what `orch test` prints at its end
and `orch report` prints again."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.errors import Exit
from orchestrator.core.exits import GitBisect
from orchestrator.run.record import (
    BisectRecord,
    BootStatus,
    BuildStatus,
    ConfigRecord,
    RunRecord,
    RunVerdict,
    SideRecord,
    TargetsRecord,
)
from orchestrator.run.targets import Rule as TargetRule
from orchestrator.run.verdict import SideStatus


def summary(rec: RunRecord) -> str:
    lines = _series_lines(rec)
    t = rec.tree
    if t and t.base:
        lines.append(f"tree:   {t.label}")
        lines.append(f"base:   {t.base[:12]}: {t.base_reason}")
    if rec.accel:
        lines.append(f"vm:     {rec.accel.mode} ({rec.accel.reason})")
    if rec.targets:
        lines.append(targets_line(rec.targets, len(rec.expected_tests or [])))
    for c in rec.configs:
        lines.extend(_config_lines(c))
    for step in rec.each_patch or []:
        lines.append(f"each-patch: build after patch {step.patch}: {step.status}"
                     + (f": {step.error}" if step.error else ""))
    for c in rec.configs:
        for w in (c.warnings or {}).get("added") or []:
            lines.append(f"  config {c.name}: new compiler warning: {w}")
    if rec.configs:
        lines.extend(matrix(rec.configs))
    if rec.bisect:
        lines.extend(check_lines(rec.bisect) if is_check(rec) else bisect(rec.bisect))
    lines.append(conclusion(rec).line)
    return "\n".join(lines)


def _series_lines(rec: RunRecord) -> list[str]:
    s = rec.series or {}
    if not s:
        return []
    # A range's mails have Message-IDs orch made up: name the range.
    where = f"--range {s['range']}" if s.get("range") else f"<{s.get('msgid', '')}>"
    lines = [f"series: {s.get('subject', '?')} (v{s.get('version', '?')}, "
             f"{len(s.get('patches', []))} patches) {where}"]
    for p in s.get("patches", []):
        detail = f"  {p['detail']}" if p.get("detail") else ""
        lines.append(f"  [{p['status']:>7}] {p['index']}/{len(s['patches'])} {p['subject']}{detail}")
    return lines


def _config_lines(c: ConfigRecord) -> list[str]:
    """One config: each side's build and boot, its splats, the per-test
    comparison and the problems the verdict names."""
    lines = [f"config {c.name}:"]
    for side in ("baseline", "patched"):
        sd = c.side(side)
        b, v = sd.build, sd.boot
        bt = b.status + (f" {b.seconds:.0f}s" if b.seconds else "")
        vt = ((v.status if v else "not run")
              + (f" {v.seconds:.0f}s ({v.accel or ''})" if v and v.seconds else ""))
        oc = sd.outcome
        lines.append(f"  {side:<8}  build: {bt:<16} boot+tests: {vt}"
                     + (f"  -> {oc.status}" if oc and oc.status else ""))
        if b.kselftests:
            lines.append("            kselftests: " + ", ".join(
                f"{k.target} " + ("cached" if k.cached else f"built {k.seconds:.0f}s")
                for k in b.kselftests))
        if v and v.error:
            lines.append(f"            {v.error}")
        elif oc and oc.reason:
            lines.append(f"            {oc.reason}")
    for sp in c.new_splats or []:
        lines.append(f"  NEW SPLAT on patched: {sp['kind']}: {sp['title']}")
    for sp in c.preexisting_splats or []:
        lines.append(f"  pre-existing splat (baseline too): {sp['kind']}: {sp['title']}")
    comps = c.comparison or []
    if comps:
        w = max(len(x.name) for x in comps)
        lines.append(f"  {'test':<{w}}  baseline  patched  transition")
        for x in comps:
            why = x.reason or ""
            why = (why if len(why) <= 100 else why[:97] + "...").replace("\n", " ")
            lines.append(f"  {x.name:<{w}}  {x.baseline:<8}  {x.patched:<7}  "
                         f"{x.transition}" + (" (known failure)" if x.known else "")
                         + (f": {why}" if why else ""))
    if c.problems:
        for kind, items in (("regression", c.problems.regressions),
                            ("failure", c.problems.failures), ("infra", c.problems.infra)):
            for item in items:
                lines.append(f"  {kind}: {item}")
        if c.problems.known:
            lines.append(f"  {KNOWN}:")
            lines.extend(f"    {item}" for item in c.problems.known)
    return lines


KNOWN = "known failures (failing on the baseline too; not a target of this series)"


def targets_line(t: TargetsRecord, of: int) -> str:
    """Which tests the series is expected to fix, and by which rule: only
    these fail the run when they fail on the baseline too."""
    n = len(t.tests)
    if t.rule == TargetRule.EXPECT_FIXED:
        given = " ".join(t.patterns or [])
        return (f"targets: none (--expect-fixed {given})" if not n
                else f"targets: {n} of {of} tests (--expect-fixed {given})")
    if t.rule == TargetRule.ALL:
        return f"targets: all {of} tests (the guest suite has no about.toml)"
    touched = t.touched or []
    count = t.touched_count if t.touched_count is not None else len(touched)
    files = ", ".join(touched[:3]) + (", ..." if count > 3 else "")
    return (f"targets: {n} of {of} tests (about.toml, for the {count} file(s) the series "
            f"touches: {files or 'none'})")


def _tests(side: SideRecord) -> str:
    v = side.boot
    if v is None or v.status == BootStatus.NOT_RUN:
        return "-"
    if v.status != BootStatus.OK or (side.outcome and side.outcome.status == SideStatus.ERROR):
        return "ERROR"
    counts: dict[str, int] = {}
    for t in side.tests or []:
        counts[t.status] = counts.get(t.status, 0) + 1
    text = " ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
    return text + (" (kept)" if v.cached else "")


def _build(side: SideRecord) -> str:
    b = side.build
    if b.status == BuildStatus.OK and b.seconds is not None:
        return f"built {b.seconds:.0f}s"
    return b.status


def matrix(configs: list[ConfigRecord]) -> list[str]:
    """The matrix at a glance: one row per config."""
    head = ("config", "baseline build", "patched build", "baseline tests", "patched tests",
            "new splats", "new warnings", "verdict")
    rows = [head]
    for c in configs:
        w = c.warnings or {}
        rows.append((c.name, _build(c.baseline), _build(c.patched),
                     _tests(c.baseline), _tests(c.patched),
                     str(len(c.new_splats)) if c.new_splats is not None else "-",
                     str(len(w.get("added") or [])) if w.get("status", "").startswith("compared")
                     else "-", c.verdict or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = ["matrix:"]
    for r in rows:
        out.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return out


def bisect(b: BisectRecord) -> list[str]:
    """The steps table, the finding and how to reproduce it."""
    out = [f"bisect ({b.mode}, config {b.config}): {b.commits} commit(s), at most "
           f"{b.max_steps} step(s) without skips; "
           f"{sum(s.role == 'step' for s in b.steps)} taken"]
    rows = [("", "commit", "build", "boot", "tests", "outcome", "subject")]
    n = 0
    for s in b.steps:
        if s.role == "step":
            n += 1
        counts: dict[str, int] = {}
        for st in (s.tests or {}).values():
            counts[st] = counts.get(st, 0) + 1
        build_ = f"built {s.build_seconds:.0f}s" if s.build == "built" else s.build
        boot = "-" if s.boot is None else ("kept" if s.boot == "kept"
                                           else f"{s.boot_seconds or 0:.0f}s")
        rows.append((f"step {n}" if s.role == "step" else s.role, s.commit[:12], build_, boot,
                     " ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) or "-",
                     s.outcome, s.subject[:50]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if b.first_bad:
        word = "first fixed" if b.mode == "fixed" else "first bad"
        out.append(f"{word} commit: {b.first_bad.commit} {b.first_bad.subject}")
        out.append(f"  author: {b.first_bad.author}")
    for c in b.candidates or []:
        if b.result != "found":
            out.append(f"  candidate: {c.commit} {c.subject} ({c.author})")
    if b.note:
        out.append(f"  {b.note}")
    if b.reproduce:
        out.append(f"reproduce: {b.reproduce}")
    if b.log:
        out.append(f"bisect log: {b.log} (git bisect replay it in any clone)")
    return out


# -- what a run came to: its verdict line and `orch report`'s exit status -------

# A check's verdicts: its one step's outcome, in git bisect's words.
CHECK_ANSWERS = {RunVerdict.GOOD, RunVerdict.BAD, RunVerdict.SKIP, RunVerdict.OLD,
                 RunVerdict.NEW}


@dataclass(frozen=True)
class Conclusion:
    """What a run record says the run came to: the status `orch report`
    exits with, and the summary's last line, which says it."""
    code: int
    line: str


def conclusion(rec: RunRecord) -> Conclusion:
    """A finished run: its own exit status (an orch check: git bisect
    run's, in git's words). A record no exit status was written into, which
    still says "running" (its run was killed, or is still going):
    INCOMPLETE, in one line that says so."""
    if rec.exit_code is None:
        return Conclusion(int(Exit.INCOMPLETE),
                          f"verdict: none (exit {int(Exit.INCOMPLETE)}): the run did not "
                          f"finish: its record says {rec.state} since {rec.started} (killed, "
                          "or still going)")
    if is_check(rec):
        return _check_conclusion(rec)
    code = rec.exit_code
    if rec.verdict == RunVerdict.INCONCLUSIVE:
        code = int(Exit.INCONCLUSIVE)   # recorded as 3 before 3 meant only "does not apply"
    return Conclusion(code, f"verdict: {rec.verdict or 'none'} (exit {code})"
                      + (f": {rec.error}" if rec.error else ""))


def is_check(rec: RunRecord) -> bool:
    """A record of `orch check` (one step of git bisect run)."""
    return (rec.command[1:2] == ["check"] or rec.verdict in CHECK_ANSWERS
            or any(s.role == "check" for s in (rec.bisect.steps if rec.bisect else [])))


def _check_conclusion(rec: RunRecord) -> Conclusion:
    if rec.verdict in CHECK_ANSWERS:
        code = GitBisect.of_outcome(rec.verdict)
        steps = rec.bisect.steps if rec.bisect else []
        why = steps[-1].reason if steps else ""
        word = rec.verdict.lower()
    else:   # it stopped: 128 and above (older records kept orch's own 2 or 5)
        code = rec.exit_code if rec.exit_code >= 128 else GitBisect.of_exit(rec.exit_code)
        why, word = rec.error or "", "stopped"
    return Conclusion(int(code), f"verdict: {word} (git bisect run: exit {int(code)})"
                      + (f": {why}" if why else ""))


def check_lines(b: BisectRecord) -> list[str]:
    """An orch check's one step, as a bisect's steps table shows it."""
    head = (f"check ({b.mode}, config {b.config}): {b.good[:12]}, the commit git bisect "
            "checked out")
    return [head] + (bisect(b)[1:] if b.steps else [])
