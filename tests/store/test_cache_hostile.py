"""A hostile cache (everything in it is untrusted: orch runs as root in CI)
and a full disk: gc removes links, never their targets; FIFOs and device
nodes are removed without being opened; a pin can only keep things; on a
cache that is out of blocks and inodes gc still frees space and says so."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import time

import pytest
from cache_world import (
    cache_cmd,
    entries,
    gc_json,
    kept,
    one_series,
    removed,
    run_series,
)

from orchestrator.store import pins

KEY = "c" * 32


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "keep").write_text("keep")
    return d


def test_links_fifos_and_devices_as_entries(env, tmp_path, outside):
    cache = tmp_path / "cache"
    (cache / "kernels").mkdir(parents=True)
    (cache / "results").mkdir()
    (cache / "kernels" / KEY).symlink_to(outside)
    (cache / "kernels" / ("d" * 32)).symlink_to(outside / "keep")
    os.mkfifo(cache / "results" / KEY)
    inside = cache / "results" / ("e" * 32)
    inside.mkdir()
    os.mkfifo(inside / "fifo")
    (inside / "up").symlink_to("../../../precious")
    if os.geteuid() == 0:
        os.mknod(cache / "results" / ("f" * 32), stat.S_IFBLK | 0o600, os.makedev(7, 0))
    # du neither blocks on the FIFOs nor walks the links.
    r = cache_cmd(env, tmp_path, "du", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kinds"]["kernels"]["entries"] == 2
    rep = gc_json(env, tmp_path, "--max-size", "0")
    assert len(removed(rep)) == (5 if os.geteuid() == 0 else 4), rep
    assert entries(cache)["kernels"] == entries(cache)["results"] == []
    assert os.listdir(outside) == ["keep"] and (outside / "keep").read_text() == "keep"


def test_a_kind_directory_linked_out_of_the_cache_is_left_alone(env, tmp_path, outside):
    cache = tmp_path / "cache"
    cache.mkdir()
    (outside / ("a" * 32)).mkdir()
    (cache / "kernels").symlink_to(outside)
    rep = gc_json(env, tmp_path, "--max-size", "0")
    assert removed(rep) == []
    assert sorted(os.listdir(outside)) == ["a" * 32, "keep"]
    assert os.path.islink(cache / "kernels")


def test_a_pin_can_only_keep(env, tmp_path, outside):
    cache = tmp_path / "cache"
    kernel = cache / "kernels" / KEY
    kernel.mkdir(parents=True)
    (kernel / "bzImage").write_bytes(b"k")
    out = tmp_path / "out"
    (out / "nights" / "2026-11-27").mkdir(parents=True)
    p = cache / "pins"
    p.mkdir()
    # A pin of a real nightly directory keeps the kernel it names ...
    (p / "good.json").write_text(json.dumps({"out": str(out), "nights": {"2026-11-27": {
        "kernels": [KEY, "../../precious", "/etc"], "results": ["../../../etc/passwd"]}}}))
    # ... and none of these keeps, follows or removes anything:
    (p / "dots.json").write_text(json.dumps({"out": "../../etc", "nights": {
        "../../etc": {"kernels": ["keep"]}}}))
    (p / "root.json").write_text(json.dumps({"out": "/", "nights": {"2026-11-27": {}}}))
    (p / "link.json").symlink_to(outside / "keep")
    os.mkfifo(p / "fifo.json")
    (p / "huge.json").write_bytes(b" " * (pins.MAX_PIN + 1))
    (p / "deep.json").write_text("[" * 10000 + "]" * 10000)
    (p / "dir.json").mkdir()
    rep = gc_json(env, tmp_path, "--max-size", "0")
    assert kept(rep) == {f"kernels/{KEY}": f"pinned by the nightly at {out} (night 2026-11-27)"}
    assert kernel.exists()
    assert sorted(os.listdir(p)) == ["dir.json", "good.json"]
    assert len(rep["pins_dropped"]) == 7
    assert os.listdir(outside) == ["keep"] and (outside / "keep").read_text() == "keep"
    assert os.path.exists("/etc/passwd")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the "
                                "cache needs root (CI runs as root)")


@needs_root
def test_gc_frees_space_on_a_full_disk(env, tmp_path, mini):
    """The cache on a tmpfs of its own, filled to ENOSPC in blocks and inodes
    by an old entry and the runs' own: gc must still take the old entry
    away (no room for its lock file or for the trash: it removes in place),
    and say what it freed."""
    built = tmp_path / "built"
    r = run_series(tmp_path, {**env, "ORCH_CACHE": str(built)}, mini,
                   one_series(mini, tmp_path, "alpha"), "run")
    assert r.returncode == 0, r.stderr
    mnt = tmp_path / "cache"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,nr_inodes=2000", "tmpfs",
                    str(mnt)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{built}/.", str(mnt)], check=True)
        shutil.rmtree(mnt / "ccache")        # room for the rest (its inode cache is 7M)
        old = mnt / "results" / ("0" * 32)         # an entry from before locks: no lock file
        old.mkdir()
        fill(old)
        t = time.time() - 90 * 86400
        os.utime(old, (t, t))
        assert _full(mnt)
        r = cache_cmd(env, tmp_path, "gc", "--max-age", "30d", "--max-size", "1T")
        assert r.returncode == 0, r.stderr
        assert f"removed results/{'0' * 32} " in r.stdout
        last = r.stdout.splitlines()[-1]
        assert last.startswith("freed ") and not last.startswith("freed 0:")
        # There was no room for its lock file or the trash: removed in place.
        assert not (mnt / ".trash").exists()
        assert not (mnt / "locks" / "results" / ("0" * 32)).exists()
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize > 8 << 20 and st.f_favail > 100
        # What the run left is still there, and usable by another run.
        assert len(entries(mnt)["kernels"]) == 2
        r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, "beta"), "again")
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(d) -> None:
    """Blocks, then inodes, until the file system says ENOSPC."""
    i = 0
    try:
        with open(d / "big", "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
    except OSError as e:
        assert e.errno == errno.ENOSPC
    try:
        while True:
            (d / f"n{i}").mkdir()
            i += 1
    except OSError as e:
        assert e.errno == errno.ENOSPC


def _full(mnt) -> bool:
    st = os.statvfs(mnt)
    return st.f_bavail < 4 and st.f_favail == 0
