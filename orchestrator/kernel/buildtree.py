"""The build directories a build works in, and how orch reads them from outside.

Two kinds, one per (workspace, config):

  trusted  the long-lived build directory and orch's ccache, written only by
           baseline builds (the tree orch was pointed at, never a series);
  layer    a series' build never writes those: it works in a copy-on-write
           layer over both (kernel overlayfs, mounted by sandbox-init inside
           the sandbox), so its objects, Makefile tricks, future-dated files
           and ccache.conf stay in the layer's upper directories. A layer
           lives as long as the Workspace object of one run (a series'
           each-patch steps and a bisect's steps build on in it) and is
           thrown away after; it is never the lower side of anything.

So nothing an untrusted step wrote is ever read by a later trusted step, and
a patched build is still incremental on the baseline's objects.

Everything in a build directory was written by a build, so orch reads it
as it reads a guest's output: component by component without following a
link (openat with O_NOFOLLOW), regular files only, never a FIFO or a device,
with a size cap. For a layer it reads what the build saw: the upper
directory's file, else the lower one's, with overlayfs' whiteouts (a 0/0
character device: deleted) and opaque directories (the lower side hidden)
honoured. orch's own bookkeeping (the kconfig stamp, the warning snapshot,
the last tree built, the interrupted-build marker) lives in `meta`, outside
every view.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import cache_use, proc, sandbox, untrusted
from orchestrator.core.paths import cache_dir

MAX_READ = 1 << 30          # vmlinux of a debug config is a few hundred MiB
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


class UnsafeFile(Exception):
    """A file a build left that orch will not read: a link, not a regular
    file, or too big."""


@dataclass
class Layer:
    """A series' copy-on-write layer over a trusted build directory and ccache."""
    root: Path                 # cache/layers/<name>: fs/ (in the view) and meta/
    generation: int            # the trusted directory's generation it was made over

    @property
    def upper(self) -> Path:
        return self.root / "fs" / "upper"

    @property
    def ccache_upper(self) -> Path:
        return self.root / "fs" / "cupper"

    def overlays(self, builddir: Path, ccache: Path) -> tuple[sandbox.Overlay, ...]:
        fs = self.root / "fs"
        return (sandbox.Overlay(builddir, fs / "upper", fs / "work", builddir),
                sandbox.Overlay(ccache, fs / "cupper", fs / "cwork", ccache))


