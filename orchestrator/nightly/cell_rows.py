"""One cell of a night from the run record of its `orch test` run.

The nightly never parses a log: the status, tests, splats, durations and
figures all come from run.json (RunRecord), which `orch test` wrote.
"""

from __future__ import annotations

import shlex

from orchestrator.core.errors import Exit
from orchestrator.core.sanitize import clean
from orchestrator.nightly.night import Cell, SeriesRev, Splat, TestCell, TreeState
from orchestrator.run.record import ConfigRecord, RunRecord
from orchestrator.source.intake import DEFAULT_LORE

STATUS_OF_EXIT = {int(Exit.OK): "PASS", int(Exit.TESTS_FAILED): "FAIL",
                  int(Exit.NO_APPLY): "NO-APPLY", int(Exit.PATCHED_BUILD): "BUILD-FAILED"}


def reproduce(s: SeriesRev, t: TreeState, config: str, test: str | None = None,
              lore_url: str | None = None) -> str:
    """The one command that reproduces a cell on a developer's machine: the
    revision by its Message-ID (b4 fetches exactly that revision), the tree's
    commit as the base, the config, and the test when one is named."""
    argv = ["orch", "test", s.msgid]
    if lore_url and lore_url.rstrip("/") != DEFAULT_LORE:
        argv += ["--lore-url", lore_url]
    argv += ["--debian-source", t.label.removeprefix("debian:")] if t.kind == "debian" \
        else ["--tree", t.path]
    argv += ["--on", t.commit, "--config", config]
    if test:
        argv += ["--guest-test", test]
    return shlex.join(argv)


def from_record(rec: RunRecord, s: SeriesRev, t: TreeState, config: str,
                run_dir: str, lore_url: str | None = None) -> Cell:
    code = rec.exit_code if rec.state == "done" else None
    status = STATUS_OF_EXIT.get(code, "ERROR") if code is not None else "ERROR"
    detail = clean(rec.error or ("" if rec.state == "done" else f"run {rec.state}"), 300)
    cell = Cell(s.key, s.version, s.msgid, t.label, t.commit, config, status, detail, run_dir,
                reproduce(s, t, config, lore_url=lore_url),
                accel=rec.accel.mode if rec.accel else None)
    cfg = next((c for c in rec.configs if c.name == config), None)
    if cfg is None:
        return cell
    _tests(cell, cfg)
    _durations(cell, cfg)
    cell.figures = figures(cfg)
    failing = [t.name for t in cell.tests if t.patched in ("FAIL", "ERROR")]
    if status == "FAIL" and len(failing) == 1:
        cell.reproduce = reproduce(s, t, config, failing[0], lore_url)
    return cell


def _tests(cell: Cell, cfg: ConfigRecord) -> None:
    patched = {t.name: t for t in cfg.patched.tests or []}
    for cmp in cfg.comparison or []:
        p = patched.get(cmp.name)
        cell.tests.append(TestCell(cmp.name, cmp.baseline or None, cmp.patched or None,
                                   cmp.transition, clean(p.message, 300) if p else "",
                                   {k: clean(str(v), 200) for k, v in
                                    (p.properties if p else {}).items()}))
    for side, splats in (("patched", cfg.new_splats), ("baseline", cfg.preexisting_splats)):
        for sp in splats or []:
            cell.splats.append(Splat(str(sp.get("fingerprint", "")),
                                     clean(str(sp.get("title", "")), 200), side))


def _durations(cell: Cell, cfg: ConfigRecord) -> None:
    for side in ("baseline", "patched"):
        sr = getattr(cfg, side)
        if sr.build.seconds is not None:
            cell.build_seconds[side] = round(sr.build.seconds, 1)
            cell.built[side] = sr.build.status == "ok" and not sr.build.cached
        if sr.boot is not None and sr.boot.seconds is not None:
            cell.boot_seconds[side] = round(sr.boot.seconds, 1)
            cell.booted[side] = sr.boot.status == "ok" and not sr.boot.cached


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):   # OverflowError: an int of 400 digits
        return None
    return f if f == f and abs(f) != float("inf") else None


def figures(cfg: ConfigRecord) -> dict[str, float]:
    """The figures a night plots and watches, from what the guest reported
    (untrusted: anything that is not a finite number is left out)."""
    out: dict[str, float] = {}
    for t in cfg.patched.tests or []:
        p = t.properties or {}
        frac = _num(p.get("fraction_evicted"))
        if frac is None:
            written, left = _num(p.get("pages_written")), _num(p.get("pages_still_cached"))
            if written and left is not None:
                frac = (written - left) / written
        if frac is not None and 0 <= frac <= 1:
            out[f"evicted:{t.name}"] = round(frac, 4)
    for side in ("baseline", "patched"):
        data = (getattr(cfg, side).guest_data or {}).get("scale.json")
        if not isinstance(data, dict) or not isinstance(data.get("summary"), list):
            continue
        for row in data["summary"][:64]:
            if not isinstance(row, dict) or _num(row.get("n")) is None:
                continue
            n = int(_num(row["n"]))
            mib = row.get("mib_per_s")
            mib = _num(mib.get("mean")) if isinstance(mib, dict) else _num(mib)
            if mib is not None:
                out[f"scale:{side}:mib_per_s:{n}"] = mib
            lock = row.get("lock_stat")
            if isinstance(lock, dict):
                top = lock.get("top_by_contentions")
                if isinstance(top, list):
                    total = sum(_num(r.get("contentions", {}).get("mean")) or 0.0
                                for r in top if isinstance(r, dict)
                                and isinstance(r.get("contentions"), dict))
                    out[f"scale:{side}:contentions:{n}"] = round(total, 1)
    return out
