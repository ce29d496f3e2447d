"""Directory trees that untrusted code wrote: a guest's results directory
(the kernel under test, from a mailing list, writes it over 9p as root) and
the run directories in a CI job's shard.

Such a tree may hold what no test writes: symbolic links (to the user's
keys, to /proc/self/environ: an artifact uploader that follows links
publishes the target), FIFOs (a reader blocks for ever), device nodes,
sockets, setuid or setgid files, a sparse file of a terabyte, a million
entries, directories nested deeper than any path can name. Two operations,
both walking by file descriptor with O_NOFOLLOW at every step, without
recursion, and never opening anything but a directory or a regular file:

  clean()  in place, after each boot: whatever is not a regular file or a
           directory, or is over the quota, is removed, and modes are made
           plain (no setuid, setgid, sticky or world-writable bit);
  copy()   the regular files and directories of a tree into a new one,
           within a quota (orch merge: a shard's run directories).

Each returns what it removed or left out, one line an entry, for the caller
to say: nothing is dropped silently.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.core.sanitize import clean as clean_text
from orchestrator.core.untrusted import UntrustedError


@dataclass(frozen=True)
class Quota:
    file: int       # bytes in one file
    total: int      # bytes in all files
    entries: int    # files and directories
    depth: int      # directories below the top


# A guest's results directory. What the suite writes there is the JUnit
# file, pytest's output (harness.log), scale.json and a few status files:
# tens of kB for the whole suite. junit.py parses at most 8 MiB and
# result_cache keeps at most 16 MiB of a file, so more is never used.
RESULTS = Quota(file=16 << 20, total=64 << 20, entries=1000, depth=8)
# A run directory in a shard: run.json, reports, build logs and consoles
# (each capped at proc.MAX_LOG, 64 MiB, as orch writes it), and one results
# directory (RESULTS) per side and config.
RUN_DIR = Quota(file=64 << 20, total=512 << 20, entries=10000, depth=16)
# A kselftest target's install (kernel/kselftest_build.py), written by the
# tree's own Makefiles in the build sandbox: 7.2.13's mm is 92 files, 3.4 MiB
# (cachestat and mincore: a handful of files, under 100 kB).
KSELFTEST = Quota(file=64 << 20, total=512 << 20, entries=20000, depth=12)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: were it a FIFO after all, opening it would not wait for a writer.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20

# visit(dir_fd, name, lstat, parts of its directory) -> enter it (a directory)
Visit = Callable[[int, str, os.stat_result, tuple[str, ...]], bool]


def plain_parts(rel: str) -> tuple[str, ...]:
    """The components of a relative path that stays below its top: no
    absolute path, no "..", nothing empty."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith("/") \
            or any(x in ("", ".", "..") for x in rel.split("/")):
        raise UntrustedError(f"{clean_text(str(rel), 200)!r} is not a path inside its "
                             "directory")
    return PurePosixPath(rel).parts


def clean(top: Path, quota: Quota = RESULTS, first: tuple[str, ...] = ()) -> list[str]:
    """Leave in `top` only directories and regular files within `quota`,
    with plain modes. `first`: names at the top counted first against the
    quota (orch's own files: a guest's extra files cannot push them out).
    Returns one line for each entry removed or changed: what is not a file
    (links, FIFOs, devices, setuid bits) before what is over the quota, as
    a reader wants them when there are thousands."""
    try:
        top_fd = os.open(top, _DIR)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{top.name}: cannot be opened ({_why(e)})"]
    tally, trash = _Tally(quota), _Trash(top_fd)
    odd: list[str] = []
    over: list[tuple[str, str]] = []

    def visit(fd: int, name: str, st: os.stat_result, parts: tuple[str, ...]) -> bool:
        if not parts and name == trash.name:
            return False
        rel = _shown(parts, name)
        why = tally.refuse(st, len(parts))
        if why:
            why += ", removed" + _remove(fd, name, st, trash)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                over.append((rel, why))
            else:
                odd.append(f"{rel}: {why}")
            return False
        odd.extend(f"{rel}: {note}" for note in _make_plain(fd, name, st))
        return stat.S_ISDIR(st.st_mode)

    try:
        unread = _walk(top_fd, visit, first)
        unread += trash.empty()
    finally:
        os.close(top_fd)
    return odd + _grouped(over) + unread


def _grouped(entries: list[tuple[str, str]]) -> list[str]:
    """One line an entry, but one line for many of the same reason (a
    guest's million files over the quota)."""
    by_why: dict[str, list[str]] = {}
    for rel, why in entries:
        by_why.setdefault(why, []).append(rel)
    lines = []
    for why, rels in by_why.items():
        if len(rels) <= 3:
            lines += [f"{rel}: {why}" for rel in rels]
        else:
            lines.append(f"{rels[0]} and {len(rels) - 1} more: {why}")
    return lines


