"""Using an entry of orch's cache, and taking one away: the lock that makes
`orch cache gc` safe while runs go on.

Every entry a run takes (a kernel, a kselftest install, kept results, a
Debian tree, a workspace, a check's record) is first `use()`d: a shared
flock on cache/locks/<kind>/<key>, held until the process ends, and the lock
file's mtime set to now: the entry's last use. gc `evict()`s an entry only
under an exclusive lock taken without waiting: an entry some running orch
uses is skipped, never removed. Because a run locks before it first looks,
an entry gc removes is either gone before the run looks (it builds it again)
or kept.

evict() renames the entry into cache/.trash/ (atomic, same file system)
and unlinks the lock file while it holds it, then removes the trash outside
the lock; trash an interrupted gc left is removed by the next one
(empty_trash). A run waiting on the lock wakes up holding an unlinked file:
it sees the path names another inode (or none) and locks again.

Everything in the cache is untrusted (a build writes some of it, anyone
with the cache's permissions all of it): lock files are opened without
following links or blocking on FIFOs, and removal never follows a link out
of the entry (remove_at works on directory file descriptors).

Also here: the sizes and ages the cache's settings and flags take (`50G`,
`30d`), parsed once for the config file and the flags.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import resource
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.paths import cache_dir

# The kinds of entries a run uses, each a directory of the cache.
KINDS = ("trees", "work", "kernels", "kselftests", "results", "checks")
LOCKS = "locks"
TRASH = ".trash"
_RETRIES = 20
STAMP_EVERY = 60.0     # seconds: a held entry's last use is stamped again at most so often
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class CacheLockError(OSError):
    """A lock file that cannot be made or taken (the caller says where)."""


@dataclass
class _Held:
    fd: int
    kind: str
    key: str
    cache: str           # str(the cache directory)
    last: float          # when this process last used it (time.time())
    stamped: float       # when it last set the lock file's mtime


# By (cache, kind, key): a use of an entry already held is a dictionary look-up.
_held: dict[tuple[str, str, str], _Held] = {}
_mutex = threading.Lock()
_raised_limit = False


def check_key(kind: str, key: str) -> None:
    """A kind orch knows and a key that is one file name (a programming
    error otherwise: keys are orch's own hashes and names)."""
    if kind not in KINDS:
        raise ValueError(f"not a cache kind: {kind!r}")
    if (not key or "/" in key or "\0" in key or key in (".", "..")
            or len(key.encode()) > 255):
        raise ValueError(f"not a cache key: {key!r}")


def lock_path(kind: str, key: str, cache: Path | None = None) -> Path:
    check_key(kind, key)
    return (cache or cache_dir()) / LOCKS / kind / key


def use(kind: str, key: str, cache: Path | None = None) -> None:
    """Hold entry `key` of `kind` (of `cache`, default the cache) for the
    rest of this process (a shared lock) and stamp its last use.
    Microseconds when already held."""
    cache = cache or cache_dir()
    ident = (str(cache), kind, key)
    now = time.time()
    with _mutex:
        h = _held.get(ident)
        if h is not None:
            h.last = now
            if now - h.stamped > STAMP_EVERY:
                _stamp(h.fd)
                h.stamped = now
            return
        path = lock_path(kind, key, cache)
        _raise_fd_limit()
        try:
            fd = _lock(path, shared=True, blocking=True)
        except CacheLockError as e:
            raise OrchError(f"cannot use cache entry {kind}/{key}: {e.strerror}", Exit.INFRA)
        _stamp(fd)
        _held[ident] = _Held(fd, kind, key, ident[0], now, now)


def release_all(cache: Path | None = None) -> None:
    """Drop every lock this process holds (of `cache` only, when given):
    for tests, and for a finished night before its own gc."""
    with _mutex:
        for ident, h in list(_held.items()):
            if cache is None or h.cache == str(cache):
                os.close(h.fd)
                del _held[ident]


def used_since(t: float, cache: Path | None = None) -> list[tuple[str, str]]:
    """(kind, key) of every entry of `cache` this process used at or after
    `t`: what a night used, for its pin."""
    c = str(cache or cache_dir())
    with _mutex:
        return sorted((h.kind, h.key) for h in _held.values() if h.cache == c and h.last >= t)


def holds(kind: str, key: str, cache: Path | None = None) -> bool:
    """This process holds the entry (it used it)."""
    with _mutex:
        return (str(cache or cache_dir()), kind, key) in _held


def _raise_fd_limit() -> None:
    """One descriptor per entry used: a long night uses hundreds."""
    global _raised_limit
    if _raised_limit:
        return
    _raised_limit = True
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < min(want, 65536):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    except (ValueError, OSError):
        pass


def _stamp(fd: int) -> None:
    try:
        os.utime(fd)
    except OSError:
        pass       # a read-only cache: the lock still holds


def _open_lock(path: Path, create: bool) -> int:
    """The lock file, opened without following a link or blocking on a
    FIFO; anything but a regular file there is removed and made anew.
    -1 when it does not exist and `create` is false."""
    for _ in range(_RETRIES):
        try:
            fd = os.open(path, _OPEN | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            if not create:
                return -1
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CacheLockError(e.errno, f"cannot make {path.parent}: {e.strerror}")
            continue
        except OSError as e:
            if e.errno != errno.ELOOP:      # ELOOP: a symbolic link: not followed
                raise CacheLockError(e.errno, f"cannot open the lock {path}: {e.strerror}")
            _unlink_odd(path)
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        _unlink_odd(path)
    raise CacheLockError(errno.EAGAIN, f"cannot take the lock {path}: it keeps changing")


def _unlink_odd(path: Path) -> None:
    """Remove what sits where a lock file belongs (a link, a FIFO, a
    device node; an empty directory)."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CacheLockError(e.errno, f"cannot take the lock {path}: {e.strerror}")


def same_file(fd: int, path: Path) -> bool:
    """The path still names the file `fd` is (gc did not unlink it): what
    a lock taken on an open file must check before it counts."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _lock(path: Path, shared: bool, blocking: bool) -> int:
    """An fd holding `path`'s lock; -1 when `blocking` is false and
    someone else holds it."""
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    for _ in range(_RETRIES):
        fd = _open_lock(path, create=True)
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            os.close(fd)
            return -1
        except BaseException:
            os.close(fd)
            raise
        if same_file(fd, path):
            return fd
        os.close(fd)        # gc unlinked it meanwhile: lock the new one
    raise CacheLockError(errno.EAGAIN, f"cannot take the lock {path}: it keeps changing")


# -- taking an entry away -------------------------------------------------------------


def free(kind: str, key: str, path: Path, *, inner: Path | None = None) -> bool:
    """Whether evict() could take entry `path` now (nothing holds it), for
    a dry run; nothing is removed and no lock file is left behind."""
    cache = path.parent.parent
    path = lock_path(kind, key, cache)
    if holds(kind, key, cache):
        return False
    try:
        fd = _open_lock(path, create=False)
    except CacheLockError:
        return False
    if fd >= 0:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
    return _inner_free(inner, keep=False) is not None


def _inner_free(inner: Path | None, keep: bool) -> int | None:
    """A lock file inside the entry (a workspace's `lock`, which a run holds
    while it checks out and builds): -1 when there is none, an fd holding it
    exclusively (closed unless `keep`), None when someone holds it."""
    if inner is None:
        return -1
    try:
        fd = os.open(inner, _OPEN)
    except OSError:
        return -1          # none there (or a link: nobody's lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not keep:
        os.close(fd)
        return -1
    return fd


def evict(kind: str, key: str, path: Path, *, inner: Path | None = None) -> bool:
    """Remove entry `path` (cache/<kind>/<key>) unless a running orch holds
    it: False, untouched, when its lock (or the lock file `inner` inside it)
    is held. Raises OSError when it cannot be removed."""
    cache = path.parent.parent
    if path.name != key or path.parent.name != kind:
        raise ValueError(f"{path} is not entry {key!r} of {kind}")
    lp = lock_path(kind, key, cache)
    if holds(kind, key, cache):        # this process uses it
        return False
    try:
        fd = _lock(lp, shared=False, blocking=False)
    except CacheLockError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        # No lock file and no room for one: no orch can hold what does not
        # exist (a run that tries fails the same way), so go on without it.
        fd = -2
    if fd == -1:
        return False
    ifd = _inner_free(inner, keep=True)
    trashed = None
    try:
        if ifd is None:
            return False
        trashed = _to_trash(cache, kind, key, path)
        if fd >= 0:
            try:
                os.unlink(lp)
            except OSError:
                pass
    finally:
        for f in (ifd, fd):
            if f is not None and f >= 0:
                os.close(f)
    if trashed is not None:
        remove_at(*trashed)
    return True


def _to_trash(cache: Path, kind: str, key: str, path: Path) -> tuple[int, str] | None:
    """Rename the entry into the trash: (the trash's fd, its name there), to
    remove outside the lock; None when it was gone, or had to be removed in
    place (no room for the trash on a full disk; another file system)."""
    parent = _open_dir(path.parent)
    try:
        try:
            os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        try:
            tfd = _trash_fd(cache)
            name = f"{kind}-{key[:80]}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                os.rename(path.name, name, src_dir_fd=parent, dst_dir_fd=tfd)
            except BaseException:
                os.close(tfd)
                raise
            return tfd, name
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EXDEV, errno.EMLINK):
                raise
        remove_at(parent, path.name, close=False)
        return None
    finally:
        os.close(parent)


def _trash_fd(cache: Path) -> int:
    t = cache / TRASH
    try:
        os.mkdir(t, 0o700)
    except FileExistsError:
        pass
    return _open_dir(t)


def _open_dir(path: Path) -> int:
    """A directory of the cache, by a descriptor; never a link to one."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def empty_trash(cache: Path | None = None) -> list[str]:
    """Remove what an interrupted gc left in the trash; the lines of what
    could not be removed."""
    t = (cache or cache_dir()) / TRASH
    try:
        tfd = _open_dir(t)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{t}: {e.strerror}"]
    errors = []
    try:
        for name in os.listdir(tfd):
            try:
                remove_at(tfd, name, close=False)
            except OSError as e:
                errors.append(f"{t / name}: {e.strerror or e}")
    finally:
        os.close(tfd)
    return errors


def remove_at(dir_fd: int, name: str, close: bool = True) -> None:
    """Remove `name` in directory `dir_fd` with everything under it, and
    close dir_fd (unless `close` is false). Links, FIFOs, sockets and
    device nodes are unlinked, never followed or opened; a directory
    without write or search permission is given it first (root needs
    none). No recursion: any depth."""
    try:
        _remove_at(dir_fd, name)
    finally:
        if close:
            os.close(dir_fd)


def _remove_at(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _unlink(dir_fd, name)
        return
    stack = [(dir_fd, name, _enter(dir_fd, name))]
    try:
        while stack:
            pfd, nm, fd = stack[-1]
            sub = None
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        sub = e.name
                        break
                    _unlink(fd, e.name)
            if sub is not None:
                stack.append((fd, sub, _enter(fd, sub)))
                continue
            stack.pop()
            os.close(fd)
            _in_writable(pfd, os.rmdir, nm)
    finally:
        for _pfd, _nm, fd in stack:
            os.close(fd)


def _unlink(dir_fd: int, name: str) -> None:
    _in_writable(dir_fd, os.unlink, name)


def _in_writable(dir_fd: int, op, name: str) -> None:
    """os.unlink or os.rmdir of `name` in `dir_fd`, giving the directory
    its write bit first when it lacks it; gone already is done."""
    try:
        op(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError:
        os.fchmod(dir_fd, 0o700)
        op(name, dir_fd=dir_fd)


def _enter(dir_fd: int, name: str) -> int:
    """A subdirectory's descriptor, never through a link; one we may not
    read is given read, write and search permission first (by an O_PATH
    descriptor, so a link swapped in meanwhile is not what is changed)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        p = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{p}", 0o700)
        finally:
            os.close(p)
        fd = os.open(name, flags, dir_fd=dir_fd)
    return fd


# -- sizes and ages ---------------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?", re.IGNORECASE)
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
SIZE_RULE = "a size such as 50G, 500M, 1.5T or a number of bytes"
AGE_RULE = "an age such as 30d, 12h, 2w (s, m, h, d, w)"


def parse_size(value: object) -> int:
    """Bytes of `50G`, `500M`, `1.5T`, `10GiB`, `0` or a whole number (bytes).
    ValueError, saying SIZE_RULE, for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m:
            n = float(m.group(1)) * _UNITS[m.group(2).upper()]
            if n < 1 << 62:
                return int(n)
    raise ValueError(SIZE_RULE)


def parse_age(value: object) -> float:
    """Seconds of `30d`, `12h`, `2w`, `90m`, `45s` (a number alone is
    refused: days or seconds would be a guess). ValueError otherwise."""
    if isinstance(value, str):
        m = _AGE.fullmatch(value.strip())
        if m:
            n = float(m.group(1)) * _AGES[m.group(2).lower()]
            if n < 1e12:
                return n
    raise ValueError(AGE_RULE)


def human(n: float) -> str:
    """Bytes as `du -h` says them: 0, 512, 4.0K, 12M, 2.5G (powers of 1024,
    one decimal below 10)."""
    n = float(n)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            if unit == "":
                return f"{n:.0f}"
            return f"{n:.1f}{unit}" if abs(n) < 10 else f"{n:.0f}{unit}"
        n /= 1024
    return f"{n:.0f}P"


def human_age(seconds: float) -> str:
    """`31d`, `5h`, `12m`, `40s`: the largest whole unit (days at most)."""
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size:.0f}{unit}"
    return f"{s:.0f}s"
