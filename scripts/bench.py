#!/usr/bin/env python3
"""Benchmark: orch against the same work done by hand, on this machine.

One run measures, side by side:
  by-hand  olddefconfig + make (baseline), git am, make (patched), vng both:
           what a developer would type instead of orch (plain gcc, no ccache);
  cold     orch test with empty caches (no ccache, no kernels, no worktree);
  warm     the same series again (both kernels' results are kept: no boot);
  warm_one   the same again with --rerun-baseline (the baseline boots);
  warm_both  the same again with --rerun (both boot);
  second   another series on the same base.
  bisect_steps  steps orch bisect takes for N commits against ceil(log2 N) + 1, on the
                stand-in tree (real git bisect and builds; the stand-in guest of the tests)
  bisect        the real bisect of tests/test_bisect_e2e.py's stack in orch's own cache,
                then the same bisect again (nothing to build or boot)
  sandbox       the baseline build in the allowlisted view against the sandbox before
                it (/ read-only, environment inherited), same .config, warm ccache; and
                the same per process (ccache-hit compiles, execs), without a build's noise
  nightly       orch nightly with 1, 2 and 3 series (the port and two mutants, posted on a
                loopback lore) on one tree (the 7.2.13 import), config base, the short
                selection, each night with its own history in orch's own cache: how a
                night's time grows per series (one baseline boot a night, then per
                series its build and one boot)
  layer         the port's patched build (config base) in a throwaway copy-on-write
                layer over the baseline's build directory and ccache (issue 25) against
                the same build in that directory itself (before issue 25): the same
                baseline state restored before each build, ccache read-only (so no round
                serves the next), rounds alternating ABBA
  kselftests    in orch's own cache, with the port's kernels already built (a warm
                baseline): both kernels booted (--rerun) with the short selection alone,
                then with --kselftest cachestat,mincore, their builds removed first (the
                difference is what they add: two targets built per kernel, and run in
                each boot), then that again without --rerun (nothing built or booted)
and writes the figures to a JSON file (default bench/results.json).

  .venv/bin/python scripts/bench.py [--tree TREE] [--out FILE] [--only STEP...]

The tree is the git tree orch imported (Debian's linux-source-7.2) unless
--tree names another. It takes about 45 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.core import paths, proc
from orchestrator.core.models import Kernel
from orchestrator.guest import vm
from orchestrator.kernel import build, kcache, kconfig
from orchestrator.source import debsrc

FIRST = REPO / "patches" / "blk-dontcache-v3-port-7.2.13.mbox"
SECOND = REPO / "patches" / "blk-dontcache-v2-port-7.2.13.mbox"
CONFIG = "base"


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def sh(argv, cwd=None, env=None, log=None, timeout=4 * 3600):
    r = proc.run(argv, cwd=cwd, env=env, log=log, timeout=timeout, append=True)
    if not r.ok:
        sys.exit(f"bench: {' '.join(map(str, argv))} failed (see {log})")
    return r


def base_commit(mbox: Path) -> str:
    for line in mbox.read_text(errors="replace").splitlines():
        if line.startswith("base-commit: "):
            return line.split()[1]
    sys.exit(f"bench: {mbox} names no base-commit")


def by_hand(tree: Path, work: Path) -> dict:
    """The raw commands, in the order a developer types them."""
    BASE = base_commit(FIRST)
    src, bld, log = work / "src", work / "build", work / "by-hand.log"
    steps: dict[str, float] = {}
    env = {"KBUILD_BUILD_USER": "orch", "KBUILD_BUILD_HOST": "orch", "LC_ALL": "C"}
    kc = kconfig.load(CONFIG)
    make = ["make", f"O={bld}", "ARCH=x86_64"]
    t0 = time.monotonic()
    steps["worktree"], _ = timed(lambda: sh(["git", "-C", tree, "worktree", "add", "--detach",
                                             src, BASE], log=log))

    def configure():
        sh([*make, kc.start], cwd=src, env=env, log=log)
        with open(bld / ".config", "a") as f:
            f.write(kc.fragment)
        sh([*make, "olddefconfig"], cwd=src, env=env, log=log)
    steps["configure"], _ = timed(configure)
    steps["baseline_build"], _ = timed(lambda: sh([*make, f"-j{build.jobs()}", "bzImage"],
                                                  cwd=src, env=env, log=log))
    shutil.copy2(bld / build.IMAGE, work / "baseline.bzImage")
    am_env = {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    # --empty=drop: the mbox starts with the cover letter, as posted.
    steps["apply"], _ = timed(lambda: sh(["git", "-C", src, "am", "--empty=drop", FIRST],
                                         env=am_env, log=log))
    steps["patched_build"], _ = timed(lambda: sh([*make, f"-j{build.jobs()}", "bzImage"],
                                                 cwd=src, env=env, log=log))
    shutil.copy2(bld / build.IMAGE, work / "patched.bzImage")
    for side in ("baseline", "patched"):
        k = Kernel(CONFIG, work / f"{side}.bzImage", bld / ".config", False, 0, None)
        steps[f"{side}_boot_tests"], g = timed(lambda: vm.run_tests(
            k, work / "results" / side, work / f"console-{side}.log"))
        if not g.ok:
            sys.exit(f"bench: by-hand {side} boot failed: {g.error}")
    total = time.monotonic() - t0
    sh(["git", "-C", tree, "worktree", "remove", "--force", src], log=log)
    return {"seconds": round(total, 1), "steps": {k: round(v, 1) for k, v in steps.items()}}


def orch(tree: Path, cache: Path, mbox: Path, run_dir: Path, *extra: str) -> dict:
    env = {**os.environ, "ORCH_CACHE": str(cache)}
    argv = [sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode", "--tree",
            str(tree), "--mbox", str(mbox), "--config", CONFIG, "--run-dir", str(run_dir), *extra]
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    total = time.monotonic() - t0
    rec = json.loads((run_dir / "run.json").read_text())
    c = rec["configs"][0]
    # Only the boots this run did: kept baseline results cost no boot.
    booted = [s for s in ("baseline", "patched") if not c[s]["boot"].get("cached")]
    boots = sum(c[s]["boot"].get("seconds", 0) for s in booted)
    return {"seconds": round(total, 1), "exit": r.returncode, "verdict": rec["verdict"],
            "booted": booted, "boot_tests_seconds": round(boots, 1),
            "builds": {s: {k: c[s]["build"].get(k) for k in
                           ("status", "seconds", "compiled", "ccache")}
                       for s in ("baseline", "patched")}}


def touched(mbox: Path) -> list[str]:
    files = set()
    for line in mbox.read_text(errors="replace").splitlines():
        if line.startswith("+++ b/"):
            files.add(line[6:])
    return sorted(files)


def bisect_steps(work: Path) -> dict:
    """Steps taken against the bound, for several N and break positions."""
    sys.path.insert(0, str(REPO / "tests"))
    import standin_guest  # noqa: E402

    from orchestrator import cli
    standin_guest.install_globally()
    os.environ["ORCH_CACHE"] = str(work / "cache")
    out = []
    for n in (2, 5, 16, 33, 100):
        for where in sorted({1, n // 3, n - 1} - {0}):
            repo = work / f"tree-{n}-{where}"
            shutil.copytree(REPO / "tests" / "data" / "minikernel", repo)
            env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
                   "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
            g = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True,  # noqa: E731
                                          capture_output=True, env=env)
            g("init", "-q")
            for i in range(n + 1):
                text = (f'const char orch_guest_{i}[] = "ORCH-GUEST:FAIL";\n' if i == where
                        else f"int c{i}(void) {{ return {i}; }}\n")
                (repo / f"c{i}.c").write_text(text)
                g("add", "-A")
                g("commit", "-q", "-m", f"commit {i}")
            rd = work / f"run-{n}-{where}"
            t0 = time.monotonic()
            code = cli.main(["bisect", "--tree", str(repo), "--good", "HEAD~" + str(n),
                             "--bad", "HEAD", "--config", CONFIG, "--run-dir", str(rd),
                             "--guest-test", "guest_tests/test_blockdev_dontcache.py"])
            rec = json.loads((rd / "run.json").read_text())["bisect"]
            out.append({"commits": n, "break_at": where, "exit": code,
                        "steps": sum(s["role"] == "step" for s in rec["steps"]),
                        "bound": rec["max_steps"], "seconds": round(time.monotonic() - t0, 1)})
    return {"runs": out, "within_bound": all(r["steps"] <= r["bound"] for r in out)}


def bisect_real(work: Path) -> dict:
    """The real stack's bisect in orch's own cache (its kernels are the
    test suite's), then the same bisect again."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import SHORT_SELECTION, bisect_stack  # noqa: E402
    debian = debsrc.import_tree(debsrc.DEFAULT_PACKAGE).path
    ids = bisect_stack(debian, work / "stack")
    out = {}
    for name in ("first", "again"):
        rd = work / f"bisect-{name}"
        argv = [sys.executable, "-m", "orchestrator.cli", "bisect", "--good", ids["port"],
                "--bad", ids["top"], "--config", CONFIG, "--run-dir", str(rd)]
        for t in SHORT_SELECTION:
            argv += ["--guest-test", t]
        t0 = time.monotonic()
        r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        rec = json.loads((rd / "run.json").read_text())["bisect"]
        out[name] = {"seconds": round(time.monotonic() - t0, 1), "exit": r.returncode,
                     "found": (rec.get("first_bad") or {}).get("commit") == ids["breaking"],
                     "steps": [{k: s.get(k) for k in ("role", "build", "build_seconds", "boot",
                                                      "boot_seconds", "outcome")}
                               for s in rec["steps"]],
                     "built": sum(s["build"] == "built" for s in rec["steps"]),
                     "booted": sum(s.get("boot") == "booted" for s in rec["steps"])}
    return out


def _old_sandbox(argv, writable, readable, cwd) -> list[str]:
    """The build sandbox before issue 13, for comparison: the host's / read-only,
    the environment inherited."""
    out = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--tmpfs", "/tmp", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--die-with-parent"]
    for p in readable:
        out += ["--ro-bind", str(p), str(p)]
    for p in writable:
        out += ["--bind", str(p), str(p)]
    return out + ["--chdir", str(cwd), "--", *map(str, argv)]


