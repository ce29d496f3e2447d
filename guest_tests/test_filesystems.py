"""RWF_DONTCACHE through filesystems and on the virtio-blk scratch disk.

ext4 has FOP_DONTCACHE: which writes complete in IRQ context depends on the
extent state (overwrites of written blocks: bio end_io in IRQ; new
allocations with the default dioread_nolock: unwritten-extent conversion in a
workqueue; with -o dioread_lock new allocations complete in IRQ too).
ext2 and vfat do not advertise FOP_DONTCACHE and must reject the flag.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (PAGE, RWF_DONTCACHE, cached_pages, dc_write, host_tool,
                      odirect_read, wait_evicted)

NPAGES = 16


def _fs_supported(fstype: str) -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == fstype for line in f if line.strip())


class Mounted:
    def __init__(self, dev: Path, fstype: str, mkfs: list[str], options: str | None):
        if not _fs_supported(fstype):
            pytest.skip(f"{fstype} is not in /proc/filesystems (CONFIG for {fstype} off)")
        self.dev, self.fstype = dev, fstype
        tool = host_tool(mkfs[0])
        r = subprocess.run([tool, *mkfs[1:], str(dev)], capture_output=True, text=True)
        if r.returncode:
            pytest.fail(f"{mkfs[0]} failed: {r.stderr.strip()[-300:]}")
        self.dir = Path(tempfile.mkdtemp(prefix=f"orch-{fstype}-"))
        cmd = ["mount", "-t", fstype] + (["-o", options] if options else []) + [str(dev), str(self.dir)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            pytest.fail(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        self.mounted_type = self._mounted_type()

    def _mounted_type(self) -> str:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if parts[1] == str(self.dir):
                    return parts[2]
        return "?"

    def umount(self):
        subprocess.run(["umount", str(self.dir)], capture_output=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass


@pytest.fixture
def mount_fs():
    made: list[Mounted] = []

    def mount(dev, fstype, mkfs, options=None) -> Mounted:
        m = Mounted(Path(dev), fstype, mkfs, options)
        made.append(m)
        return m

    yield mount
    for m in reversed(made):
        m.umount()


EXT4_MKFS = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"]


def _device(kind, nullblk_factory, scratch_disk_path):
    if kind == "nullblk-irq":
        return nullblk_factory(irqmode=2, size_mb=128).path, "null_blk irqmode=2 (hard IRQ)"
    return scratch_disk_path(), "virtio-blk (virtqueue interrupt)"


@pytest.fixture
def scratch_disk_path(request):
    def get():
        return request.getfixturevalue("scratch_disk")
    return get


def _write_file_and_check(path: Path, overwrite: bool, record_property):
    n = NPAGES * PAGE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if overwrite:
            os.pwrite(fd, os.urandom(n), 0)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert cached_pages(fd, 0, n) == 0, "could not empty the cache before the overwrite"
        data = os.urandom(n)
        assert dc_write(fd, data, 0, what="ext4 file") == n
        os.fsync(fd)
        left = wait_evicted(fd, 0, n, timeout=5)
        record_property("pages_still_cached", str(left))
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
        buf = bytearray(n)
        assert os.preadv(fd, [buf], 0) == n and bytes(buf) == data
    finally:
        os.close(fd)


@pytest.mark.parametrize("disk", ["nullblk-irq", "virtio-blk"])
def test_ext4_overwrite_evicts(disk, nullblk_factory, scratch_disk_path, mount_fs,
                               record_property):
    """ext4 overwrite of already-written blocks: no extent conversion, so the
    bio completes (folio_end_writeback) in IRQ context. Without deferral the
    DONTCACHE folios stay cached; with the series they must be evicted."""
    dev, mode = _device(disk, nullblk_factory, scratch_disk_path)
    m = mount_fs(dev, "ext4", EXT4_MKFS)
    record_property("completion", f"{mode}; ext4 overwrite -> bio end_io in IRQ")
    _write_file_and_check(m.dir / "f", overwrite=True, record_property=record_property)


@pytest.mark.parametrize("options", [None, "dioread_lock"], ids=["dioread_nolock", "dioread_lock"])
def test_ext4_new_allocation_evicts(options, nullblk_factory, mount_fs, record_property):
    """ext4 new allocations (delalloc). With the default dioread_nolock they are
    unwritten extents converted in a workqueue (task context: evicts even
    without the series); with -o dioread_lock the completion is in IRQ."""
    dev = nullblk_factory(irqmode=2, size_mb=128)
    m = mount_fs(dev.path, "ext4", EXT4_MKFS, options)
    record_property("mount_options", options or "default (dioread_nolock)")
    record_property("completion", "workqueue (unwritten conversion)" if options is None
                    else "bio end_io in IRQ")
    _write_file_and_check(m.dir / "f", overwrite=False, record_property=record_property)


@pytest.mark.parametrize("fstype,mkfs", [
    ("ext2", ["mkfs.ext2", "-q", "-F", "-b", "4096"]),
    ("vfat", ["mkfs.vfat"]),
], ids=["ext2", "vfat"])
def test_fs_without_dontcache_rejects(fstype, mkfs, nullblk_factory, mount_fs, record_property):
    """ext2 and vfat do not set FOP_DONTCACHE: DONTCACHE reads and writes on
    their files fail with EOPNOTSUPP (documented behaviour, unchanged by the
    series). If ext2 were mounted by the ext4 driver (EXT2_FS off) the flag
    would be accepted: that case is skipped, not passed."""
    dev = nullblk_factory(irqmode=2, size_mb=64)
    m = mount_fs(dev.path, fstype, mkfs)
    record_property("mounted_type", m.mounted_type)
    if m.mounted_type != fstype:
        pytest.skip(f"{fstype} volume mounted as {m.mounted_type} (driver for {fstype} off)")
    path = m.dir / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * PAGE, 0)
        for what, call in (("write", lambda: os.pwritev(fd, [b"y" * PAGE], 0, RWF_DONTCACHE)),
                           ("read", lambda: os.preadv(fd, [bytearray(PAGE)], 0, RWF_DONTCACHE))):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.EOPNOTSUPP, f"{what}: {ei.value}"
            record_property(f"{what}_errno", errno.errorcode[ei.value.errno])
    finally:
        os.close(fd)


def test_virtio_blk_dontcache_write_evicts(scratch_disk, record_property):
    """A plain DONTCACHE write to the virtio-blk scratch disk: writeback
    completes in the virtqueue interrupt (a real device's IRQ path), so the
    folios must still be evicted."""
    fd = os.open(scratch_disk, os.O_RDWR)
    try:
        n = NPAGES * PAGE
        off = 64 << 20
        data = os.urandom(n)
        assert dc_write(fd, data, off) == n
        os.fsync(fd)
        left = wait_evicted(fd, off, n)
        record_property("pages_still_cached", str(left))
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
        assert odirect_read(scratch_disk, off, n) == data
    finally:
        os.close(fd)
