"""ccache shared between machines: ccache's remote storage, from inside the
build sandbox.

Two settings, by environment (a CI engine's secrets land there):

  ORCH_CCACHE_REMOTE_READ   every build may read it: the one a series build
                            gets, with credentials that can only read
  ORCH_CCACHE_REMOTE_WRITE  baseline builds read and write it; never given
                            to a build of a series

A series is untrusted code: its Makefiles and Kconfig run inside the build
sandbox and could talk to the cache server directly, so "read only" must be
the server's rule, not ccache's setting. With Redis that is an ACL user that
may only GET and EXISTS (examples/redis/orch-ccache.acl); orch also marks
the series' storage read-only to ccache, so ccache does not even try.

The build sandbox has no network, so the server is reached through a Unix
socket bound into the view (`redis+unix:` URLs), or a directory (`file:`).
A TCP URL works only with --no-sandbox.

build.build_env() sets ccache's base_dir to the orch cache, so paths in
compile commands are hashed relative to it: two runners with different cache
directories (or checkouts) still hit each other's entries.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.core.errors import BadInput

READ_ENV = "ORCH_CCACHE_REMOTE_READ"
WRITE_ENV = "ORCH_CCACHE_REMOTE_WRITE"

# False in a CI series job (orch job): none of its builds writes, not even
# a baseline it had to build itself. Module state like paths.use_cache: the
# command sets it once.
_writes_allowed = True


def forbid_writes() -> None:
    global _writes_allowed
    _writes_allowed = False


def allow_writes() -> None:
    global _writes_allowed
    _writes_allowed = True


@dataclass(frozen=True)
class Remote:
    url: str                 # as ccache takes it, without attributes
    writable: bool
    socket: Path | None = None   # what the sandbox must show (redis+unix)
    directory: Path | None = None   # (file:)

    def storage(self) -> str:
        """CCACHE_REMOTE_STORAGE."""
        return self.url if self.writable else f"{self.url}|read-only=true"

    def describe(self) -> str:
        where = self.socket or self.directory or _hide_password(self.url)
        return f"{where} ({'read-write' if self.writable else 'read-only'})"


def _hide_password(url: str) -> str:
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def parse(url: str, writable: bool, sandbox: bool = True) -> Remote:
    url = url.strip()
    if "|" in url:
        raise BadInput(f"shared ccache URL {_hide_password(url)!r}: give it without ccache "
                       "attributes (orch sets read-only itself)")
    if url.startswith("redis+unix:"):
        rest = url[len("redis+unix:"):]
        path = urlsplit(url).path if rest.startswith("//") else rest.split("?", 1)[0]
        if not path.startswith("/"):
            raise BadInput(f"shared ccache URL {_hide_password(url)!r}: the socket path must "
                           "be absolute")
        return Remote(url, writable, socket=Path(path))
    if url.startswith("file:"):
        path = url[len("file:"):].removeprefix("//").split("|", 1)[0]
        if not path.startswith("/"):
            raise BadInput(f"shared ccache URL {url!r}: the directory must be absolute")
        return Remote(url, writable, directory=Path(path))
    if url.startswith(("redis://", "http://", "https://")):
        if sandbox:
            raise BadInput(f"shared ccache URL {_hide_password(url)!r}: builds run without "
                           "network; use a Unix socket (redis+unix:/path) or file:/dir, "
                           "or --no-sandbox")
        return Remote(url, writable)
    raise BadInput(f"shared ccache URL {_hide_password(url)!r}: not redis+unix:, file:, "
                   "redis:// or http(s)://")


def for_build(side: str, sandbox: bool = True,
              environ: os._Environ | dict | None = None) -> Remote | None:
    """The shared ccache a build of `side` gets, if any: write access only
    for a baseline build where writes are allowed, read access otherwise."""
    env = os.environ if environ is None else environ
    if side == "baseline" and _writes_allowed and env.get(WRITE_ENV):
        return parse(env[WRITE_ENV], True, sandbox)
    if env.get(READ_ENV):
        return parse(env[READ_ENV], False, sandbox)
    return None


def view_paths(remote: Remote | None) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(readable, writable) the sandbox must add. A Unix socket is connected
    to, which a read-only bind allows; a file: directory is written only by
    a build that may write."""
    if remote is None:
        return (), ()
    if remote.socket is not None:
        return (remote.socket,), ()
    if remote.directory is not None:
        return ((), (remote.directory,)) if remote.writable else ((remote.directory,), ())
    return (), ()
