"""run.json, written atomically after every step, and the terminal summary."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Replace `path` atomically: a killed run leaves the last full record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def summary(rec: dict) -> str:
    """A human summary of a run.json record."""
    lines = []
    s = rec.get("series") or {}
    if s:
        lines.append(f"series: {s.get('subject', '?')} (v{s.get('version', '?')}, "
                     f"{len(s.get('patches', []))} patches) <{s.get('msgid', '')}>")
        for p in s.get("patches", []):
            detail = f"  {p['detail']}" if p.get("detail") else ""
            lines.append(f"  [{p['status']:>7}] {p['index']}/{len(s['patches'])} {p['subject']}{detail}")
    t = rec.get("tree") or {}
    if t.get("base"):
        lines.append(f"tree:   {t.get('label', '')}")
        lines.append(f"base:   {t['base'][:12]}: {t.get('base_reason', '')}")
    if rec.get("accel"):
        lines.append(f"vm:     {rec['accel'].get('mode', '?')} ({rec['accel'].get('reason', '')})")
    for c in rec.get("configs", []):
        lines.append(f"config {c['name']}:")
        for side in ("baseline", "patched"):
            sd = c.get(side) or {}
            b, v = sd.get("build") or {}, sd.get("boot") or {}
            bt = f"{b.get('status', 'not run')}" + (f" {b['seconds']:.0f}s" if b.get("seconds") else "")
            vt = f"{v.get('status', 'not run')}" + (f" {v['seconds']:.0f}s ({v.get('accel', '')})"
                                                    if v.get("seconds") else "")
            oc = sd.get("outcome") or {}
            lines.append(f"  {side:<8}  build: {bt:<16} boot+tests: {vt}"
                         + (f"  -> {oc['status']}" if oc.get("status") else ""))
            if v.get("error"):
                lines.append(f"            {v['error']}")
            elif oc.get("reason"):
                lines.append(f"            {oc['reason']}")
        for s in c.get("new_splats") or []:
            lines.append(f"  NEW SPLAT on patched: {s['kind']}: {s['title']}")
        for s in c.get("preexisting_splats") or []:
            lines.append(f"  pre-existing splat (baseline too): {s['kind']}: {s['title']}")
        comps = c.get("comparison") or []
        if comps:
            w = max(len(x["name"]) for x in comps)
            lines.append(f"  {'test':<{w}}  baseline  patched  transition")
            for x in comps:
                why = x.get("reason") or ""
                why = (why if len(why) <= 100 else why[:97] + "...").replace("\n", " ")
                lines.append(f"  {x['name']:<{w}}  {x['baseline']:<8}  {x['patched']:<7}  "
                             f"{x['transition']}" + (f": {why}" if why else ""))
        for kind in ("regressions", "failures", "infra"):
            for item in (c.get("problems") or {}).get(kind) or []:
                lines.append(f"  {kind[:-1] if kind != 'infra' else 'infra'}: {item}")
    for step in rec.get("each_patch") or []:
        lines.append(f"each-patch: build after patch {step['patch']}: {step['status']}"
                     + (f": {step['error']}" if step.get("error") else ""))
    for c in rec.get("configs", []):
        added = (c.get("warnings") or {}).get("added") or []
        for w in added:
            lines.append(f"  config {c['name']}: new compiler warning: {w}")
    if rec.get("configs"):
        lines.extend(matrix(rec["configs"]))
    lines.append(f"verdict: {rec.get('verdict', '?')} (exit {rec.get('exit_code', '?')})"
                 + (f": {rec['error']}" if rec.get("error") else ""))
    return "\n".join(lines)


def _tests(side: dict) -> str:
    v = side.get("boot") or {}
    if v.get("status") in (None, "not run"):
        return "-"
    if v.get("status") != "ok" or (side.get("outcome") or {}).get("status") == "ERROR":
        return "ERROR"
    counts: dict[str, int] = {}
    for t in side.get("tests") or []:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    text = " ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
    return text + (" (kept)" if v.get("cached") else "")


def _build(side: dict) -> str:
    b = side.get("build") or {}
    st = b.get("status", "-")
    if st == "ok" and b.get("seconds") is not None:
        return f"built {b['seconds']:.0f}s"
    return st


def matrix(configs: list[dict]) -> list[str]:
    """The matrix at a glance: one row per config."""
    head = ("config", "baseline build", "patched build", "baseline tests", "patched tests",
            "new splats", "new warnings", "verdict")
    rows = [head]
    for c in configs:
        w = c.get("warnings") or {}
        rows.append((c["name"], _build(c.get("baseline") or {}), _build(c.get("patched") or {}),
                     _tests(c.get("baseline") or {}), _tests(c.get("patched") or {}),
                     str(len(c.get("new_splats") or [])) if "new_splats" in c else "-",
                     str(len(w.get("added") or [])) if w.get("status", "").startswith("compared")
                     else "-", c.get("verdict") or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = ["matrix:"]
    for r in rows:
        out.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return out