def copy(root: Path, parts: tuple[str, ...], dest: Path, quota: Quota = RUN_DIR) -> list[str]:
    """Copy root/parts (each component a real directory, never a link) to
    `dest` (which must not exist): directories and regular files within
    `quota`, with plain modes; everything else is left out. Returns one line
    for each entry left out. UntrustedError when the source is not a plain
    directory; FileNotFoundError when it is not there."""
    try:
        src = _open_dir(os.open(root, _DIR), parts, close_top=True)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise UntrustedError(f"{clean_text('/'.join(parts), 200)} is not a directory "
                             f"inside {root.name} ({_why(e)})")
    said: list[str] = []
    try:
        os.mkdir(dest, 0o755)
        dest_fd = os.open(dest, _DIR)
        try:
            said += _copy_tree(src, dest_fd, quota)
        finally:
            os.close(dest_fd)
    finally:
        os.close(src)
    return said


def _copy_tree(src: int, dest: int, quota: Quota) -> list[str]:
    tally, open_dest = _Tally(quota), _DestDirs(dest)
    said: list[str] = []
    over: list[tuple[str, str]] = []

    def visit(fd: int, name: str, st: os.stat_result, parts: tuple[str, ...]) -> bool:
        rel = _shown(parts, name)
        why = tally.refuse(st, len(parts))
        if why:
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                over.append((rel, f"{why}, left out"))
            else:
                said.append(f"{rel}: {why}, left out")
            return False
        try:
            out = open_dest(parts)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(name, 0o755, dir_fd=out)
                return True
            _copy_file(fd, name, out, st.st_size, _plain_mode(st))
        except OSError as e:
            said.append(f"{rel}: not copied ({_why(e)})")
        return False

    try:
        unread = _walk(src, visit)
    finally:
        open_dest.close()
    return said + _grouped(over) + unread


class _DestDirs:
    """The destination directory matching the source directory being walked
    (the walk visits one directory's entries together: one open at a time)."""

    def __init__(self, top: int):
        self.top, self.parts, self.fd = top, (), os.dup(top)

    def __call__(self, parts: tuple[str, ...]) -> int:
        if parts != self.parts:
            os.close(self.fd)
            self.fd = -1
            self.fd, self.parts = _open_dir(self.top, parts), parts
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def _copy_file(src_dir: int, name: str, dest_dir: int, size: int, mode: int) -> None:
    """At most `size` bytes (its size when it was judged: it cannot grow
    past the quota while it is copied)."""
    fd = os.open(name, _FILE, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                      | os.O_CLOEXEC, mode, dir_fd=dest_dir)
        try:
            left = size
            while left > 0:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    break
                left -= len(chunk)
                while chunk:
                    chunk = chunk[os.write(out, chunk):]
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _walk(top: int, visit: Visit, first: tuple[str, ...] = ()) -> list[str]:
    """visit() each entry under the directory open as `top`, a directory's
    entries together and then, by name, each subdirectory it says to enter
    (depth first: the quota meets a deep tree and a wide one in the order of
    their names). One directory open at a time besides `top`, no recursion,
    however deep or wide the tree. Returns what could not be read."""
    said: list[str] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        try:
            fd = _open_dir(top, parts)
        except OSError as e:
            said.append(f"{_shown_dir(parts)}: cannot be read ({_why(e)})")
            continue
        try:
            try:
                names = _listed(fd, first if not parts else ())
            except OSError as e:
                said.append(f"{_shown_dir(parts)}: cannot be listed ({_why(e)})")
                names = []
            entered = []
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as e:
                    said.append(f"{_shown(parts, name)}: cannot be examined ({_why(e)})")
                    continue
                if visit(fd, name, st, parts):
                    entered.append((*parts, name))
            pending += reversed(entered)   # popped in name order
        finally:
            os.close(fd)
    return said


def _listed(fd: int, first: tuple[str, ...]) -> list[str]:
    """A directory's names, `first` ones first, then by name (the quota
    keeps the same entries whichever order the filesystem lists them in)."""
    return sorted(os.listdir(fd), key=lambda n: (n not in first, n))


def _open_dir(top: int, parts: tuple[str, ...], close_top: bool = False) -> int:
    """A new descriptor of top/parts, each component opened with
    O_NOFOLLOW: a link anywhere on the way is an error (ELOOP), not a turn."""
    cur = top if close_top else os.dup(top)
    for p in parts:
        try:
            nxt = os.open(p, _DIR, dir_fd=cur)
        finally:
            os.close(cur)
        cur = nxt
    return cur


