"""gc racing a running `orch test`: a real run on the stand-in tree, paused
(a FIFO) in the middle of its patched build or of its patched boot, while
`orch cache gc --max-size 0` runs again and again in other processes.
Nothing the run holds may go (its workspace, its baseline kernel, the kernel
it is building, the results it took), everything else may, and the run
still passes once it goes on."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from cache_world import entries, gc_json, kept, one_series, removed, run_series
from helpers import IRQ_TEST, REPO, TESTS_DIR, run_json

PAUSED = """\
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
standin_guest.install_globally(harness=False)
from orchestrator.guest import vm
from orchestrator.kernel import build

def pause(what):
    with open({ready!r}, "w") as f:
        f.write(what + "\\n")
    with open({fifo!r}) as f:          # until the test says go on
        f.read()

real_make, real_boot = build._make, vm.run_tests

def make(src, bd, kc, side, *a, **kw):
    if side == "patched" and {where!r} == "build":
        pause("building")
    return real_make(src, bd, kc, side, *a, **kw)

def boot(kernel, *a, **kw):
    if "patched" in str(kw.get("console", a[1] if len(a) > 1 else "")) and {where!r} == "boot":
        pause("booting")
    return real_boot(kernel, *a, **kw)

build._make, vm.run_tests = make, boot
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def start_paused(tmp_path, env, mini, mbox, where: str):
    import subprocess
    fifo, ready = tmp_path / f"go-{where}", tmp_path / f"ready-{where}"
    os.mkfifo(fifo)
    script = tmp_path / f"paused_{where}.py"
    script.write_text(PAUSED.format(tests=str(TESTS_DIR), repo=str(REPO), ready=str(ready),
                                    fifo=str(fifo), where=where))
    p = subprocess.Popen([sys.executable, str(script), "test", "--offline-mode", "--mbox",
                          str(mbox), "--tree", str(mini), "--config", "base", "--guest-test",
                          IRQ_TEST, "--run-dir", str(tmp_path / f"paused-{where}")],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 300
    while not ready.exists():
        if p.poll() is not None:
            pytest.fail(f"the run ended before it paused: {p.stderr.read()}")
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.1)
    return p, fifo


def go_on(p, fifo) -> tuple[int, str]:
    with open(fifo, "w") as f:
        f.write("go\n")
    _out, err = p.communicate(timeout=300)
    return p.returncode, err


def warm(tmp_path, env, mini):
    """A first run: baseline and patched kernel, their results, the workspace."""
    r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, "alpha"), "first")
    assert r.returncode == 0, r.stderr
    rec = run_json(tmp_path / "first")
    cfg = rec["configs"][0]
    return cfg["baseline"]["build"]["key"], cfg["patched"]["build"]["key"]


@pytest.mark.parametrize("where", ["build", "boot"])
def test_gc_never_takes_what_a_running_orch_holds(env, tmp_path, mini, where):
    base_key, first_patched = warm(tmp_path, env, mini)
    cache = tmp_path / "cache"
    work = entries(cache)["work"]
    first_results = entries(cache)["results"]
    p, fifo = start_paused(tmp_path, env, mini, one_series(mini, tmp_path, "beta"), where)
    try:
        reports = [gc_json(env, tmp_path, "--max-size", "0") for _ in range(3)]
    finally:
        code, err = go_on(p, fifo)
    first = reports[0]
    held = {n for n, why in kept(first).items() if why == "held by a running orch"}
    # The run's workspace and baseline kernel stayed, whoever asked.
    assert f"work/{work[0]}" in held
    assert f"kernels/{base_key}" in held
    assert f"kernels/{first_patched}" in removed(first)     # the first run's, free to go
    for rep in reports[1:]:
        assert removed(rep) == [] and set(kept(rep)) == set(kept(first))
    if where == "boot":
        # Its kernels are built and its baseline's results taken: held too.
        rec = json.loads((tmp_path / f"paused-{where}" / "run.json").read_text())
        patched_key = rec["configs"][0]["patched"]["build"]["key"]
        assert f"kernels/{patched_key}" in held
        assert any(n.startswith("results/") for n in held)
    assert not [n for n in removed(first) if n.startswith("work/")]
    assert code == 0, err
    rec = run_json(tmp_path / f"paused-{where}")
    assert rec["verdict"] == "PASS"
    assert rec["configs"][0]["baseline"]["build"]["cached"] is True
    # The run is over: nothing is held any more.
    after = gc_json(env, tmp_path, "--max-size", "0")
    assert after["kept"] == []
    assert all(v == [] for v in entries(cache).values())
    assert set(first_results) <= {n.split("/", 1)[1] for r in (first, after)
                                  for n in removed(r) if n.startswith("results/")}


GC_HOLDING = """\
import fcntl, os, sys
lock = sys.argv[1]
fd = os.open(lock, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()                          # until the test says: gc's rename
os.rename(os.path.dirname(lock), sys.argv[2])
os.close(fd)
"""


def test_a_run_waiting_for_a_workspace_gc_takes_locks_the_new_one(tmp_path):
    """gc holds a workspace's own lock while it renames the workspace into the
    trash; a run waiting for that lock must not go on holding the lock of the
    workspace in the trash, but lock the one it makes anew."""
    import subprocess
    import threading

    from orchestrator.source import tree
    root = tmp_path / "work" / "linux-0123abcd"
    root.mkdir(parents=True)
    (root / "lock").touch()
    gc = subprocess.Popen([sys.executable, "-c", GC_HOLDING, str(root / "lock"),
                           str(tmp_path / "trashed")], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    assert gc.stdout.readline().strip() == "held"
    lock = tree.WorkspaceLock(root / "lock")
    waiter = threading.Thread(target=lock.acquire, args=(60,))
    waiter.start()
    time.sleep(0.5)                  # the run is waiting
    gc.stdin.write("go\n")
    gc.stdin.flush()
    assert gc.wait(timeout=60) == 0
    waiter.join(timeout=60)
    try:
        assert not waiter.is_alive() and lock.fd is not None
        assert (root / "lock").exists()
        st, mine = os.stat(root / "lock"), os.fstat(lock.fd)
        assert (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
    finally:
        lock.release()
