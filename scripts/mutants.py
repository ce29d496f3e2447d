#!/usr/bin/env python3
"""Mutation check of the guest suite.

Each mutant in tests/data/patches/mutant-*.mbox is the RFC v3 7.2.13 port
(patches/blk-dontcache-v3-port-7.2.13.mbox, 2 patches) plus one small,
deliberate bug (the third patch's commit message says what it breaks and
which tests should catch it). This script runs the port itself (the
reference) and each mutant through `orch test --offline-mode --config base`,
reads each run.json and tabulates, for every guest test, the mutants it
catches: a test catches a mutant when it FAILs or ERRORs on the mutant's
patched kernel and PASSes on the port's. A test the port already fails
(the full folio_batch drops folios) catches nothing here; the port's own
failures are listed separately.

    .venv/bin/python scripts/mutants.py                  # affected tests + controls
    .venv/bin/python scripts/mutants.py --full-suite     # the whole guest suite
    .venv/bin/python scripts/mutants.py --only hotplug-no-drain
    .venv/bin/python scripts/mutants.py --tabulate DIR   # tables from earlier runs

Runs go under --out-dir (default orch-runs/mutants-<time>), one run directory per
kernel, plus results.json and table.md. Each mutant is an incremental build
of the files it touches (25-80 s on 2 cores) and one boot (2-4 minutes
with --full-suite under TCG); kernels are cached, so a second pass only
boots. orch waits for another orch run on the same tree: run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATCHES = REPO / "tests" / "data" / "patches"
PORT = REPO / "patches" / "blk-dontcache-v3-port-7.2.13.mbox"

BD = "guest_tests/test_blockdev_dontcache.py::"
FS = "guest_tests/test_filesystems.py::"
MIX = "guest_tests/test_mixing.py::"
MANY = "guest_tests/test_many_folios.py::"
IRQ = BD + "test_dontcache_write_irq_completion_evicts"
TASK = BD + "test_dontcache_write_task_completion_evicts"

# name -> (what it breaks, tests expected to catch it, controls that must pass)
MUTANTS: dict[str, tuple[str, list[str], list[str]]] = {
    "work-only-when-batch-full": (
        "IRQ deferral: the worker is scheduled only when the per-CPU batch is full, so a "
        "small write's folios are queued but never invalidated",
        [IRQ, FS + "test_ext4_overwrite_evicts",
         FS + "test_ext4_new_allocation_evicts[dioread_lock]",
         FS + "test_virtio_blk_dontcache_write_evicts"],
        [TASK, MANY + "test_many_folios_task_completion_control"]),
    "worker-skips-first-folio": (
        "worker off-by-one: the first folio of every drained batch is neither invalidated "
        "nor released (stays cached, reference leaked)",
        [IRQ, FS + "test_ext4_overwrite_evicts",
         FS + "test_ext4_new_allocation_evicts[dioread_lock]",
         FS + "test_virtio_blk_dontcache_write_evicts",
         "guest_tests/test_hotplug.py::test_cpu_offline_during_dontcache_writeback"],
        [TASK, MANY + "test_many_folios_task_completion_control"]),
    "marks-cached-folios": (
        "a DONTCACHE lookup also marks clean folios it finds in the cache dropbehind, so "
        "another user's cached data is evicted",
        [MIX + "test_cached_then_dontcache_stays_cached"],
        [MIX + "test_dontcache_then_normal_write_stays_cached", IRQ, TASK]),
    "hotplug-no-drain": (
        "CPU hotplug: a dead CPU's dropbehind batch is not drained (its folios keep the "
        "batch's reference)",
        ["guest_tests/test_hotplug.py::test_cpu_offline_during_dontcache_writeback"],
        [IRQ, TASK]),
    "evicts-mapped-folios": (
        "filemap_end_dropbehind() drops its !folio_mapped() check: mapped folios are "
        "unmapped and evicted",
        [MIX + "test_mmapped_range_stays_cached"],
        [MIX + "test_cached_then_dontcache_stays_cached", IRQ]),
}

FAILED = ("FAIL", "ERROR")


def short(name: str) -> str:
    """`test_x[p]` from the node id `guest_tests/f.py::test_x[p]`: the tables
    name tests without their file, and a selection entry may omit the
    parameters."""
    return name.rsplit("::", 1)[-1]


def matches(name: str, wanted: str) -> bool:
    """A run.json test name against a selection entry, by the test's name
    (with or without its parameters)."""
    s, w = short(name), short(wanted)
    return s == w or s.split("[", 1)[0] == w


def selection(name: str) -> list[str]:
    _, catch, controls = MUTANTS[name]
    return list(dict.fromkeys(catch + controls))


def run_orch(mbox: Path, run_dir: Path, tests: list[str] | None, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode", "--mbox",
           str(mbox), "--config", "base", "--run-dir", str(run_dir)]
    for t in tests or []:
        cmd += ["--guest-test", t.split("[", 1)[0]]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "orch.stderr").write_text(r.stderr)
    (run_dir / "wall.json").write_text(json.dumps({"wall_s": round(wall)}) + "\n")
    return {"exit": r.returncode, "wall_s": round(wall),
            "error": r.stderr.strip().splitlines()[-1:]}


def patched_tests(run_dir: Path) -> dict[str, dict]:
    data = json.loads((run_dir / "run.json").read_text())
    out = {}
    for cfg in data.get("configs", []):
        for t in (cfg.get("patched") or {}).get("tests") or []:
            out[short(t["name"])] = t
    return out


def run_info(run_dir: Path) -> dict:
    data = json.loads((run_dir / "run.json").read_text())
    cfg = (data.get("configs") or [{}])[0]
    p = cfg.get("patched") or {}
    return {"exit_code": data.get("exit_code"), "verdict": data.get("verdict"),
            "error": data.get("error"),
            "build": (p.get("build") or {}).get("status"),
            "build_s": (p.get("build") or {}).get("seconds"),
            "boot": (p.get("boot") or {}).get("status"),
            "boot_s": (p.get("boot") or {}).get("seconds"),
            "new_splats": [s.get("title") for s in cfg.get("new_splats") or []],
            "wall_s": (json.loads((run_dir / "wall.json").read_text())["wall_s"]
                       if (run_dir / "wall.json").exists() else None)}


def evidence(t: dict) -> str:
    props = t.get("properties") or {}
    keep = [f"{k}={props[k]}" for k in ("pages_still_cached", "pages_cached", "fraction_evicted",
                                         "rounds", "pages_cached_after_drop_caches")
            if k in props]
    msg = (t.get("message") or "").splitlines()
    return "; ".join(([msg[0][:200]] if msg and t["status"] in FAILED else []) + keep)


def tabulate(out: Path) -> dict:
    names = [n for n in MUTANTS if (out / n / "run.json").exists()]
    port = patched_tests(out / "port") if (out / "port" / "run.json").exists() else {}
    results = {"port": {"info": run_info(out / "port"), "tests": port} if port else None,
               "mutants": {}}
    caught: dict[str, list[str]] = {t: [] for t in port}
    for n in names:
        tests = patched_tests(out / n)
        info = run_info(out / n)
        catchers = [t for t, x in tests.items()
                    if x["status"] in FAILED and port.get(t, {}).get("status") == "PASS"]
        expected = [short(t) for t in MUTANTS[n][1]]
        controls = [short(t) for t in MUTANTS[n][2]]
        results["mutants"][n] = {
            "breaks": MUTANTS[n][0], "info": info,
            "caught_by": catchers,
            "expected_missed": [e for e in expected
                                if not any(matches(c, e) for c in catchers)],
            "controls_failed": [t for t, x in tests.items() if x["status"] != "PASS"
                                and any(matches(t, c) for c in controls)],
            "tests": {t: {"status": x["status"], "evidence": evidence(x)}
                      for t, x in tests.items()}}
        for t in catchers:
            caught.setdefault(t, []).append(n)
    results["caught"] = caught
    return results


def markdown(results: dict) -> str:
    port = (results.get("port") or {}).get("tests") or {}
    muts = results["mutants"]
    lines = ["| test | status on the port | mutants it catches |", "|---|---|---|"]
    for t in sorted(set(port) | set(results["caught"])):
        c = results["caught"].get(t) or []
        st = port.get(t, {}).get("status", "not run")
        lines.append(f"| `{t}` | {st} | {', '.join(f'`{x}`' for x in c) or '-'} |")
    lines += ["", "| mutant | breaks | exit | caught by (FAIL on the mutant, PASS on the port) "
              "| expected but missed | controls not PASS |", "|---|---|---|---|---|---|"]
    for n, m in muts.items():
        caught = "<br>".join(f"`{t}`: {m['tests'][t]['evidence']}" for t in m["caught_by"]) or "-"
        lines.append(f"| `{n}` | {m['breaks']} | {m['info']['exit_code']} | {caught} | "
                     f"{', '.join(m['expected_missed']) or '-'} | "
                     f"{', '.join(m['controls_failed']) or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(MUTANTS),
                    help="run only this mutant (repeatable); the port always runs first")
    ap.add_argument("--full-suite", action="store_true",
                    help="run the whole guest suite on every kernel, not just the tests "
                         "each mutant names")
    ap.add_argument("--out-dir", type=Path,
                    default=REPO / "orch-runs" / time.strftime("mutants-%Y%m%d-%H%M%S"))
    ap.add_argument("--timeout", type=int, default=3600, help="per orch run, seconds")
    ap.add_argument("--tabulate", type=Path, metavar="DIR",
                    help="do not run anything: tabulate the runs under DIR")
    a = ap.parse_args(argv)
    out = a.tabulate or a.out_dir
    if not a.tabulate:
        out.mkdir(parents=True, exist_ok=True)
        names = a.only or list(MUTANTS)
        # The reference runs every test any selected mutant names, so that
        # "PASS on the port" is known for each of them.
        ref_sel = None if a.full_suite else list(dict.fromkeys(
            t for n in names for t in selection(n)))
        jobs = [("port", PORT, ref_sel)] + [
            (n, PATCHES / f"mutant-{n}.mbox", None if a.full_suite else selection(n))
            for n in names]
        for n, mbox, sel in jobs:
            if (out / n / "run.json").exists():
                print(f"{n}: kept ({out / n})", file=sys.stderr)
                continue
            print(f"{n}: running orch ...", file=sys.stderr, flush=True)
            r = run_orch(mbox, out / n, sel, a.timeout)
            print(f"{n}: exit {r['exit']} in {r['wall_s']} s", file=sys.stderr, flush=True)
    results = tabulate(out)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out / "table.md").write_text(md)
    print(md)
    bad = [n for n, m in results["mutants"].items() if not m["caught_by"] or m["controls_failed"]]
    for n in bad:
        m = results["mutants"][n]
        why = "caught by no test" if not m["caught_by"] else \
            f"controls not PASS: {', '.join(m['controls_failed'])}"
        print(f"mutant {n}: {why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
