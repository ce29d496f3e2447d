"""Run untrusted build steps in a sandbox: no network, and a read-only view
of the machine except the directories the step may write.

Patches from a mailing list are untrusted code, and building a kernel runs
code from the tree (host programs under scripts/, Kconfig, Makefiles), so
every make of patched source goes through here. bubblewrap gives a new
network namespace (only a down loopback) and a mount namespace with / bound
read-only; the build directory and ccache are bound writable on top.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Sequence

from . import proc
from .errors import Exit, OrchError


@functools.lru_cache(maxsize=None)
def probe() -> tuple[bool, str]:
    """Can bwrap make the namespaces here? Checked once per process."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False, "bwrap (bubblewrap) is not installed"
    r = proc.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                  "--unshare-net", "--die-with-parent", "true"], timeout=30)
    if not r.ok:
        first = r.output.strip().splitlines()[0] if r.output.strip() else f"exit {r.returncode}"
        return False, f"bwrap cannot create namespaces: {first[:200]}"
    return True, "bwrap: no network, read-only except the build directory and ccache"


def wrap(argv: Sequence[str], writable: Sequence[Path], cwd: Path,
         readable: Sequence[Path] = ()) -> list[str]:
    """argv run under bwrap; only `writable` paths (which must exist) can be written."""
    ok, why = probe()
    if not ok:
        raise OrchError(f"cannot sandbox the build ({why}); install bubblewrap, "
                        "or pass --no-sandbox to build untrusted patches unconfined",
                        Exit.INFRA)
    # A private /tmp: nothing a build leaves there survives it, and nothing
    # of the host's /tmp is writable (make 4.3 writes some temp files there
    # whatever TMPDIR says). The paths the step needs are bound after it,
    # so ones under /tmp stay visible.
    out = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--tmpfs", "/tmp", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--die-with-parent"]
    for p in readable:
        out += ["--ro-bind", str(p), str(p)]
    for p in writable:
        out += ["--bind", str(p), str(p)]
    out += ["--chdir", str(cwd), "--", *map(str, argv)]
    return out