@dataclass
class BuildDir:
    """A build directory as make sees it (`path`, its O=), with where orch
    keeps its notes on it (`meta`) and, for a series, its layer."""
    path: Path
    meta: Path
    layer: Layer | None = None

    @classmethod
    def of(cls, builddir: "Path | BuildDir") -> "BuildDir":
        """A BuildDir as given, or a plain directory's (its notes beside it,
        in DIR.orch-meta): what a caller outside a workspace passes."""
        if isinstance(builddir, BuildDir):
            return builddir
        return cls(builddir, builddir.with_name(builddir.name + ".orch-meta"))

    @property
    def trusted(self) -> bool:
        return self.layer is None

    # -- orch's notes ----------------------------------------------------

    def state(self) -> dict:
        try:
            data = json.loads((self.meta / "state.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def set_state(self, **kw) -> None:
        self.meta.mkdir(parents=True, exist_ok=True)
        data = {**self.state(), **kw}
        tmp = self.meta / f".state.{os.getpid()}"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.meta / "state.json")

    def discard(self, rels: list[str]) -> None:
        """Have these removed in the build's view before its next make
        (sandbox-init does it, through a layer too), whenever that is."""
        pending = self.state().get("remove") or []
        self.set_state(remove=list(dict.fromkeys([*pending, *rels])))

    def take_removals(self) -> list[str]:
        pending = [r for r in self.state().get("remove") or [] if isinstance(r, str)]
        if pending:
            self.set_state(remove=[])
        return [r for r in pending if _parts(r)]

    # -- reading what the build left ---------------------------------------

    def find(self, rel: str) -> int | None:
        """An open fd of rel's file as the build saw it, or None when it has
        none there. The caller closes it."""
        parts = _parts(rel)
        if self.layer is not None:
            return _open_in_layer(self.layer.upper, self.path, parts)
        return _open_beneath(self.path, parts)

    def read(self, rel: str, cap: int = MAX_READ) -> bytes | None:
        """rel's bytes, None when there is no such file; UnsafeFile when it
        is there but not a regular file of at most `cap` bytes."""
        found = self.find(rel)
        if found is None:
            return None
        return _read_fd(found, rel, cap)

    def chunks(self, rel: str, cap: int = MAX_READ, size: int = 1 << 20):
        """rel's bytes piece by piece (a vmlinux is searched, not held):
        None when there is no such file, UnsafeFile as read()."""
        found = self.find(rel)
        if found is None:
            return None
        return _chunks_fd(found, rel, cap, size)

    def exists(self, rel: str) -> bool:
        return self.stat(rel) is not None

    def copy_out(self, rel: str, dest: Path, cap: int = MAX_READ) -> bool:
        """Copy rel (a regular file) to dest, orch's own path; False if absent."""
        data = self.read(rel, cap)
        if data is None:
            return False
        dest.write_bytes(data)
        return True

    def stat(self, rel: str) -> os.stat_result | None:
        return _fstat_closed(self.find(rel))

    def in_upper(self, rel: str) -> os.stat_result | None:
        """rel as this layer's build wrote it (a regular file in the upper
        directory), else None."""
        if self.layer is None:
            return self.stat(rel)
        return _fstat_closed(_open_beneath(self.layer.upper, _parts(rel)))

    # -- writing orch's inputs into it -------------------------------------

    def write(self, rel: str, data: bytes) -> None:
        """Put a file orch made where the build will see it: into the trusted
        directory, or a layer's upper one (the layer is not mounted between
        builds). An existing entry of any kind is replaced, never written
        through."""
        base = self.layer.upper if self.layer is not None else self.path
        parts = _parts(rel)
        fd = _mkdirs_beneath(base, parts[:-1])
        try:
            try:
                st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    raise UnsafeFile(f"{rel} is a directory")
                os.unlink(parts[-1], dir_fd=fd)
            except FileNotFoundError:
                pass
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          0o644, dir_fd=fd)
            try:
                os.write(out, data)
                if sandbox.as_root():
                    os.fchown(out, sandbox.SANDBOX_UID, sandbox.SANDBOX_GID)
            finally:
                os.close(out)
        finally:
            os.close(fd)

    def mkdir(self, rel: str) -> None:
        base = self.layer.upper if self.layer is not None else self.path
        os.close(_mkdirs_beneath(base, _parts(rel)))


def _fstat_closed(found: int | None) -> os.stat_result | None:
    if found is None:
        return None
    try:
        return os.fstat(found)
    finally:
        os.close(found)


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise ValueError(f"not a path inside a build directory: {rel!r}")
    return parts


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open_dir(name: str, dir_fd: int | None) -> int | None:
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None   # a link where a directory should be: not followed
        raise


