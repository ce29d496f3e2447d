"""For orch's own tests (tests/test_crash_e2e.py); runs in the guest: a guest
that really hangs, whatever the machine's speed, on the kernel of
tests/data/patches/crash-bug-on-dontcache-write.mbox (BUG() on the
RWF_DONTCACHE write path).

The DONTCACHE write runs in a child process. On that kernel the child oopses
inside ext4's write path and dies holding the file's inode lock; the parent's
next write to the file then waits for that lock forever, uninterruptibly (no
signal, so no pytest-timeout, ends it). On a kernel without the BUG both
writes complete and the test passes."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

RWF_DONTCACHE = 0x80
SERIAL = "orch-scratch"   # the scratch virtio-blk disk vm.py attaches
TOOLS = "/usr/sbin:/sbin:/usr/bin:/bin"


def scratch_disk() -> Path:
    for serial in Path("/sys/block").glob("vd*/serial"):
        if serial.read_text().strip() == SERIAL:
            return Path("/dev") / serial.parent.name
    raise AssertionError(f"no virtio-blk disk with serial {SERIAL}")


def test_write_after_a_dontcache_write():
    dev = scratch_disk()
    subprocess.run([shutil.which("mkfs.ext4", path=TOOLS), "-q", "-F", str(dev)], check=True)
    mnt = Path(tempfile.mkdtemp())
    subprocess.run(["mount", "-t", "ext4", str(dev), str(mnt)], check=True)
    try:
        path = mnt / "f"
        pid = os.fork()
        if pid == 0:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            os.pwritev(fd, [b"d" * 4096], 0, RWF_DONTCACHE)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, b"n" * 4096, 4096)   # waits forever if the child died holding the lock
        finally:
            os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
