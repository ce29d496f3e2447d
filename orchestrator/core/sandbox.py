"""Run untrusted code in a curated view of the machine: what it needs, nothing else.

Patches from a mailing list are untrusted code. Building a kernel runs code
from the tree (host programs under scripts/, Kconfig, Makefiles' $(shell)),
and booting it runs the patched kernel as root in a guest that sees part of
the host over 9p. Whatever either can read, it can print into a build log,
a console or the results directory, and all of those are published (CI
artifacts, report pages). So neither sees the host: bubblewrap builds a new
root from an allowlist and everything else is simply absent.

  - the system directories (/usr, /bin, /sbin, /lib*), read-only, and the
    few files of /etc that the toolchain and the dynamic linker read;
  - the paths the step was given: readable ones read-only, writable ones
    read-write (a build: its worktree, build directory and ccache; a guest:
    the venv's interpreter and packages, guest_tests/, the kernel image,
    the results directory);
  - a private /tmp, a minimal /dev, and a /proc of its own pid namespace
    (with the host's pids visible, /proc/<pid>/environ and /proc/<pid>/root
    would lead straight back to the host's secrets);
  - no network, and an environment rebuilt from an allowlist: bwrap itself
    starts with it too, so no process in the sandbox ever held more.

Home directories, /root, /run, /var, /mnt, /opt, other checkouts and the
rest of /etc are not there. A path the step needs that lies inside one of
them (the default cache is ~/.cache/orch) is bound alone: its parents
appear as empty directories, their other contents do not.

And the step runs without privileges, also when orch runs as root (CI
does): bwrap started by root makes no user namespace, so without more the
step would keep root's capabilities in the host's namespace (open any file
by handle, mount, load modules, make device nodes through QEMU's 9p). The
sandbox's first process is orch's own data/sandbox-init.sh: it mounts the
copy-on-write layers of a series' build (buildlayer.py), then becomes
SANDBOX_UID with no capabilities at all (setpriv) before anything of the
step runs. What the step writes on the host is then owned by that id, so the
directories it may write are given to it (own()/adopt()). Run by another
user, bwrap makes a user namespace itself and the step has no capabilities
either.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from orchestrator.core import paths, proc
from orchestrator.core.errors import Exit, OrchError

# Read-only, at the same path. A directory that is a symlink on the host
# (merged /usr: /bin -> usr/bin) is recreated as the same symlink.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc the toolchain, the dynamic linker, Perl (Kbuild scripts) and
# QEMU read: Debian's alternatives (awk, cc, ld are links through it), the
# linker cache, user and group names (gcc, make and git look the uid up),
# the time zone, OpenSSL's configuration (module signing keys are made with
# `openssl req`). No credentials live in any of these; /etc/ssl/private is
# not among them.
ETC = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
       "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime", "/etc/perl",
       "/etc/timezone", "/etc/ssl/openssl.cnf")
# Host variables that pass, by name: the locale. Everything else a step
# gets is set by orch (PATH included, from the host's PATH entries that
# lie inside the view).
ENV_ALLOW = ("LANG", "LANGUAGE", "LC_*", "TZ")
# HOME points into the private /tmp: tools that want a home find an empty one.
HOME = "/tmp"
# Who a sandboxed step is when orch runs as root: nobody, an id that owns
# nothing on the host and is in /etc/passwd (tools that look their user up
# find one).
SANDBOX_UID = SANDBOX_GID = 65534
INIT = paths.DATA / "sandbox-init.sh"


@dataclass(frozen=True)
class Overlay:
    """A copy-on-write layer: `target` shows `lower`, writes land in `upper`
    (`work` is overlayfs' scratch; both on one filesystem)."""
    lower: Path
    upper: Path
    work: Path
    target: Path


@dataclass(frozen=True)
class View:
    """What a sandboxed step sees of the host besides the system directories."""
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()       # must exist
    devices: tuple[Path, ...] = ()        # host device nodes, e.g. /dev/kvm (when present)
    env: Mapping[str, str] = field(default_factory=dict)   # set by orch, on top of ENV_ALLOW
    path: tuple[str, ...] = ()            # PATH entries before the system ones
    dirs: tuple[str, ...] = ()            # empty directories to create (mount points)
    hidden: tuple[str, ...] = ()          # system directories shown empty (an empty tmpfs)
    overlays: tuple[Overlay, ...] = ()    # copy-on-write layers (a series' build)
    remove: tuple[Path, ...] = ()         # removed (through the layers) before the step runs


def as_root() -> bool:
    return os.geteuid() == 0


def unreadable(top: Path) -> Path | None:
    """The first file or directory of the tree `top` that the sandboxed
    steps cannot read when orch runs as root (they run as SANDBOX_UID: a
    suite of mode 0700 is shown to a guest that cannot list it); None when
    they can, or orch is not root. The directories above `top` do not
    matter: the view makes its own."""
    if not as_root():
        return None
    for dirpath, dirnames, filenames in os.walk(top):
        for p in [Path(dirpath), *(Path(dirpath) / f for f in filenames)]:
            try:
                st = p.lstat()
            except OSError:
                return p
            if stat.S_ISLNK(st.st_mode):
                continue
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
            if st.st_uid == SANDBOX_UID:
                need <<= 6
            elif st.st_gid == SANDBOX_GID:
                need <<= 3
            if st.st_mode & need != need:
                return p
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return None


def own(path: Path) -> None:
    """Make `path` (which orch just created) the sandboxed step's, so it can
    write there when orch runs as root; nothing to do otherwise."""
    if as_root():
        os.lchown(path, SANDBOX_UID, SANDBOX_GID)


def adopt(path: Path) -> None:
    """Give a directory the step may write to the sandbox's id, with
    everything in it: what an older orch, a --no-sandbox run or anything
    else running as root left there is root's, and the unprivileged step
    could neither replace it nor write beside it. Checked entry by entry
    every time, not once per directory (a cache kept from an older orch had
    root's subdirectories under an adopted top: CI failed so); the walk is
    cheap (0.5 s for 200,000 files, 45 ms for a kernel's build directory).
    Links are changed themselves, never followed."""
    if not as_root():
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        _adopt_beneath(fd)
    if st.st_uid != SANDBOX_UID or st.st_gid != SANDBOX_GID:
        os.lchown(path, SANDBOX_UID, SANDBOX_GID)


def _adopt_beneath(fd: int) -> None:
    """adopt() of what directory `fd` holds (and closes fd). By fds: a
    directory swapped for a link while the walk runs (the directory may be
    a step's) is not entered, so nothing outside it is ever chowned; what
    vanishes meanwhile (a concurrent build's temporary files) is skipped."""
    todo = [fd]
    try:
        while todo:
            d = todo.pop()
            try:
                for e in os.scandir(d):
                    try:
                        est = os.stat(e.name, dir_fd=d, follow_symlinks=False)
                        if est.st_uid != SANDBOX_UID or est.st_gid != SANDBOX_GID:
                            os.chown(e.name, SANDBOX_UID, SANDBOX_GID, dir_fd=d,
                                     follow_symlinks=False)
                        if stat.S_ISDIR(est.st_mode):
                            todo.append(os.open(e.name, os.O_RDONLY | os.O_DIRECTORY
                                                | os.O_NOFOLLOW, dir_fd=d))
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    except OSError as err:
                        if err.errno != errno.ELOOP:
                            raise
            finally:
                os.close(d)
    finally:
        for d in todo:
            os.close(d)


@functools.lru_cache(maxsize=None)
def probe() -> tuple[bool, str]:
    """Can bwrap make the namespaces here? Checked once per process."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False, "bwrap (bubblewrap) is not installed"
    r = proc.run([bwrap, *_system_args(), "--dev", "/dev", "--proc", "/proc",
                  "--unshare-net", "--unshare-pid", "--die-with-parent", "true"],
                 timeout=30, env=clean_env(), inherit_env=False)
    if not r.ok:
        first = r.output.strip().splitlines()[0] if r.output.strip() else f"exit {r.returncode}"
        return False, f"bwrap cannot create namespaces: {first[:200]}"
    return True, "bwrap: an allowlisted view of the host, no network"


def require() -> None:
    ok, why = probe()
    if not ok:
        raise OrchError(f"cannot sandbox untrusted code ({why}); install bubblewrap, "
                        "or pass --no-sandbox to build and boot untrusted patches unconfined",
                        Exit.INFRA)


def _system_args() -> list[str]:
    out: list[str] = []
    for d in SYSTEM:
        p = Path(d)
        if p.is_symlink():
            out += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            out += ["--ro-bind", d, d]
    for f in ETC:
        if os.path.lexists(f):
            out += ["--ro-bind", f, f]
    return out


def _parents(paths) -> list[str]:
    """Every ancestor directory of the bound paths, outermost first: bwrap
    makes missing ones mode 0700 (root's), which an unprivileged step could
    not pass through; made here with --dir they are 0755 and empty."""
    out: dict[str, None] = {}
    for p in paths:
        for a in reversed(Path(p).parents):
            if str(a) not in ("/", "/tmp"):
                out[str(a)] = None
    return list(out)


def _init_args(view: View) -> list[str]:
    """data/sandbox-init.sh's options for this view (see its header)."""
    out = [str(INIT)]
    for o in view.overlays:
        for p in (o.lower, o.upper, o.work, o.target):
            if any(c in str(p) for c in ",:\\"):
                raise OrchError(f"cannot make a copy-on-write layer at {p}: overlayfs "
                                "takes no ',', ':' or '\\' in its paths", Exit.INFRA)
        out += ["--overlay", str(o.lower), str(o.upper), str(o.work), str(o.target)]
    for p in view.remove:
        out += ["--rm", str(p)]
    if as_root():
        groups = ",".join(str(g) for g in _device_groups(view)) or "-"
        out += ["--user", str(SANDBOX_UID), str(SANDBOX_GID), groups, "--caps"]
    elif view.overlays:
        out += ["--caps"]
    return [*out, "--"]


def _device_groups(view: View) -> list[int]:
    """The groups that open the view's devices (kvm for /dev/kvm): the
    unprivileged step keeps only those."""
    gids = []
    for d in view.devices:
        try:
            st = os.stat(d)
        except OSError:
            continue
        if st.st_gid != 0 and st.st_mode & 0o060:
            gids.append(st.st_gid)
    return sorted(set(gids))


def _in_view(entry: str, view: View) -> bool:
    if not entry.startswith("/"):
        return False
    roots = [*SYSTEM, *map(str, view.readable), *map(str, view.writable)]
    return any(entry == r or entry.startswith(r.rstrip("/") + "/") for r in roots)


def clean_env(view: View | None = None, host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandboxed step: the allowlisted host
    variables, a PATH of the view, HOME in the private /tmp, and what orch
    sets for the step. Never the host's environment as a whole."""
    host = os.environ if host is None else host
    view = view or View()
    env = {k: v for k, v in host.items() if any(fnmatch.fnmatchcase(k, p) for p in ENV_ALLOW)}
    path = [*view.path, *(e for e in host.get("PATH", "").split(":") if _in_view(e, view))]
    for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"):
        if d not in path:
            path.append(d)
    env.update({"PATH": ":".join(dict.fromkeys(path)), "HOME": HOME})
    env.update(view.env)
    return env


def wrap(argv: Sequence[str], view: View, cwd: Path) -> list[str]:
    """argv run by bwrap in `view`. bwrap passes on its own environment, so
    it must be started with `clean_env(view)` alone: use run(), which does."""
    require()
    # Order matters: later mounts go on top. The private /tmp first, so a
    # path the step needs under the host's /tmp (a CI clone, a test's
    # directory) is bound over it and stays visible.
    # /etc and /etc/ssl first, 0755: bwrap would make them 0700 for the
    # files of ETC bound in them, and the step (nobody) could not reach its
    # awk, ld.so.cache or passwd.
    etc = [a for d in _parents(f for f in ETC if os.path.lexists(f)) for a in ("--dir", d)]
    out = [shutil.which("bwrap") or "bwrap", *etc, *_system_args(),
           "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp",
           "--perms", "1777", "--dir", "/var/tmp",
           "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-pid",
           "--die-with-parent", "--new-session"]
    if view.overlays and not as_root():
        # Mounting the layers needs capabilities: in a user namespace of its
        # own, as its root; sandbox-init drops them all before the step.
        out += ["--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL"]
    for d in _parents([*view.readable, *view.writable, *view.devices, INIT,
                       *(x for o in view.overlays for x in (o.lower, o.upper, o.target))]):
        out += ["--dir", d]
    for d in view.dirs:
        out += ["--dir", d]
    for d in view.hidden:
        if os.path.isdir(d):
            out += ["--tmpfs", d]
    for d in view.devices:
        out += ["--dev-bind-try", str(d), str(d)]
    for p in dict.fromkeys(view.readable):
        if os.path.exists(p):
            out += ["--ro-bind", str(p), str(p)]
    for p in dict.fromkeys(view.writable):
        out += ["--bind", str(p), str(p)]
    for o in view.overlays:
        # The layer's lower side read-only, its upper and work directories
        # (one bind: overlayfs wants them on one mount) writable, and the
        # target, where the step sees the merged tree.
        out += ["--ro-bind", str(o.lower), str(o.lower), "--bind", str(o.upper.parent),
                str(o.upper.parent), "--dir", str(o.target)]
    out += ["--ro-bind", str(INIT), str(INIT)]
    out += ["--chdir", str(cwd), "--", "/bin/sh", *_init_args(view), *map(str, argv)]
    return out


def run(argv: Sequence[str], view: View, cwd: Path, **kw) -> proc.Result:
    """proc.run of argv in `view`, with bwrap itself (and so everything in
    the sandbox) started with the clean environment alone."""
    # An overlay's lower directory is written too, in effect: overlayfs
    # checks a merged directory's owner and mode as the lower one's, so a
    # root-owned lower (a ccache an older orch filled as root) would refuse
    # the unprivileged step every new file in its layer.
    for p in [*view.writable, *(o.lower for o in view.overlays)]:
        adopt(p)
    return proc.run(wrap(argv, view, cwd), cwd=cwd, env=clean_env(view), inherit_env=False, **kw)