def _open_file(name: str, dir_fd: int) -> int | None:
    """An fd of the regular file `name`; None if there is none; UnsafeFile
    for anything else (a link, a FIFO: O_NONBLOCK, so opening one never
    waits; a device is refused before it is opened)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{name} is not a regular file")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        raise UnsafeFile(f"{name} cannot be opened: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):   # swapped since the stat
        os.close(fd)
        raise UnsafeFile(f"{name} is not a regular file")
    return fd


def _open_beneath(root: Path, parts: list[str]) -> int | None:
    fd = _open_dir(str(root), None)
    if fd is None:
        return None
    try:
        for p in parts[:-1]:
            nxt = _open_dir(p, fd)
            os.close(fd)
            fd = nxt
            if fd is None:
                return None
        f = _open_file(parts[-1], fd)
        return f
    finally:
        if fd is not None:
            os.close(fd)


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    for name in _OPAQUE:
        try:
            if os.getxattr(fd, name) in (b"y", b"x"):
                return True
        except OSError:
            continue
    return False


def _open_in_layer(upper: Path, lower: Path, parts: list[str]) -> int | None:
    """overlayfs' lookup, done by hand on the unmounted layer: each name in
    the upper directory first; a whiteout ends the search (deleted); an
    opaque directory hides the lower side from there down."""
    fd = _open_dir(str(upper), None)
    lower_visible = True
    try:
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if fd is None:
                break
            try:
                st = os.stat(p, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.close(fd)
                fd = None
                break
            if _whiteout(st):
                return None
            if last:
                f = _open_file(p, fd)
                return f
            if not stat.S_ISDIR(st.st_mode):
                return None          # a file or link where the build saw one: no lower
            nxt = _open_dir(p, fd)
            os.close(fd)
            fd = nxt
            if fd is not None and _opaque(fd):
                lower_visible = False
        else:
            return None
    finally:
        if fd is not None:
            os.close(fd)
    return _open_beneath(lower, parts) if lower_visible else None


def _read_fd(fd: int, rel: str, cap: int) -> bytes:
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise UnsafeFile(f"{rel} is larger than {cap} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise UnsafeFile(f"{rel} is larger than {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _chunks_fd(fd: int, rel: str, cap: int, size: int):
    return untrusted.fd_chunks(fd, cap, size, lambda: UnsafeFile(f"{rel} is larger than {cap} bytes"))


def _mkdirs_beneath(root: Path, parts: list[str]) -> int:
    """An fd of root/parts..., each made (the sandbox's) when missing;
    a link on the way is an error, never followed."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(root), _DIR)
    for p in parts:
        try:
            os.mkdir(p, 0o755, dir_fd=fd)
            if sandbox.as_root():
                os.chown(p, sandbox.SANDBOX_UID, sandbox.SANDBOX_GID, dir_fd=fd,
                         follow_symlinks=False)
        except FileExistsError:
            pass
        nxt = _open_dir(p, fd)
        os.close(fd)
        if nxt is None:
            raise UnsafeFile(f"{p} in {root} is not a directory")
        fd = nxt
    return fd


# -- which directory a build gets -------------------------------------------

def meta_dir(ws_root: Path, config: str) -> Path:
    return ws_root / "meta" / config


def trusted(ws_root: Path, builddir: Path, config: str) -> BuildDir:
    return BuildDir(builddir, meta_dir(ws_root, config))


def new_layer(trusted_dir: BuildDir, name: str) -> BuildDir:
    """A fresh layer over the trusted directory, starting from its notes."""
    root = cache_dir() / "layers" / f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
    for d in ("fs/upper", "fs/work", "fs/cupper", "fs/cwork", "meta"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for d in ("fs", "fs/upper", "fs/work", "fs/cupper", "fs/cwork"):
        sandbox.own(root / d)
    state = trusted_dir.state()
    bd = BuildDir(trusted_dir.path, root / "meta",
                  Layer(root, int(state.get("generation", 0))))
    bd.set_state(**{k: v for k, v in state.items() if k != "generation"})
    src_snap = trusted_dir.meta / "warnings.json"
    if src_snap.exists():
        shutil.copy2(src_snap, bd.meta / "warnings.json")
    return bd


def current(layer_dir: BuildDir, trusted_dir: BuildDir, name: str) -> BuildDir:
    """The layer, or a new one when the trusted directory was rebuilt since
    it was made (a layer's lower side must not change under its upper)."""
    assert layer_dir.layer is not None
    if int(trusted_dir.state().get("generation", 0)) != layer_dir.layer.generation \
            or (layer_dir.meta / "building").exists():
        drop(layer_dir)
        return new_layer(trusted_dir, name)
    return layer_dir


def drop(bd: BuildDir) -> None:
    if bd.layer is not None:
        remove_tree(bd.layer.root)


def remove_tree(path: Path) -> None:
    """Remove `path` and everything under it, best effort: the cache's one
    removal (cache_use.remove_at), which gets through overlayfs' work
    directories (mode 000, which only root passes) and removes links,
    never following them."""
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        cache_use.remove_at(parent, path.name)
    except OSError:
        pass


def sweep(max_age: float = 3600.0) -> None:
    """Remove layers whose orch process is gone (killed runs)."""
    root = cache_dir() / "layers"
    if not root.is_dir():
        return
    for d in root.iterdir():
        try:
            pid = int(d.name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        if proc.gone(pid) or time.time() - d.stat().st_mtime > 7 * 86400 + max_age:
            remove_tree(d)