def sandbox_build(tree: Path, work: Path, rounds: int) -> dict:
    """The baseline build (config base) in today's allowlisted view against
    the sandbox before it (/ read-only, environment inherited): the same
    source, the same .config, a fresh build directory each time, orch's
    compiler wrapper and a warm ccache of its own (the first, unmeasured
    build warms it). ccache hits make each compile short, so any cost of
    the view per process would show most here. Rounds alternate ABBA."""
    from orchestrator.core import sandbox
    from orchestrator.kernel import buildtree, ccache_guard
    src, log = work / "src", work / "sandbox-build.log"
    work.mkdir(parents=True, exist_ok=True)
    sh(["git", "-C", tree, "worktree", "add", "--detach", src, base_commit(FIRST)], log=log)
    kc = kconfig.load(CONFIG)
    # With --sandbox-dir, `work` is kept across runs: its ccache, warmed by
    # the first run's warm-up (a full compile, about 15 minutes here), hits
    # again only for the same source path, so the worktree is made at the
    # same place each time.
    cc = work / "ccache"
    cold = not cc.is_dir() or not any(cc.iterdir())
    cc.mkdir(parents=True, exist_ok=True)
    env = {**build.build_env(), "CCACHE_DIR": str(cc)}
    cfg = work / "config"

    def one(variant: str, n: int) -> float:
        bld = work / f"build-{variant}-{n}"
        shutil.rmtree(bld, ignore_errors=True)
        bld.mkdir()
        menv = {**env, "TMPDIR": "/tmp"}
        make = build._maker(buildtree.BuildDir(bld, work / f"meta-{variant}-{n}"),
                            build.BuildOptions(), menv)   # orch's own sandboxed make
        if not cfg.exists():
            shutil.copy2(kconfig.configure(src, bld, kc, log, make=make), cfg)
        else:
            shutil.copy2(cfg, bld / ".config")
        argv = [*kconfig.make_base(bld), f"CC={ccache_guard.cc()}", "bzImage"]
        t0 = time.monotonic()
        if variant == "view":
            r = make(argv, log, src, timeout=4 * 3600)
        else:
            # The same PATH as the view's: Kconfig (syncconfig runs in a fresh
            # build directory) must see the same toolchain, or the .config and
            # so every ccache key would differ (rustc in ~/.cargo/bin does).
            ro, rw = (src, ccache_guard.GUARD.parent), (bld, cc)
            r = proc.run(_old_sandbox([*argv, f"-j{build.jobs()}"], rw, ro, src), cwd=src,
                         log=log, append=True, timeout=4 * 3600,
                         env={**menv, "PATH": sandbox.clean_env()["PATH"]})
        seconds = time.monotonic() - t0
        if not r.ok:
            sys.exit(f"bench: {variant} build failed (see {log})")
        shutil.rmtree(bld, ignore_errors=True)
        return round(seconds, 1)
    warm = one("view", 0) if cold else None
    order = [v for _ in range(rounds) for v in ("old", "view", "view", "old")][:2 * rounds]
    times: dict[str, list[float]] = {"old": [], "view": []}
    for n, v in enumerate(order, 1):
        times[v].append(one(v, n))
    mean = {v: sum(t) / len(t) for v, t in times.items()}
    sh(["git", "-C", tree, "worktree", "remove", "--force", src], log=log)
    return {"warm_up_seconds": warm, "seconds": times,
            "mean_seconds": {v: round(m, 1) for v, m in mean.items()},
            "view_vs_old": round(mean["view"] / mean["old"], 4),
            "note": "full baseline bzImage, config base, same .config, fresh build directory, "
                    "warm ccache, -j" + str(build.jobs())}


