"""A path the user names that cannot be written (or read) is bad input: one
line naming the flag, status 2 (`orch check`: 128, git bisect's "stop"),
before any work. Real `orch` subprocesses; /proc (where not even root can
create anything) and existing files stand for every unwritable place.

Before: `internal error: FileNotFoundError` (status 5) after a run
directory had been made, or after lore had been asked for the night's plan.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import MINI, PORT, REPO, V3_COVER, git, orch

PROC = Path("/proc/orch-no-such-dir")


@dataclass(frozen=True)
class World:
    root: Path
    env: dict
    tree: Path
    toml: Path
    plan: Path
    job: str         # the plan's baseline job
    series_job: str  # and a series job (the one --import is for)
    afile: Path      # an existing regular file
    adir: Path       # an existing directory


@pytest.fixture(scope="module")
def world(tmp_path_factory, lore_server) -> World:
    """A stand-in tree, a NIGHTLY.toml on the loopback lore, and a real plan
    (`orch plan`) for `orch job` and `orch merge` to be given."""
    root = tmp_path_factory.mktemp("paths")
    home = root / "home"
    home.mkdir()
    (home / "gitconfig").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ORCH_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
               GIT_CONFIG_NOSYSTEM="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", PYTHONPATH=str(REPO),
               ORCH_CACHE=str(root / "cache"), ORCH_CONFIG=os.devnull)
    tree = root / "tree"
    shutil.copytree(MINI, tree)
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "mini: base")
    (tree / "extra.c").write_text("int extra;\n")
    git(tree, "add", "extra.c")
    git(tree, "commit", "-q", "-m", "mini: extra")   # something to bisect
    toml = root / "nightly.toml"
    toml.write_text(f'lore_url = "{lore_server.url}"\nconfigs = ["base"]\n'
                    f'[[series]]\nmsgid = "{V3_COVER}"\n'
                    f'[[tree]]\npath = "{tree}"\nref = "main"\nlabel = "mini"\n')
    plan = root / "plan"
    r = orch(env, root, "plan", str(toml), "--out", str(plan), "--night", "2026-11-27")
    assert r.returncode == 0, r.stderr
    jobs = {j["kind"]: j["id"] for j in json.loads((plan / "jobs.json").read_text())["jobs"]}
    (root / "afile").write_text("a file where a directory is wanted\n")
    (root / "adir").mkdir()
    return World(root, env, tree, toml, plan, jobs["baseline"], jobs["series"], root / "afile",
                 root / "adir")


def _test(w: World, *extra: str) -> list[str]:
    return ["test", "--offline-mode", "--mbox", str(PORT), "--tree", str(w.tree), *extra]


def _bisect(w: World, *extra: str) -> list[str]:
    return ["bisect", "--build", "--tree", str(w.tree), "--good", "HEAD~1", "--bad", "HEAD",
            *extra]


def _check(w: World, *extra: str) -> list[str]:
    return ["check", "--build", "--tree", str(w.tree), *extra]


def _nightly(w: World, *extra: str) -> list[str]:
    return ["nightly", str(w.toml), "--night", "2026-11-28", *extra]


def _plan(w: World, *extra: str) -> list[str]:
    return ["plan", str(w.toml), "--night", "2026-11-28", *extra]


def _job(w: World, *extra: str, plan: str | None = None, series: bool = False) -> list[str]:
    return ["job", plan or str(w.plan), w.series_job if series else w.job, *extra]


def _merge(w: World, *extra: str) -> list[str]:
    return ["merge", "--plan", str(w.plan), *extra]


# (id, argv, extra environment, the error line's start, status). {P} is
# under /proc, {F} an existing file, {D} an existing directory, {R} a run
# directory or --out that must not appear, {C} a config.toml naming {P} as
# its cache; None in the environment: unset.
CASES = [
    ("test-run-dir-proc", lambda w: _test(w, "--run-dir", "{P}"), {},
     "--run-dir {P}: cannot create a directory there: /proc takes no new directory: ", 2),
    ("test-run-dir-file", lambda w: _test(w, "--run-dir", "{F}"), {},
     "--run-dir {F}: not a directory", 2),
    ("test-run-dir-under-file", lambda w: _test(w, "--run-dir", "{F}/x"), {},
     "--run-dir {F}/x: cannot create a directory there: {F} is not a directory", 2),
    ("test-json-proc", lambda w: _test(w, "--run-dir", "{R}", "--json", "{P}/run.json"), {},
     "--json {P}/run.json: cannot write a file there", 2),
    ("test-json-dir", lambda w: _test(w, "--run-dir", "{R}", "--json", "{D}"), {},
     "--json {D}: a directory, not a file", 2),
    ("test-json-under-file", lambda w: _test(w, "--run-dir", "{R}", "--json", "{F}/x"), {},
     "--json {F}/x: cannot write a file there: {F} is not a directory", 2),
    ("test-cache-proc", lambda w: _test(w, "--run-dir", "{R}", "--cache", "{P}"), {},
     "--cache {P}: cannot create", 2),
    ("test-cache-file", lambda w: _test(w, "--run-dir", "{R}", "--cache", "{F}"), {},
     "--cache {F}: not a directory", 2),
    ("test-env-cache-proc", lambda w: _test(w, "--run-dir", "{R}"), {"ORCH_CACHE": "{P}"},
     "ORCH_CACHE={P}: cannot create", 2),
    ("test-env-cache-file", lambda w: _test(w, "--run-dir", "{R}"), {"ORCH_CACHE": "{F}"},
     "ORCH_CACHE={F}: not a directory", 2),
    ("test-config-cache-proc", lambda w: _test(w, "--run-dir", "{R}"),
     {"ORCH_CONFIG": "{C}", "ORCH_CACHE": None},
     "{C}: cache {P}: cannot create", 2),
    ("bisect-run-dir-proc", lambda w: _bisect(w, "--run-dir", "{P}"), {},
     "--run-dir {P}: cannot create", 2),
    ("bisect-run-dir-file", lambda w: _bisect(w, "--run-dir", "{F}"), {},
     "--run-dir {F}: not a directory", 2),
    ("bisect-resume-file", lambda w: ["bisect", "--resume", "{F}"], {},
     "--resume {F}: not a directory", 2),
    ("bisect-cache-proc", lambda w: _bisect(w, "--run-dir", "{R}", "--cache", "{P}"), {},
     "--cache {P}: cannot create", 2),
    ("check-run-dir-proc", lambda w: _check(w, "--run-dir", "{P}"), {},
     "--run-dir {P}: cannot create", 128),
    ("check-run-dir-file", lambda w: _check(w, "--run-dir", "{F}"), {},
     "--run-dir {F}: not a directory", 128),
    ("check-cache-file", lambda w: _check(w, "--run-dir", "{R}", "--cache", "{F}"), {},
     "--cache {F}: not a directory", 128),
    ("check-env-cache-proc", lambda w: _check(w, "--run-dir", "{R}"), {"ORCH_CACHE": "{P}"},
     "ORCH_CACHE={P}: cannot create", 128),
    ("nightly-out-proc", lambda w: _nightly(w, "--out", "{P}"), {},
     "--out {P}: cannot create", 2),
    ("nightly-out-file", lambda w: _nightly(w, "--out", "{F}"), {},
     "--out {F}: not a directory", 2),
    ("nightly-cache-proc", lambda w: _nightly(w, "--out", "{R}", "--cache", "{P}"), {},
     "--cache {P}: cannot create", 2),
    ("nightly-env-cache-file", lambda w: _nightly(w, "--out", "{R}"), {"ORCH_CACHE": "{F}"},
     "ORCH_CACHE={F}: not a directory", 2),
    ("plan-out-proc", lambda w: _plan(w, "--out", "{P}"), {}, "--out {P}: cannot create", 2),
    ("plan-out-file", lambda w: _plan(w, "--out", "{F}"), {}, "--out {F}: not a directory", 2),
    ("plan-cache-proc", lambda w: _plan(w, "--out", "{R}", "--cache", "{P}"), {},
     "--cache {P}: cannot create", 2),
    ("plan-history-dir", lambda w: _plan(w, "--out", "{R}", "--history", "{D}"), {},
     "--history {D}: not a regular file", 2),
    ("job-out-proc", lambda w: _job(w, "--out", "{P}"), {}, "--out {P}: cannot create", 2),
    ("job-out-file", lambda w: _job(w, "--out", "{F}"), {}, "--out {F}: not a directory", 2),
    ("job-import-file", lambda w: _job(w, "--out", "{R}", "--import", "{F}", series=True), {},
     "--import {F}: not a directory", 2),
    ("job-cache-proc", lambda w: _job(w, "--out", "{R}", "--cache", "{P}"), {},
     "--cache {P}: cannot create", 2),
    ("job-plan-file", lambda w: _job(w, "--out", "{R}", plan="{F}"), {},
     "PLAN_DIR {F}: not a directory", 2),
    ("merge-out-proc", lambda w: _merge(w, "--out", "{P}"), {}, "--out {P}: cannot create", 2),
    ("merge-out-file", lambda w: _merge(w, "--out", "{F}"), {}, "--out {F}: not a directory", 2),
    ("merge-plan-file", lambda w: ["merge", "--plan", "{F}", "--out", "{R}"], {},
     "--plan {F}: not a directory", 2),
]


@pytest.mark.parametrize("argv, env, says, status", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_an_unwritable_path_is_one_line_and_no_work(world, lore_server, tmp_path, argv, env,
                                                     says, status):
    run_dir = tmp_path / "run"
    config = tmp_path / "config.toml"
    config.write_text(f'cache = "{PROC}"\n')
    names = {"P": PROC, "F": world.afile, "D": world.adir, "R": run_dir, "C": config}
    e = {**world.env, **{k: v.format(**names) for k, v in env.items() if v is not None}}
    e = {k: v for k, v in e.items() if env.get(k, "") is not None}
    asked = len(lore_server.requests)
    r = orch(e, tmp_path, *(a.format(**names) for a in argv(world)), timeout=120)
    assert r.returncode == status, r.stderr
    # One line, the whole of stderr, naming the flag and the path.
    assert r.stderr.startswith(f"orch: error: {says.format(**names)}"), r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == "", r.stderr
    # Before any work: no run directory (nor --out), lore not asked.
    assert not run_dir.exists()
    assert len(lore_server.requests) == asked
    assert not PROC.exists()
