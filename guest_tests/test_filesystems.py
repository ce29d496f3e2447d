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
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dontcache_io import (PAGE, RWF_DONTCACHE, cached_pages, dontcache_write, odirect_read,
                          wait_evicted)

NPAGES = 16


def host_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        pytest.skip(f"{name} is not available in the guest")
    return found


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
        self.mounted_type, self.options = self._mounted()

    def _mounted(self) -> tuple[str, str]:
        """Filesystem type and options as /proc/mounts shows them."""
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if parts[1] == str(self.dir):
                    return parts[2], parts[3]
        return "?", "?"

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
    """The disk to make ext4 on; for virtio-blk also the disk itself (its
    completion is measured around the writes)."""
    if kind == "nullblk-irq":
        return nullblk_factory(irqmode=2, size_mb=128).path, None
    disk = scratch_disk_path()
    return disk.path, disk


@pytest.fixture
def scratch_disk_path(request):
    def get():
        return request.getfixturevalue("scratch_disk")
    return get


def _write_files_and_check(dirpath: Path, overwrite: bool, controls, record_property,
                           virtio=None):
    """DONTCACHE-write file `f`, normally write file `c` (the positive control)
    the same way (both overwrites of written blocks, or both new
    allocations), fsync both, wait for `f` to leave the cache, then check
    that `c` stayed cached."""
    controls.expect("cached", *(["device"] if virtio else []))
    n = NPAGES * PAGE
    fds = {k: os.open(dirpath / k, os.O_RDWR | os.O_CREAT, 0o644) for k in ("f", "c")}
    try:
        if overwrite:
            for fd in fds.values():
                os.pwrite(fd, os.urandom(n), 0)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                assert cached_pages(fd, 0, n) == 0, "could not empty the cache before the overwrite"
        irqs = virtio.interrupts() if virtio else None
        data = os.urandom(n)
        assert dontcache_write(fds["f"], data, 0, what="ext4 file") == n
        assert os.pwrite(fds["c"], os.urandom(n), 0) == n
        for fd in fds.values():
            os.fsync(fd)
        if virtio:
            record_property("completion", controls.irq_completion(virtio, irqs))
        left = wait_evicted(fds["f"], 0, n, timeout=5)
        record_property("pages_still_cached", str(left))
        controls.still_cached(fds["c"], 0, n, f"normal {'over' if overwrite else 'new '}write "
                              f"of {NPAGES} pages to another file, same fsync and wait")
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
        buf = bytearray(n)
        assert os.preadv(fds["f"], [buf], 0) == n and bytes(buf) == data
    finally:
        for fd in fds.values():
            os.close(fd)


@pytest.mark.parametrize("disk", ["nullblk-irq", "virtio-blk"])
def test_ext4_overwrite_evicts(disk, nullblk_factory, scratch_disk_path, mount_fs, controls,
                               record_property):
    """ext4 overwrite of already-written blocks: no extent conversion, so the
    bio completes (folio_end_writeback) in IRQ context. Without deferral the
    DONTCACHE folios stay cached; with the series they must be evicted."""
    dev, virtio = _device(disk, nullblk_factory, scratch_disk_path)
    m = mount_fs(dev, "ext4", EXT4_MKFS)
    record_property("mount_options", m.options)
    _write_files_and_check(m.dir, True, controls, record_property, virtio)


@pytest.mark.parametrize("options", [None, "dioread_lock"], ids=["dioread_nolock", "dioread_lock"])
def test_ext4_new_allocation_evicts(options, nullblk_factory, mount_fs, controls,
                                    record_property):
    """ext4 new allocations (delalloc). With the default dioread_nolock they are
    unwritten extents converted in a workqueue (task context: evicts even
    without the series); with -o dioread_lock the completion is in IRQ. The
    `mount` control checks in /proc/mounts which of the two is in effect
    (`nodioread_nolock` is listed exactly when dioread_lock is)."""
    dev = nullblk_factory(irqmode=2, size_mb=128)
    m = mount_fs(dev.path, "ext4", EXT4_MKFS, options)
    record_property("mount_options", m.options)
    opts = m.options.split(",")
    # ext4 shows dioread_lock as "nodioread_nolock" (the default shows neither).
    has_lock = "nodioread_nolock" in opts or "dioread_lock" in opts
    controls.check("mount", has_lock == (options == "dioread_lock"),
                   f"/proc/mounts: {m.options}", f"the mount (-o {options or 'defaults'})")
    _write_files_and_check(m.dir, False, controls, record_property)


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


def test_virtio_blk_dontcache_write_evicts(scratch_disk, controls, record_property):
    """A plain DONTCACHE write to the virtio-blk scratch disk: writeback
    completes in the virtqueue interrupt (a real device's IRQ path, counted
    in /proc/interrupts), so the folios must still be evicted. Positive
    control: a normal write of the same size stays cached."""
    controls.expect("device", "cached")
    fd = os.open(scratch_disk.path, os.O_RDWR)
    try:
        n = NPAGES * PAGE
        off, control_off = 64 << 20, 128 << 20
        data = os.urandom(n)
        irqs = scratch_disk.interrupts()
        assert dontcache_write(fd, data, off) == n
        assert os.pwrite(fd, os.urandom(n), control_off) == n
        os.fsync(fd)
        record_property("completion", controls.irq_completion(scratch_disk, irqs))
        left = wait_evicted(fd, off, n)
        record_property("pages_still_cached", str(left))
        controls.still_cached(fd, control_off, n,
                              f"normal write of {NPAGES} pages, same fsync and wait")
        assert left == 0, f"{left}/{NPAGES} DONTCACHE folios still cached after fsync"
        assert odirect_read(scratch_disk.path, off, n) == data
    finally:
        os.close(fd)
