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
            lines.append(f"  {side:<8}  build: {bt:<16} boot+tests: {vt}")
            if v.get("error"):
                lines.append(f"            {v['error']}")
        for s in c.get("new_splats") or []:
            lines.append(f"  NEW SPLAT on patched: {s['kind']}: {s['title']}")
        for s in c.get("preexisting_splats") or []:
            lines.append(f"  pre-existing splat (baseline too): {s['kind']}: {s['title']}")
        comps = c.get("comparison") or []
        if comps:
            w = max(len(x["name"]) for x in comps)
            lines.append(f"  {'test':<{w}}  baseline  patched  transition")
            for x in comps:
                lines.append(f"  {x['name']:<{w}}  {x['baseline']:<8}  {x['patched']:<7}  {x['transition']}")
    lines.append(f"verdict: {rec.get('verdict', '?')} (exit {rec.get('exit_code', '?')})"
                 + (f": {rec['error']}" if rec.get("error") else ""))
    return "\n".join(lines)