def sandbox_exec(work: Path, rounds: int = 5) -> dict:
    """What the view costs per process, without a build's noise: 300
    compiles that ccache serves and 3000 execs of /bin/true, in the view and
    in the old sandbox, alternating; the fastest of each."""
    from orchestrator.core import sandbox
    work.mkdir(parents=True, exist_ok=True)
    (work / "a.c").write_text("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
                              "int f(int x) { return 2 * x; }\n")
    env = {**build.build_env(), "CCACHE_DIR": str(work / "ccache"), "TMPDIR": "/tmp"}
    script = ("i=0; while [ $i -lt 300 ]; do ccache gcc -c a.c -o a.o; i=$((i+1)); done; "
              "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done")
    path = sandbox.clean_env()["PATH"]
    times: dict[str, list[float]] = {"old": [], "view": []}
    for _ in range(rounds):
        for v in ("old", "view"):
            t0 = time.monotonic()
            if v == "view":
                r = sandbox.run(["sh", "-c", script], sandbox.View(writable=(work,), env=env), work)
            else:
                r = proc.run(_old_sandbox(["sh", "-c", script], [work], [], work), cwd=work,
                             env={**env, "PATH": path})
            if not r.ok:
                sys.exit(f"bench: sandbox_exec {v} failed: {r.output[-300:]}")
            times[v].append(round(time.monotonic() - t0, 2))
    return {"seconds": times, "fastest": {v: min(t) for v, t in times.items()},
            "view_vs_old": round(min(times["view"]) / min(times["old"]), 4),
            "note": "300 ccache-hit compiles + 3000 execs of /bin/true per run"}


