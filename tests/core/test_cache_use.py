"""core/cache_use.py: the lock a run takes on a cache entry before it looks
at it, and gc's eviction under that lock. Real processes hold the locks
(flock is per open file, so a second process is the honest test); entries
hold what a hostile cache may hold (links out, FIFOs, device nodes, dirs
without permissions)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import REPO

from orchestrator.core import cache_use
from orchestrator.core.errors import OrchError

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    c.mkdir()
    monkeypatch.setenv("ORCH_CACHE", str(c))
    yield c
    cache_use.release_all()


def entry(cache: Path, kind: str = "kernels", key: str = KEY) -> Path:
    d = cache / kind / key
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(b"x" * 10000)
    return d


HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from orchestrator.core import cache_use
cache_use.use({kind!r}, {key!r})
print("held", flush=True)
sys.stdin.read()
"""


def holder(cache: Path, kind: str = "kernels", key: str = KEY) -> subprocess.Popen:
    """Another orch process using the entry until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), kind=kind,
                                                               key=key)],
                         env={**os.environ, "ORCH_CACHE": str(cache)}, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_use_makes_a_lock_file_and_stamps_it(cache):
    before = time.time()
    cache_use.use("kernels", KEY)
    lock = cache / "locks" / "kernels" / KEY
    st = lock.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_mtime >= before - 1
    assert cache_use.holds("kernels", KEY)
    assert cache_use.used_since(before - 1) == [("kernels", KEY)]
    assert cache_use.used_since(time.time() + 10) == []


def test_an_entry_another_process_uses_is_not_evicted_until_it_ends(cache):
    d = entry(cache)
    p = holder(cache)
    try:
        assert cache_use.free("kernels", KEY, d) is False
        assert cache_use.evict("kernels", KEY, d) is False
        assert (d / "bzImage").read_bytes() == b"x" * 10000
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    assert cache_use.free("kernels", KEY, d) is True
    assert cache_use.evict("kernels", KEY, d) is True
    assert not d.exists()
    assert not (cache / "locks" / "kernels" / KEY).exists()    # unlinked under the lock
    assert os.listdir(cache / ".trash") == []


def test_an_entry_this_process_uses_is_not_evicted(cache):
    d = entry(cache)
    cache_use.use("kernels", KEY)
    assert cache_use.evict("kernels", KEY, d) is False
    assert d.exists()


def test_a_lock_gc_unlinked_while_the_run_waited_is_taken_again(cache, monkeypatch):
    """gc evicts between the run's open() and its flock(): the run must end
    up holding the lock file the path names, not the unlinked one."""
    d = entry(cache)
    lock = cache / "locks" / "kernels" / KEY
    real = cache_use.fcntl.flock
    done = []

    def flock(fd, op):
        if not done and op == cache_use.fcntl.LOCK_SH:
            done.append(1)
            os.unlink(lock)                 # what evict() does, holding it
        return real(fd, op)

    monkeypatch.setattr(cache_use.fcntl, "flock", flock)
    cache_use.use("kernels", KEY)
    monkeypatch.setattr(cache_use.fcntl, "flock", real)
    assert done and lock.exists()
    # Another process's gc sees the entry held.
    r = subprocess.run([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from orchestrator.core import cache_use
print(cache_use.evict("kernels", {KEY!r}, Path({str(d)!r})))
"""], env={**os.environ, "ORCH_CACHE": str(cache)}, capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == "False", r.stderr
    assert d.exists()


def test_use_costs_microseconds(cache):
    t0 = time.perf_counter()
    cache_use.use("kernels", KEY)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10000):
        cache_use.use("kernels", KEY)
    again = (time.perf_counter() - t0) / 10000
    assert first < 0.05, first
    assert again < 25e-6, again


def test_a_hostile_lock_file_is_never_followed_or_blocked_on(cache, tmp_path):
    outside = tmp_path / "precious"
    outside.write_text("keep")
    old = outside.stat().st_mtime - 1000
    os.utime(outside, (old, old))
    locks = cache / "locks" / "kernels"
    locks.mkdir(parents=True)
    (locks / KEY).symlink_to(outside)
    os.mkfifo(locks / ("f" * 32))
    signal.alarm(20)            # a FIFO opened for reading would block forever
    try:
        cache_use.use("kernels", KEY)
        cache_use.use("kernels", "f" * 32)
    finally:
        signal.alarm(0)
    assert outside.read_text() == "keep" and outside.stat().st_mtime == old
    for name in (KEY, "f" * 32):
        assert stat.S_ISREG((locks / name).lstat().st_mode)


@pytest.mark.parametrize("kind,key", [("kernels", "../x"), ("kernels", ".."), ("nope", KEY),
                                      ("results", ""), ("results", "a\0b")])
def test_keys_are_one_file_name_of_a_known_kind(cache, kind, key):
    with pytest.raises(ValueError):
        cache_use.use(kind, key)


