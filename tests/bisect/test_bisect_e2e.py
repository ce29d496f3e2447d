"""orch bisect and `git bisect run orch check` on the real kernel (TCG here).

The stack, on Debian's 7.2.13: the RFC v3 port (2 patches), a patch that
breaks the IRQ-completion eviction test (tests/data/patches/
bisect-breaks-irq-eviction.mbox: the work-only-when-batch-full mutant as its
own commit), then an unrelated commit (a Documentation file). Good is the
port's head: the eviction tests fail on bare 7.2.13.

What this costs a cold CI run: the port and the mutant kernels are the ones
test_kernel_e2e.py and test_mutants_e2e.py build and boot with the same
selection, so they are shared; new are the top commit's build and boot and
the two confirmation boots. The top differs from the breaking commit only
in Documentation/, so Kbuild relinks nothing between them: the same image,
booted once (results are kept per image).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import IRQ_TEST, REPO, SHORT_SELECTION, bisect_stack, run_json, stack_git

from orchestrator.core.paths import cache_dir
from orchestrator.source import debsrc

pytestmark = pytest.mark.slow


def selection_args() -> list[str]:
    return [a for t in SHORT_SELECTION for a in ("--guest-test", t)]


def test_bisect_names_the_breaking_patch_and_git_bisect_run_agrees(tmp_path):
    debian = debsrc.import_tree().path
    # A plain clone of the stack: what a developer has.
    stack = tmp_path / "stack"
    ids = bisect_stack(debian, stack)
    port, breaking, top = ids["port"], ids["breaking"], ids["top"]

    rd = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "bisect", "--good", port,
                        "--bad", top, "--config", "base", "--run-dir", str(rd),
                        *selection_args()], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = run_json(rd)
    b = rec["bisect"]
    assert b["first_bad"]["commit"] == breaking, b
    assert b["first_bad"]["subject"].startswith("filemap: kick the dropbehind worker")
    assert b["first_bad"]["author"] == "Orch Tests <orch-tests@localhost>"
    roles = [s["role"] for s in b["steps"]]
    assert roles[:2] == ["good end", "bad end"] and roles.count("step") <= 2, roles
    assert roles[-2:] == ["confirm", "confirm"]
    by_role = {}
    for s in b["steps"]:
        by_role.setdefault(s["role"], []).append(s)
    # The breaking commit fails the IRQ test with the bug's signature; the
    # task-completion control passes.
    (step,) = [s for s in b["steps"] if s["role"] == "step" and s["commit"] == breaking]
    assert step["outcome"] == "bad" and step["tests"][IRQ_TEST] == "FAIL", step
    assert "still cached" in step["reason"]
    # The unrelated commit compiled nothing and its kernel was booted.
    (bad_end,) = by_role["bad end"]
    assert bad_end["outcome"] == "bad" and bad_end["build"] in ("built", "cached")
    # The banner of each booted kernel was checked against its build (a
    # wrong kernel would be an infrastructure abort, status 5).
    assert b["reproduce"].startswith(f"orch test --tree {debian} --range {port}..{breaking}")
    print(json.dumps([(s["role"], s["commit"][:12], s["build"], s["build_seconds"], s["boot"],
                       s.get("boot_seconds")) for s in b["steps"]]))

    # The same with git bisect run in the plain clone (orch check builds in
    # its own worktree of the clone: the kernels are cached by source tree).
    # --no-checkout: orch check tests BISECT_HEAD, and a kernel checkout per
    # step would cost half a minute for nothing.
    stack_git(stack, "bisect", "start", "--no-checkout", top, port)
    run = subprocess.run(["git", "-C", str(stack), "bisect", "run", sys.executable, "-m",
                          "orchestrator.cli", "check", "--config", "base", *selection_args()],
                         env=env, capture_output=True, text=True, timeout=3600)
    assert f"{breaking} is the first bad commit" in run.stdout, run.stdout + run.stderr[-3000:]
    # the clone's worktree in orch's cache is a full kernel checkout: not kept
    for ws in (cache_dir() / "work").glob("stack-*"):
        shutil.rmtree(ws, ignore_errors=True)