def nightly_growth(work: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import PATCHES, PORT, SHORT_SELECTION  # noqa: E402
    from lore_mails import day, post  # noqa: E402
    from lore_server import LoreServer  # noqa: E402
    tree = debsrc.import_tree(debsrc.DEFAULT_PACKAGE).path
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    lore = work / "lore"
    lore.mkdir(parents=True, exist_ok=True)
    msgids = [post(mbox, lore / f"{name}.mbox", name=name, title=f"bench: {name}", version=1,
                   change_id=f"bench-{name}", base=head, date=day("2026-11-27"))
              for name, mbox in (("port", PORT),
                                 ("cached", PATCHES / "mutant-marks-cached-folios.mbox"),
                                 ("skips", PATCHES / "mutant-worker-skips-first-folio.mbox"))]
    out = {}
    with LoreServer(lore) as srv:
        for n in (1, 2, 3):
            toml = work / f"nightly-{n}.toml"
            toml.write_text(f'lore_url = "{srv.url}/all"\nconfigs = ["{CONFIG}"]\n'
                            f"guest_tests = {json.dumps(SHORT_SELECTION)}\n"
                            + "".join(f'[[series]]\nmsgid = "<{m}>"\n' for m in msgids[:n])
                            + f'[[tree]]\npath = "{tree}"\nref = "HEAD"\n')
            night_out = work / f"out-{n}"
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "nightly", str(toml),
                                "--out", str(night_out), "--night", "2026-11-28"], cwd=REPO,
                               capture_output=True, text=True)
            seconds = round(time.monotonic() - t0, 1)
            night = json.loads((night_out / "nights" / "2026-11-28" / "night.json").read_text())
            out[str(n)] = {
                "seconds": seconds, "exit": r.returncode,
                "boots": sum(v for c in night["cells"] for v in c["booted"].values()),
                "builds": sum(v for c in night["cells"] for v in c["built"].values()),
                "cells": [{k: c[k] for k in ("series", "status", "build_seconds",
                                             "boot_seconds", "built", "booted")}
                          for c in night["cells"]]}
    if all(str(n) in out for n in (1, 2, 3)):
        out["per_series_seconds"] = round((out["3"]["seconds"] - out["1"]["seconds"]) / 2, 1)
        out["fixed_seconds"] = round(out["1"]["seconds"] - out["per_series_seconds"], 1)
    return out