@dataclass
class _Tally:
    """What a walk has kept so far, against its quota."""
    quota: Quota
    entries: int = 0
    bytes: int = 0

    def refuse(self, st: os.stat_result, depth: int) -> str | None:
        """Why an entry may not be kept (None: it is, and counted)."""
        q, mode = self.quota, st.st_mode
        if stat.S_ISDIR(mode):
            if depth >= q.depth:
                return f"a directory nested deeper than {q.depth}"
        elif not stat.S_ISREG(mode):
            return _kind(mode)
        elif st.st_size > q.file:
            return f"{_size(st.st_size)}, over the {_size(q.file)} a file may hold"
        elif self.bytes + st.st_size > q.total:
            return f"{_size(st.st_size)}, over the {_size(q.total)} all files may hold"
        if self.entries >= q.entries:
            return f"over the {q.entries} entries a directory tree may hold"
        self.entries += 1
        if stat.S_ISREG(mode):
            self.bytes += st.st_size
        return None


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _plain_mode(st: os.stat_result) -> int:
    """rwxr-xr-x or rw-r--r--: nothing setuid, setgid, sticky or writable by others."""
    return 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644


def _make_plain(fd: int, name: str, st: os.stat_result) -> list[str]:
    """Make a kept entry's mode plain; what was worth saying about it."""
    notes = []
    mode, want = stat.S_IMODE(st.st_mode), _plain_mode(st)
    if mode & (stat.S_ISUID | stat.S_ISGID):
        notes.append("setuid/setgid bit removed")
    if mode != want:
        try:
            os.chmod(name, want, dir_fd=fd, follow_symlinks=False)
        except NotImplementedError:   # an old libc: it was lstat'ed a file or directory
            os.chmod(name, want, dir_fd=fd)
        except OSError as e:
            notes.append(f"its mode could not be made plain ({_why(e)})")
    if stat.S_ISREG(st.st_mode) and _drop_capabilities(fd, name):
        notes.append("file capabilities removed")   # as good as setuid
    return notes


def _drop_capabilities(fd: int, name: str) -> bool:
    # removexattr has no dir_fd: the directory through /proc, the entry
    # itself not followed.
    try:
        os.removexattr(f"/proc/self/fd/{fd}/{name}", "security.capability",
                       follow_symlinks=False)
        return True
    except OSError:   # none (ENODATA), or no xattrs here
        return False


def _remove(fd: int, name: str, st: os.stat_result, trash: _Trash) -> str:
    """Unlink a non-directory (never opened); a directory goes to the trash.
    Returns "" or why it could not be removed."""
    try:
        if stat.S_ISDIR(st.st_mode):
            trash.take(fd, name)
        else:
            os.unlink(name, dir_fd=fd)
        return ""
    except OSError as e:
        return f" (could not be removed: {_why(e)})"


class _Trash:
    """Directories to remove, moved into one directory of their own under
    the top, and emptied without recursion: each subdirectory is moved up
    into the trash before its parent is removed, so no path ever gets deep
    and at most one directory is open (a guest can nest them thousands
    deep, past Python's recursion limit and PATH_MAX)."""

    def __init__(self, top: int):
        self.top, self.fd, self.count = top, -1, 0
        self.name = f".orch-removing-{secrets.token_hex(8)}"

    def take(self, fd: int, name: str) -> None:
        if self.fd < 0:
            os.mkdir(self.name, 0o700, dir_fd=self.top)
            self.fd = os.open(self.name, _DIR, dir_fd=self.top)
        os.rename(name, self._next(), src_dir_fd=fd, dst_dir_fd=self.fd)

    def _next(self) -> str:
        self.count += 1
        return str(self.count)

    def empty(self) -> list[str]:
        if self.fd < 0:
            return []
        try:
            pending = os.listdir(self.fd)
            while pending:
                self._empty_one(pending.pop(), pending)
            os.close(self.fd)
            self.fd = -1
            os.rmdir(self.name, dir_fd=self.top)
            return []
        except OSError as e:
            return [f"{self.name}: removed directories could not be emptied ({_why(e)})"]
        finally:
            if self.fd >= 0:
                os.close(self.fd)

    def _empty_one(self, name: str, pending: list[str]) -> None:
        # Its owner may have left it mode 000: orch not root could not
        # list it.
        os.chmod(name, 0o700, dir_fd=self.fd, follow_symlinks=False)
        fd = os.open(name, _DIR, dir_fd=self.fd)
        try:
            for entry in os.listdir(fd):
                if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    new = self._next()
                    os.rename(entry, new, src_dir_fd=fd, dst_dir_fd=self.fd)
                    pending.append(new)
                else:
                    os.unlink(entry, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=self.fd)


def _shown(parts: tuple[str, ...], name: str) -> str:
    """A path as a report may show it: any bytes, no control characters."""
    raw = "/".join((*parts, name))
    return clean_text(os.fsencode(raw).decode("utf-8", "replace"), 200)


def _shown_dir(parts: tuple[str, ...]) -> str:
    return _shown(parts[:-1], parts[-1]) if parts else "."


def _size(n: int) -> str:
    if n < 1 << 20:
        return f"{n} bytes"
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n / (1 << 20):.1f} MiB"


def _why(e: OSError) -> str:
    if e.errno == 40:   # ELOOP: O_NOFOLLOW met a link
        return "a symbolic link, not followed"
    return e.strerror or str(e)
