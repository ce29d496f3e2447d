"""The terminal summary of a run record: what `orch test` prints at its end
and `orch report` prints again."""

from __future__ import annotations

from orchestrator.run.record import (
    BisectRecord,
    BootStatus,
    BuildStatus,
    ConfigRecord,
    RunRecord,
    SideRecord,
)
from orchestrator.run.verdict import SideStatus


def summary(rec: RunRecord) -> str:
    lines = _series_lines(rec)
    t = rec.tree
    if t and t.base:
        lines.append(f"tree:   {t.label}")
        lines.append(f"base:   {t.base[:12]}: {t.base_reason}")
    if rec.accel:
        lines.append(f"vm:     {rec.accel.mode} ({rec.accel.reason})")
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
        lines.extend(bisect(rec.bisect))
    lines.append(f"verdict: {rec.verdict or '?'} (exit "
                 f"{rec.exit_code if rec.exit_code is not None else '?'})"
                 + (f": {rec.error}" if rec.error else ""))
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
                         f"{x.transition}" + (f": {why}" if why else ""))
    if c.problems:
        for kind, items in (("regression", c.problems.regressions),
                            ("failure", c.problems.failures), ("infra", c.problems.infra)):
            for item in items:
                lines.append(f"  {kind}: {item}")
    return lines


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
