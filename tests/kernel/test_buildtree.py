"""orch's reading of a build directory from outside the sandbox
(orchestrator/kernel/buildtree.py): the layer as the build saw it, checked against
the kernel's own overlayfs, and nothing followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core import sandbox
from orchestrator.kernel import buildtree

# What a build does to a layer over `lower`: replace, delete, make anew,
# replace a directory with a fresh one (overlayfs makes it opaque), and
# leave a link to a file orch must never read.
OPS = """
set -e
cd "$1"
echo new > kept/changed
rm kept/deleted
echo made > kept/made
rm -r gone && mkdir gone && echo fresh > gone/only
ln -s /etc/passwd kept/link
mkfifo kept/fifo
for f in kept/changed kept/deleted kept/made kept/same gone/only gone/old; do
    printf '%s=' "$f"; cat "$f" 2>/dev/null || echo ABSENT
done
"""


def _lower(root: Path) -> Path:
    lower = root / "build"
    for rel, text in {"kept/changed": "old\n", "kept/deleted": "doomed\n",
                      "kept/same": "same\n", "gone/old": "old\n"}.items():
        (lower / rel).parent.mkdir(parents=True, exist_ok=True)
        (lower / rel).write_text(text)
    return lower


def test_the_layer_reads_as_the_build_saw_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    lower = _lower(tmp_path)
    sandbox.adopt(lower)
    trusted = buildtree.BuildDir(lower, tmp_path / "meta")
    bd = buildtree.new_layer(trusted, "t")
    script = tmp_path / "ops.sh"
    script.write_text(OPS)
    view = sandbox.View(readable=(script,), overlays=bd.layer.overlays(lower, tmp_path / "cc"))
    (tmp_path / "cc").mkdir()
    r = sandbox.run(["sh", str(script), str(lower)], view, Path("/"), timeout=60)
    assert r.ok, r.output
    seen = dict(line.split("=", 1) for line in r.output.splitlines() if "=" in line)
    # What orch reads from outside is what the build read inside.
    for rel, inside in seen.items():
        mine = bd.read(rel)
        assert (mine.decode().strip() if mine is not None else "ABSENT") == inside.strip(), rel
    assert seen["gone/old"] == "ABSENT" and seen["kept/deleted"] == "ABSENT"
    # The lower side is as the baseline left it.
    assert (lower / "kept/changed").read_text() == "old\n"
    assert (lower / "kept/deleted").exists() and not (lower / "kept/made").exists()
    # Links and FIFOs are refused, never followed or opened.
    for rel in ("kept/link", "kept/fifo"):
        with pytest.raises(buildtree.UnsafeFile):
            bd.read(rel)
    buildtree.drop(bd)
    assert not bd.layer.root.exists()


def test_no_link_on_the_way_is_followed(tmp_path):
    d = tmp_path / "build"
    d.mkdir()
    (tmp_path / "secret").write_text("secret\n")
    (d / "sub").symlink_to(tmp_path)
    (d / "big").write_bytes(b"x" * 100)
    bd = buildtree.BuildDir(d, tmp_path / "meta")
    assert bd.read("sub/secret") is None           # a link where a directory should be
    with pytest.raises(buildtree.UnsafeFile):
        bd.read("big", cap=10)
    with pytest.raises(ValueError):
        bd.read("../secret")
    # Writing replaces an entry, never writes through a link.
    (d / ".config").symlink_to(tmp_path / "secret")
    bd.write(".config", b"CONFIG_X=y\n")
    assert (tmp_path / "secret").read_text() == "secret\n"
    assert (d / ".config").read_bytes() == b"CONFIG_X=y\n" and not (d / ".config").is_symlink()