def shared_ccache(tree: Path, work: Path) -> dict:
    """Two runners and one redis-server (issue 15): runner 1, with an empty
    orch cache, builds the baseline (config base) and fills the shared
    ccache as a baseline job does; runner 2, with another empty cache (so
    its worktree and build directory are at other paths), builds the same
    tree and config as a series job does, reading the shared ccache only.
    Its remote hit rate is the share of its compiles the shared cache
    answered."""
    from orchestrator.core import paths
    from orchestrator.core.progress import Progress
    from orchestrator.kernel import remote_ccache
    from orchestrator.run import builds
    from orchestrator.source import tree as treemod
    work.mkdir(parents=True, exist_ok=True)
    acl = (REPO / "examples" / "redis" / "orch-ccache.acl").read_text()
    (work / "users.acl").write_text(acl.replace("CHANGE-ME-WRITER", "w")
                                    .replace("CHANGE-ME-READER", "r")
                                    + "user admin on >a ~* &* +@all\n")
    sock = work / "redis.sock"
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                               "--unixsocketperm", "777", "--aclfile", str(work / "users.acl"),
                               "--save", "", "--appendonly", "no", "--dir", str(work)],
                              stdout=open(work / "redis.log", "w"), stderr=subprocess.STDOUT)

    def admin(*args: str) -> str:
        return subprocess.run(["redis-cli", "-s", str(sock), "--user", "admin", "--pass", "a",
                               "--no-auth-warning", *args], capture_output=True, text=True,
                              timeout=60).stdout
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.1)
    os.environ[remote_ccache.WRITE_ENV] = f"redis+unix://writer:w@localhost{sock}"
    os.environ[remote_ccache.READ_ENV] = f"redis+unix://reader:r@localhost{sock}"
    commit = base_commit(FIRST)
    kc = kconfig.load(CONFIG)

    def runner(name: str, writes: bool) -> dict:
        os.environ["ORCH_CACHE"] = str(work / name)
        paths.use_cache(None)
        (remote_ccache.allow_writes if writes else remote_ccache.forbid_writes)()
        t = treemod.open_tree(tree)
        ws = treemod.workspace(t)
        t0 = time.monotonic()
        try:
            src = builds.Source(commit, treemod.tree_id(ws.src, commit), "baseline", "baseline")
            (k,) = builds.build_all(ws, [kc], src, work / name / "logs", builds.BuildSettings(
                build.jobs(), True, build.BUILD_TIMEOUT), Progress()).values()
        finally:
            ws.lock.release()
        seconds = round(time.monotonic() - t0, 1)
        sh(["git", "-C", tree, "worktree", "remove", "--force", ws.src])
        return {"seconds": seconds, "compiled": k.compiled, "ccache": k.ccache,
                "work": str(ws.root)}
    try:
        one = runner("runner1", True)
        keys = admin("DBSIZE").strip()
        two = runner("runner2", False)
        mem = [ln for ln in admin("INFO", "memory").splitlines()
               if ln.startswith("used_memory_human:")]
        assert admin("DBSIZE").strip() == keys, "runner 2 wrote to the shared cache"
    finally:
        server.terminate()
        remote_ccache.allow_writes()
        for k in (remote_ccache.WRITE_ENV, remote_ccache.READ_ENV):
            os.environ.pop(k, None)
    return {"runner1_cold": one, "runner2_shared": two, "redis_keys": int(keys),
            "redis_memory": mem[0].split(":", 1)[1] if mem else None,
            "runner2_vs_runner1": round(two["seconds"] / one["seconds"], 3),
            "note": f"config {CONFIG}, baseline of {FIRST.name}'s base commit, both runners "
                    "with empty orch caches on this machine, -j" + str(build.jobs())}


