"""A tiny signed Debian repository on disk (file://), for the apt side of the
nightly's discovery without Debian's registry: real `apt-get update`,
`apt-cache madison` and `apt-get download` against it, in a second or two.

Each package version is a real .deb made by dpkg-deb, indexed by
dpkg-scanpackages; each suite's Release is clear-signed with a throwaway
ed25519 key (apt refuses unsigned repositories, and debsrc names its
keyring with signed-by=). A version can carry a linux-source-style tarball
(usr/src/<package>.tar.xz holding one top directory) so debsrc.import_tree()
imports it like the real thing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path


def _run(argv: list[str], **kw) -> bytes:
    return subprocess.run(argv, check=True, capture_output=True, timeout=120, **kw).stdout


def _tarball(dest: Path, top: str, files: dict[str, str]) -> None:
    with tarfile.open(dest, "w:xz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def make_repo(root: Path, package: str, suites: dict[str, list[str]],
              sources: dict[str, dict[str, str]] | None = None) -> tuple[str, Path]:
    """A repository under root/repo offering `package` at `suites[suite]`
    versions; `sources[version]`: files of that version's source tarball.
    Returns (mirror URL for ORCH_DEBIAN_MIRROR, keyring for debsrc.KEYRING)."""
    arch = _run(["dpkg", "--print-architecture"]).decode().strip()
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700, parents=True)
    genv = {**os.environ, "GNUPGHOME": str(gnupg)}
    try:
        _run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key",
              "orch tests <repo@localhost>", "ed25519", "sign", "never"], env=genv)
        keyring = root / "repo-key.gpg"
        keyring.write_bytes(_run(["gpg", "--batch", "--export"], env=genv))
        repo = root / "repo"
        for suite, versions in suites.items():
            pool = repo / "pool" / suite
            pool.mkdir(parents=True)
            for v in versions:
                build = root / "build" / f"{suite}-{v}"
                (build / "DEBIAN").mkdir(parents=True)
                (build / "DEBIAN" / "control").write_text(
                    f"Package: {package}\nVersion: {v}\nArchitecture: all\n"
                    "Maintainer: orch tests <repo@localhost>\nDescription: a stand-in\n")
                if sources and v in sources:
                    (build / "usr" / "src").mkdir(parents=True)
                    _tarball(build / "usr" / "src" / f"{package}.tar.xz", package, sources[v])
                _run(["dpkg-deb", "-Zgzip", "--build", str(build),
                      str(pool / f"{package}_{v}_all.deb")])
                shutil.rmtree(build)
            rel = f"main/binary-{arch}/Packages"
            dist = repo / "dists" / suite
            (dist / rel).parent.mkdir(parents=True)
            packages = _run(["dpkg-scanpackages", "-m", f"pool/{suite}", "/dev/null"], cwd=repo)
            (dist / rel).write_bytes(packages)
            (dist / "Release").write_text(
                f"Suite: {suite}\nCodename: {suite}\nArchitectures: {arch}\n"
                "Components: main\nDate: Sat, 28 Nov 2026 00:00:00 UTC\nSHA256:\n"
                f" {hashlib.sha256(packages).hexdigest()} {len(packages)} {rel}\n")
            _run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(dist / "InRelease"),
                  str(dist / "Release")], env=genv)
    finally:
        # The agent gpg started for this home: ours, ended by its home.
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=genv, capture_output=True)
    return f"file://{repo}", keyring
