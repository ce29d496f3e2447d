"""Out-of-tree kernel builds, ccache on, finished kernels cached.

A finished kernel is cached by (source tree id, final .config, toolchain):
running the same series again, or a second series on the same base, boots
the cached baseline instead of building it. The build directory itself is
long-lived per (tree, config) so the patched build is incremental on top
of the baseline's objects.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import time
from pathlib import Path

from . import kconfig, proc
from .errors import OrchError, Exit
from .kconfig import KConfig
from .models import Kernel
from .paths import cache_dir

BUILD_TIMEOUT = 3 * 3600
IMAGE = Path("arch/x86/boot/bzImage")


@functools.lru_cache(maxsize=None)
def toolchain_id() -> str:
    parts = []
    for argv in (["gcc", "--version"], ["ld", "--version"], ["make", "--version"]):
        r = proc.run(argv, timeout=30)
        parts.append(r.output.splitlines()[0] if r.output else argv[0])
    return " | ".join(parts)


def jobs() -> int:
    return (os.cpu_count() or 1) + 1


def build_env() -> dict[str, str]:
    ccache = cache_dir() / "ccache"
    ccache.mkdir(parents=True, exist_ok=True)
    # Fixed identity so a rebuild of the same source gives the same banner.
    return {"CCACHE_DIR": str(ccache), "KBUILD_BUILD_USER": "orch",
            "KBUILD_BUILD_HOST": "orch"}


def cache_key(tree_id: str, dotconfig: Path) -> str:
    h = hashlib.sha256()
    h.update(tree_id.encode())
    h.update(dotconfig.read_bytes())
    h.update(toolchain_id().encode())
    return h.hexdigest()[:32]


def _cached(key: str) -> Path | None:
    d = cache_dir() / "kernels" / key
    img, sums = d / "bzImage", d / "sha256"
    if not (img.exists() and sums.exists()):
        return None
    # A truncated or half-copied entry is rebuilt, never booted.
    if hashlib.sha256(img.read_bytes()).hexdigest() != sums.read_text().strip():
        shutil.rmtree(d, ignore_errors=True)
        return None
    return d


def _store(key: str, builddir: Path) -> Path:
    root = cache_dir() / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for src, name in ((IMAGE, "bzImage"), (Path(".config"), "config"),
                      (Path("System.map"), "System.map")):
        if (builddir / src).exists():
            shutil.copy2(builddir / src, tmp / name)
    (tmp / "sha256").write_text(hashlib.sha256((tmp / "bzImage").read_bytes()).hexdigest())
    dest = root / key
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def build(src: Path, builddir: Path, kc: KConfig, tree_id: str, log: Path,
          side: str) -> Kernel:
    """Build (or find cached) the kernel of `src` at tree `tree_id`.

    Raises OrchError with INFRA for the baseline, PATCHED_BUILD for the
    patched side: a broken baseline is not the series' fault.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    t0 = time.monotonic()
    try:
        dotconfig = kconfig.configure(src, builddir, kc, log)
    except OrchError as e:
        code = e.exit
        if code == Exit.INFRA and side == "patched":
            code = Exit.PATCHED_BUILD  # the series broke Kconfig
        raise OrchError(f"{side} build of config {kc.name} failed: {e}", code)
    key = cache_key(tree_id, dotconfig)
    hit = _cached(key)
    if hit:
        with open(log, "a") as f:
            f.write(f"# cached kernel {hit}\n")
        return Kernel(kc.name, hit / "bzImage", hit / "config", True,
                      time.monotonic() - t0, log)
    r = proc.run([*kconfig.make_base(builddir), f"-j{jobs()}", "CC=ccache gcc", "bzImage"],
                 cwd=src, log=log, timeout=BUILD_TIMEOUT, env=build_env(), append=True)
    if not r.ok or not (builddir / IMAGE).exists():
        what = "timed out" if r.timed_out else "failed"
        raise OrchError(f"{side} build of config {kc.name} {what}: "
                        f"{_first_error(r.output)} (see {log})",
                        Exit.INFRA if side == "baseline" else Exit.PATCHED_BUILD)
    stored = _store(key, builddir)
    return Kernel(kc.name, stored / "bzImage", stored / "config", False,
                  time.monotonic() - t0, log)


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if ": error:" in line or line.startswith("make: ***"):
            return line.strip()[:200]
    return "see the log"