def layer_build(tree: Path, work: Path, rounds: int) -> dict:
    """The port's patched build in a layer against the same build in the
    trusted directory, from the same baseline state each time (see the
    module's docstring). The baseline is orch's own (orch test builds it
    first: a cold cache pays for it once)."""
    from orchestrator.source import tree as treemod
    work.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode",
                        "--mbox", str(FIRST), "--config", CONFIG, "--build-only", "--tree",
                        str(tree), "--run-dir", str(work / "setup")], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: layer: orch test failed: {r.stderr[-500:]}")
    t = treemod.open_tree(tree)
    ws = treemod.workspace(t)
    try:
        base = base_commit(FIRST)
        head = subprocess.run(["git", "-C", ws.src, "rev-parse", "refs/orch/last-patched"],
                              capture_output=True, text=True, check=True).stdout.strip()
        kc = kconfig.load(CONFIG)
        trusted = ws.build_tree(CONFIG, True)
        saved = work / "saved"
        shutil.rmtree(saved, ignore_errors=True)
        saved.mkdir()
        sh(["cp", "-a", trusted.path, saved / "build"])
        sh(["cp", "-a", trusted.meta, saved / "meta"])
        env = build.build_env

        def one(variant: str, mode: str, n: int | None) -> float:
            # Read-only ccache ("hits": the series' objects come from it, so
            # the build is mostly the layer's file operations, its worst
            # case) or none ("compiles": a series' first build).
            extra = {"CCACHE_READONLY": "1"} if mode == "hits" else {"CCACHE_DISABLE": "1"}
            build.build_env = lambda: {**env(), **extra}
            for d in ("build", "meta"):
                dest = trusted.path if d == "build" else trusted.meta
                shutil.rmtree(dest)
                sh(["cp", "-a", saved / d, dest])
            treemod.checkout(ws.src, base)
            treemod.checkout(ws.src, head)   # the series' files dated now, as after git am
            tid = treemod.tree_id(ws.src, head)
            bd = ws.build_tree(CONFIG, False) if variant == "layer" else trusted
            log = work / f"build-{mode}-{variant}-{n}.log"
            t0 = time.monotonic()
            k = build.build(ws.src, bd, kc, tid, log, "patched")
            seconds = time.monotonic() - t0
            shutil.rmtree(k.image.parent)    # not cached: the next round builds too
            ws.close()
            if k.cached:
                sys.exit(f"bench: layer: {variant} found a cached kernel (see {log})")
            return round(seconds, 1)
        # Unmeasured: drops the patched kernel an earlier run kept, and warms
        # the page cache and ccache for both variants alike.
        key = subprocess.run([sys.executable, "-c", "import json,sys; print(json.load(open("
                              "sys.argv[1]))['configs'][0]['patched']['build']['key'])",
                              str(work / "setup" / "run.json")], capture_output=True, text=True,
                             check=True).stdout.strip()
        shutil.rmtree(build.cache_dir() / "kernels" / key, ignore_errors=True)
        one("direct", "hits", None)
        order = [v for _ in range(rounds) for v in ("direct", "layer", "layer", "direct")]
        order = order[:2 * rounds]
        figures = {}
        for mode in ("hits", "compiles"):
            times: dict[str, list[float]] = {"direct": [], "layer": []}
            for n, v in enumerate(order, 1):
                times[v].append(one(v, mode, n))
            mean = {v: sum(x) / len(x) for v, x in times.items()}
            figures[mode] = {"seconds": times,
                             "mean_seconds": {v: round(m, 1) for v, m in mean.items()},
                             "layer_vs_direct": round(mean["layer"] / mean["direct"], 4)}
        build.build_env = env
        for d in ("build", "meta"):          # leave orch's cache as it was
            dest = trusted.path if d == "build" else trusted.meta
            shutil.rmtree(dest)
            sh(["cp", "-a", saved / d, dest])
        shutil.rmtree(saved, ignore_errors=True)
        treemod.checkout(ws.src, base)
    finally:
        ws.lock.release()
    return {**figures,
            "note": "the port's patched build (olddefconfig + bzImage, config base) from the "
                    "baseline's build directory restored each time; hits: ccache read-only "
                    "(the series' objects in it), compiles: ccache off; -j" + str(build.jobs())}


