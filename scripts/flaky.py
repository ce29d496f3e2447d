#!/usr/bin/env python3
"""Is the guest suite solid? Run it N times in one boot per kernel and count
each test's outcomes (not in CI: under TCG the whole suite ten times is
most of an hour).

    .venv/bin/python scripts/flaky.py [--repeat 10] [--config base] [--mbox PORT]
        [--run-dir DIR] [--guest-test ID ...]

Runs `orch test --repeat N` (the baseline and the patched kernel each boot
once and run every selected test N times), then prints a Markdown table:
test, its outcomes on each side, and FLAKY where they differ. Exit status:
0 when no test is FLAKY on either side, 1 otherwise, orch's own status when
the run did not get as far as a verdict.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PORT = REPO / "patches" / "blk-dontcache-v3-port-7.2.13.mbox"


def counts(test: dict) -> str:
    c = Counter(test.get("outcomes") or [test["status"]])
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items()))


def table(rec: dict) -> tuple[list[str], int]:
    lines, flaky = [], 0
    for cfg in rec["configs"]:
        sides = {s: {t["name"]: t for t in cfg[s].get("tests", [])}
                 for s in ("baseline", "patched")}
        lines += [f"config {cfg['name']}, {rec.get('repeat', '?')} runs per test in one boot:",
                  "", "| test | baseline | patched |", "|---|---|---|"]
        for name in rec.get("expected_tests", []):
            row = []
            for s in ("baseline", "patched"):
                t = sides[s].get(name)
                if t is None:
                    row.append("-")
                    continue
                mark = " **FLAKY**" if t["status"] == "FLAKY" else ""
                flaky += bool(mark)
                row.append(counts(t) + mark)
            lines.append(f"| `{name.split('/', 1)[-1]}` | {row[0]} | {row[1]} |")
        lines.append("")
    return lines, flaky


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--config", default="base")
    ap.add_argument("--mbox", type=Path, default=PORT)
    ap.add_argument("--run-dir", type=Path, default=REPO / "orch-runs" / "flaky")
    ap.add_argument("--guest-test", action="append", default=[])
    ap.add_argument("--guest-timeout", type=float, default=5400)
    a = ap.parse_args()
    argv = [sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode", "--mbox",
            str(a.mbox), "--config", a.config, "--repeat", str(a.repeat), "--rerun",
            "--guest-timeout", str(a.guest_timeout), "--run-dir", str(a.run_dir)]
    for t in a.guest_test:
        argv += ["--guest-test", t]
    r = subprocess.run(argv, cwd=REPO)
    try:
        rec = json.loads((a.run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return r.returncode or 5
    if not rec.get("expected_tests") or r.returncode not in (0, 1):
        print(f"orch exited {r.returncode}: {rec.get('error')}", file=sys.stderr)
        return r.returncode
    rec["repeat"] = a.repeat
    lines, flaky = table(rec)
    print("\n".join(lines))
    print(f"{flaky} flaky test(s)")
    return 1 if flaky else 0


if __name__ == "__main__":
    sys.exit(main())