def test_a_cache_that_cannot_take_locks_is_one_error(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("")
    monkeypatch.setenv("ORCH_CACHE", str(f))
    with pytest.raises(OrchError, match=f"cannot use cache entry kernels/{KEY}"):
        cache_use.use("kernels", KEY)


def test_eviction_removes_a_link_never_its_target(cache, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("keep")
    (cache / "kernels").mkdir()
    link = cache / "kernels" / KEY
    link.symlink_to(target)
    assert cache_use.evict("kernels", KEY, link) is True
    assert not os.path.lexists(link)
    assert (target / "keep").read_text() == "keep"


def test_eviction_gets_through_fifos_devices_links_and_closed_directories(cache, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    d = entry(cache, "results")
    os.mkfifo(d / "fifo")
    (d / "out").symlink_to(outside)
    (d / "deep").mkdir()
    (d / "deep" / "in").symlink_to(outside / "keep")
    if os.geteuid() == 0:
        os.mknod(d / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    shut = d / "shut"
    (shut / "inner").mkdir(parents=True)
    (shut / "inner" / "f").write_text("f")
    os.chmod(shut / "inner", 0o500)
    os.chmod(shut, 0o000)
    assert cache_use.evict("results", KEY, d) is True
    assert not d.exists() and os.listdir(cache / ".trash") == []
    assert (outside / "keep").read_text() == "keep" and os.listdir(outside) == ["keep"]


def test_remove_at_needs_no_permission_it_can_give_itself(tmp_path):
    """As another user than root (CI is root, which needs none), directories
    without write or search permission are opened up first."""
    if os.geteuid() == 0 and not _can_drop_root():
        pytest.skip("setpriv is needed to test as an unprivileged user")
    # Somewhere the unprivileged user can reach (pytest's tmp_path is 0700).
    where = Path(tempfile.mkdtemp(dir="/tmp", prefix="orch-remove-at-"))
    try:
        os.chmod(where, 0o777)
        top = where / "t"
        (top / "a" / "b").mkdir(parents=True)
        (top / "a" / "b" / "f").write_text("x")
        if os.geteuid() == 0:
            for p in (top, top / "a", top / "a" / "b", top / "a" / "b" / "f"):
                os.lchown(p, 65534, 65534)
        os.chmod(top / "a" / "b", 0o500)
        os.chmod(top / "a", 0o000)
        script = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); "
                  "from orchestrator.core import cache_use; "
                  f"cache_use.remove_at(os.open({str(where)!r}, os.O_RDONLY), 't')")
        argv = [sys.executable, "-c", script]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert not top.exists()
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _can_drop_root() -> bool:
    return subprocess.run(["setpriv", "--version"], capture_output=True).returncode == 0


def test_leftover_trash_is_removed_by_the_next_gc(cache):
    t = cache / ".trash" / "kernels-x-1-ab"
    (t / "sub").mkdir(parents=True)
    (t / "sub" / "f").write_text("x")
    (cache / ".trash" / "link").symlink_to("/etc")
    assert cache_use.empty_trash(cache) == []
    assert os.listdir(cache / ".trash") == []
    assert os.path.isdir("/etc/ssl") or os.path.isdir("/etc")


def test_eviction_without_room_for_a_lock_file_still_removes(cache, monkeypatch):
    d = entry(cache)
    real = cache_use._open_lock

    def full(path, create):
        if create:
            raise cache_use.CacheLockError(errno.ENOSPC, "No space left on device")
        return real(path, create)

    monkeypatch.setattr(cache_use, "_open_lock", full)
    assert cache_use.evict("kernels", KEY, d) is True
    assert not d.exists()


@pytest.mark.parametrize("text,value", [("10G", 10 << 30), ("500M", 500 << 20),
                                        ("1.5T", int(1.5 * (1 << 40))), ("4096", 4096),
                                        ("0", 0), ("2GiB", 2 << 30), ("512k", 512 << 10),
                                        (123, 123)])
def test_sizes(text, value):
    assert cache_use.parse_size(text) == value


@pytest.mark.parametrize("text,value", [("30d", 30 * 86400), ("12h", 12 * 3600),
                                        ("2w", 14 * 86400), ("90m", 5400), ("45s", 45)])
def test_ages(text, value):
    assert cache_use.parse_age(text) == value


@pytest.mark.parametrize("bad", ["lots", "-1", "10X", "", "1e9", True, -5, "G"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="a size such as 50G"):
        cache_use.parse_size(bad)


@pytest.mark.parametrize("bad", ["30", "d", "3y", "-1d", 30])
def test_bad_ages(bad):
    with pytest.raises(ValueError, match="an age such as 30d"):
        cache_use.parse_age(bad)


def test_human_units_read_like_du():
    assert [cache_use.human(n) for n in (0, 512, 4096, 12 << 20, int(2.5 * (1 << 30)))] == \
        ["0", "512", "4.0K", "12M", "2.5G"]
    assert [cache_use.human_age(s) for s in (40, 700, 5 * 3600, 31 * 86400)] == \
        ["40s", "11m", "5h", "31d"]
