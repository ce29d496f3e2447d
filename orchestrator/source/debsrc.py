"""The default kernel tree: a Debian linux-source package imported into git.

Debian's registry is reachable here while kernel.org is not, so the embedded
default tree is `linux-source-X.Y` fetched with a private apt sources list and
state directory (nothing is installed system-wide), untarred and committed
once into a cached git repository.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import cache_use, proc
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.paths import cache_dir

DEFAULT_PACKAGE = "linux-source-7.2"
# linux-source-X.Y lives in whichever suite has that kernel now: sid for the
# newest, a backports suite for others. apt picks the package from any.
DEFAULT_SUITES = ("sid", "trixie-backports", "trixie")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# No auto-gc in any git orch runs: after a 95k-file source import the first
# `git am` would otherwise stop to pack every loose object (minutes) in the
# middle of a run. Shared with tree.GIT_ENV.
NO_AUTO_GC = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "gc.auto", "GIT_CONFIG_VALUE_0": "0"}

# A fixed identity and date make the import commit's id a function of the
# source alone: the same package gives the same commit on every machine, so
# a series or port can name it as its base-commit.
IMPORT_ENV = {"GIT_AUTHOR_NAME": "orch", "GIT_AUTHOR_EMAIL": "orch@localhost",
              "GIT_COMMITTER_NAME": "orch", "GIT_COMMITTER_EMAIL": "orch@localhost",
              "GIT_AUTHOR_DATE": "1970-01-01T00:00:00Z",
              "GIT_COMMITTER_DATE": "1970-01-01T00:00:00Z", **NO_AUTO_GC}


@dataclass
class DebianTree:
    path: Path
    package: str
    version: str  # the Debian package version, e.g. 7.2.13-1


def system_mirror() -> str:
    """The Debian mirror this machine's apt already uses (so we name no host)."""
    env = os.environ.get("ORCH_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(f).read_text(errors="replace")
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            uri = m.group(1).rstrip("/")
            if "security" not in uri and uri.endswith("/debian"):
                return uri
    for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(f):
            continue
        for line in Path(f).read_text(errors="replace").splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s", line)
            if m and "security" not in m.group(1):
                return m.group(1).rstrip("/")
    raise OrchError("no Debian mirror found in /etc/apt; set ORCH_DEBIAN_MIRROR",
                    Exit.BAD_INPUT)


def _apt_opts(state: Path) -> list[str]:
    return [f"-oDir::Etc::SourceList={state / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={state / 'lists'}",
            f"-oDir::Cache={state / 'cache'}",
            "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1"]


def download_deb(package: str, suites: tuple[str, ...], workdir: Path, log: Path) -> Path:
    state = workdir / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
    mirror = system_mirror()
    (state / "sources.list").write_text(
        "".join(f"deb {signed}{mirror} {s} main\n" for s in suites))
    r = proc.run(["apt-get", *_apt_opts(state), "update"], log=log, timeout=600)
    if not r.ok:
        raise OrchError(f"apt-get update for {', '.join(suites)} failed (see {log})")
    r = proc.run(["apt-get", *_apt_opts(state), "download", package],
                 log=log, cwd=workdir, timeout=1200, append=True)
    if not r.ok:
        raise OrchError(f"Debian no longer offers {package} in {', '.join(suites)} "
                        f"(apt-get download failed, see {log}); pick another with --debian-source",
                        Exit.BAD_INPUT)
    debs = sorted(workdir.glob(f"{package.split('=')[0]}_*.deb"))
    if not debs:
        raise OrchError(f"apt-get downloaded no {package} .deb (see {log})")
    return debs[-1]


def _apt_state(package: str, suites: tuple[str, ...], root: Path) -> Path:
    """A private apt state kept per package and suites, so that a nightly's
    `apt-get update` is incremental."""
    import hashlib
    state = root / f".apt-{package}-{hashlib.sha1(' '.join(suites).encode()).hexdigest()[:8]}"
    _use(root, state.name)
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
    (state / "sources.list").write_text(
        "".join(f"deb {signed}{system_mirror()} {s} main\n" for s in suites))
    return state


def available_versions(package: str, suites: tuple[str, ...] = DEFAULT_SUITES,
                       cache: Path | None = None) -> list[str]:
    """Every version of `package` the suites offer now (apt-cache madison)."""
    root = (cache or cache_dir()) / "trees"
    state = _apt_state(package, tuple(suites), root)
    log = root / f"versions-{package}.log"
    _use(root, log.name)
    r = proc.run(["apt-get", *_apt_opts(state), "update"], log=log, timeout=600)
    if not r.ok:
        raise OrchError(f"apt-get update for {', '.join(suites)} failed (see {log})")
    r = proc.run(["apt-cache", *_apt_opts(state), "madison", package], log=log, append=True,
                 timeout=120)
    versions = [parts[1] for line in r.output.splitlines()
                if len(parts := [x.strip() for x in line.split("|")]) >= 3
                and parts[0] == package]
    if not versions:
        raise OrchError(f"Debian offers no {package} in {', '.join(suites)} (see {log})",
                        Exit.BAD_INPUT)
    return versions


def import_tree(package: str = DEFAULT_PACKAGE, suites: tuple[str, ...] = DEFAULT_SUITES,
                cache: Path | None = None, log_dir: Path | None = None,
                version: str | None = None) -> DebianTree:
    """Return the cached git import of `package`, creating it on first use.
    `version` (the nightly): that version; each is imported once, as a tree
    of its own, and the first import is used when it is that version."""
    root = (cache or cache_dir()) / "trees"
    dest = root / package
    _use(root, dest.name)     # before looking: gc leaves it from now on
    marker = dest / ".git" / "orch-imported"
    if marker.exists():
        have = marker.read_text().split()[0]   # then the git tag of the import
        if version is None or have == version:
            return DebianTree(dest, package, have)
    if version is not None:
        dest = root / f"{package}@{re.sub(r'[^A-Za-z0-9._+~-]', '_', version)}"
        _use(root, dest.name)
        marker = dest / ".git" / "orch-imported"
        if marker.exists():
            return DebianTree(dest, package, marker.read_text().split()[0])
        package_spec = f"{package}={version}"
    else:
        package_spec = package
    root.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or root
    log = log_dir / f"import-{package}.log"
    if log_dir == root:
        _use(root, log.name)
    if dest.exists():  # a half-finished import: start again
        shutil.rmtree(dest)
    # Named for this process: gc leaves it while the process lives (store.kinds).
    with tempfile.TemporaryDirectory(dir=root, prefix=f".import-{os.getpid()}-") as tmp:
        tmp = Path(tmp)
        deb = download_deb(package_spec, suites, tmp, log)
        version = deb.name.split("_")[1]
        r = proc.run(["dpkg-deb", "-x", deb, tmp / "x"], log=log, append=True, timeout=600)
        if not r.ok:
            raise OrchError(f"dpkg-deb -x {deb.name} failed (see {log})")
        tars = list((tmp / "x" / "usr" / "src").glob("linux-source-*.tar.*"))
        if not tars:
            raise OrchError(f"{deb.name} holds no linux-source tarball")
        with tarfile.open(tars[0]) as tf:
            tf.extractall(tmp / "src", filter="tar")
        tops = [p for p in (tmp / "src").iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise OrchError(f"unexpected layout in {tars[0].name}")
        tops[0].rename(dest)
    tag = "debian-" + re.sub(r"[^A-Za-z0-9._-]", "_", version)
    git = ["git", "-C", dest]
    for argv in ([*git, "init", "-q", "-b", "master"],
                 # Debian's top-level .gitignore ends with "/*": force-add.
                 [*git, "add", "-A", "-f"],
                 [*git, "commit", "-q", "--no-gpg-sign", "--no-verify",
                  "-m", f"{package} {version} (Debian source import)"],
                 [*git, "tag", tag]):
        r = proc.run(argv, log=log, append=True, timeout=1200, env=IMPORT_ENV)
        if not r.ok:
            raise OrchError(f"importing {package} into git failed (see {log})")
    marker.write_text(f"{version} {tag}\n")
    return DebianTree(dest, package, version)


def _use(root: Path, name: str) -> None:
    """Hold trees/NAME of the cache `root` is in for the rest of this
    process (core.cache_use): gc leaves it from now on."""
    cache_use.use("trees", name, cache=root.parent)
