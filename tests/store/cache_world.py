"""Real caches for the tests of orchestrator/store (orch cache du|gc): made
by running orch on the stand-in tree (tests/data/minikernel builds in
seconds; the stand-in guest answers from the built image), then read,
aged and trimmed. Plain helpers, no fixtures: the fixtures are conftest's
(`env`: orch from this checkout with its own ORCH_CACHE; `mini`: the tree)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from helpers import IRQ_TEST, orch, orch_standin, series

KINDS = ("trees", "work", "kernels", "kselftests", "results", "checks")


def one_series(mini: Path, tmp_path: Path, name: str, value: int = 1) -> Path:
    """A one-patch series on the stand-in tree adding `name`.c."""
    return series(mini, tmp_path, name, [(f"mini: add {name}", {
        f"{name}.c": f"int {name}(void)\n{{\n\treturn {value};\n}}\n"})])


def run_series(tmp_path: Path, env: dict, mini: Path, mbox: Path, rd: str, *extra: str,
               harness: bool = False) -> subprocess.CompletedProcess:
    """`orch test` of `mbox` on the stand-in tree, config base, one guest test
    booted by the stand-in guest: kernels, kept results and the workspace land
    in env's ORCH_CACHE."""
    return orch_standin(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox),
                        "--tree", str(mini), "--config", "base", "--guest-test", IRQ_TEST,
                        "--run-dir", str(tmp_path / rd), *extra, harness=harness)


def cache_cmd(env: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return orch(env, tmp_path, "cache", *args)


def gc_json(env: dict, tmp_path: Path, *args: str) -> dict:
    r = cache_cmd(env, tmp_path, "gc", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def entries(cache: Path) -> dict[str, list[str]]:
    out = {}
    for k in KINDS:
        d = cache / k
        out[k] = sorted(os.listdir(d)) if d.is_dir() else []
    return out


def stamp(cache: Path, kind: str, key: str, seconds_ago: float) -> None:
    """Make the entry's last use `seconds_ago` (its lock file's mtime, which
    every use() sets)."""
    lock = cache / "locks" / kind / key
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    t = time.time() - seconds_ago
    os.utime(lock, (t, t))


def du(path: Path) -> int:
    """What `du -sx --block-size=1` says of `path`."""
    r = subprocess.run(["du", "-sx", "--block-size=1", str(path)], capture_output=True,
                       text=True, check=True)
    return int(r.stdout.split()[0])


def removed(report: dict) -> list[str]:
    return [f"{d['kind']}/{d['key']}" for d in report["removed"]]


def kept(report: dict) -> dict[str, str]:
    return {f"{d['kind']}/{d['key']}": d["why"] for d in report["kept"]}