SHORT = ["guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts",
         "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts",
         "guest_tests/test_mixing.py::test_cached_then_dontcache_stays_cached"]


def kselftests(tree: Path, work: Path) -> dict:
    """What --kselftest cachestat,mincore adds to a run whose kernels are
    built (orch's own cache: the real-kernel tests' kernels)."""
    cache = paths.cache_dir()
    short = [a for t in SHORT for a in ("--guest-test", t)]
    out: dict = {"without": orch(tree, cache, FIRST, work / "without", *short, "--rerun")}
    shutil.rmtree(cache / "kselftests", ignore_errors=True)
    for name, extra in (("with", ["--rerun"]), ("again", [])):
        rd = work / name
        out[name] = orch(tree, cache, FIRST, rd, *short, "--kselftest", "cachestat,mincore",
                         *extra)
        c = json.loads((rd / "run.json").read_text())["configs"][0]
        out[name]["kselftest_builds"] = {
            s: [{k: b[k] for k in ("target", "cached", "seconds")}
                for b in c[s]["build"].get("kselftests") or []] for s in ("baseline", "patched")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=Path, help="kernel git tree (default: orch's Debian import)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    ap.add_argument("--only", nargs="*",
                    default=["by_hand", "cold", "warm", "warm_one", "warm_both", "second",
                             "bisect_steps", "bisect", "sandbox", "nightly", "shared_ccache",
                             "layer", "kselftests"])
    ap.add_argument("--rounds", type=int, default=2,
                    help="sandbox: builds per variant (alternating)")
    ap.add_argument("--sandbox-dir", type=Path,
                    help="sandbox: a directory kept across runs (its ccache stays warm)")
    args = ap.parse_args()
    tree = args.tree or debsrc.import_tree(debsrc.DEFAULT_PACKAGE).path
    scratch = Path(tempfile.mkdtemp(prefix="orch-bench-", dir=os.environ.get("BENCH_DIR")))
    cache = scratch / "orch-cache"  # empty: a cold orch
    res: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "kvm": vm.probe_kvm()[1], "jobs": build.jobs(),
                             "toolchain": kcache.toolchain_id()},
                 "config": CONFIG, "first_series": FIRST.name, "second_series": SECOND.name,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and set(args.only) != set(ap.get_default("only")):
        # Measuring some steps again: keep the others' figures, say when.
        old = json.loads(args.out.read_text())
        res = {**old, **{k: v for k, v in res.items() if k != "started"},
               "remeasured": {"steps": args.only, "started": res["started"]}}

    def save():
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    if "by_hand" in args.only:
        res["by_hand"] = by_hand(tree, scratch / "by-hand")
        save()
    if "cold" in args.only:
        res["orch_cold"] = orch(tree, cache, FIRST, scratch / "run-cold")
        save()
    if "warm" in args.only:
        res["orch_warm"] = orch(tree, cache, FIRST, scratch / "run-warm")
        save()
    if "warm_one" in args.only:
        res["orch_warm_one_boot"] = orch(tree, cache, FIRST, scratch / "run-warm-one",
                                         "--rerun-baseline")
        save()
    if "warm_both" in args.only:
        res["orch_warm_both_boots"] = orch(tree, cache, FIRST, scratch / "run-warm-both",
                                           "--rerun")
        save()
    if "second" in args.only:
        res["orch_second_series"] = orch(tree, cache, SECOND, scratch / "run-second")
        res["orch_second_series"]["series_touches"] = touched(SECOND)
        save()
    if "bisect_steps" in args.only:
        res["bisect_steps"] = bisect_steps(scratch / "bisect-steps")
        save()
    if "bisect" in args.only:
        res["bisect"] = bisect_real(scratch / "bisect")
        save()
    if "sandbox" in args.only:
        res["sandbox_exec"] = sandbox_exec(scratch / "sandbox-exec")
        save()
        res["sandbox_build"] = sandbox_build(tree, args.sandbox_dir or scratch / "sandbox",
                                             args.rounds)
        save()
    if "nightly" in args.only:
        res["nightly"] = nightly_growth(scratch / "nightly")
        save()
    if "shared_ccache" in args.only:
        res["shared_ccache"] = shared_ccache(tree, scratch / "shared-ccache")
        save()
    if "layer" in args.only:
        res["layer"] = layer_build(tree, scratch / "layer", args.rounds)
        save()
    if "kselftests" in args.only:
        res["kselftests"] = kselftests(tree, scratch / "kselftests")
        save()
    if "by_hand" in res and "orch_cold" in res:
        res["cold_vs_by_hand"] = round(res["orch_cold"]["seconds"] / res["by_hand"]["seconds"], 3)
    for name in ("orch_warm", "orch_warm_one_boot", "orch_warm_both_boots",
                 "orch_second_series"):
        if name in res and res[name]["boot_tests_seconds"]:
            w = res[name]
            w["vs_boots_alone"] = round(w["seconds"] / w["boot_tests_seconds"], 3)
    save()
    print(json.dumps(res, indent=2))
    shutil.rmtree(scratch / "by-hand" / "build", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
