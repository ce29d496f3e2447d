"""Where orch finds kconfigs/ and guest_tests/ (paths.data_root())."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO
from orchestrator import kconfig, paths
from orchestrator.errors import BadInput, Exit, OrchError


def data_dir(root: Path, matrix: str = "base\n") -> Path:
    (root / "kconfigs").mkdir(parents=True)
    (root / "kconfigs" / "matrix").write_text(matrix)
    (root / "guest_tests").mkdir()
    return root


@pytest.fixture
def layouts(tmp_path, monkeypatch):
    """An installed share/ and a checkout root, both holding data, no ORCH_DATA."""
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    installed = data_dir(tmp_path / "site" / "orchestrator" / "share", "installed\n")
    checkout = data_dir(tmp_path / "checkout", "checkout\n")
    monkeypatch.setattr(paths, "INSTALLED", installed)
    monkeypatch.setattr(paths, "CHECKOUT", checkout)
    return installed, checkout


def test_a_checkout_finds_its_own_data(monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.data_root() == REPO
    assert kconfig.kconfig_dir() == REPO / "kconfigs"


def test_orch_data_comes_first(tmp_path, monkeypatch, layouts):
    mine = data_dir(tmp_path / "mine", "mine\n")
    monkeypatch.setenv(paths.DATA_ENV, str(mine))
    assert paths.data_root() == mine.resolve()
    assert kconfig.default_matrix() == ["mine"]


def test_the_installed_data_before_a_checkout(monkeypatch, layouts):
    installed, checkout = layouts
    assert paths.data_root() == installed
    assert kconfig.default_matrix() == ["installed"]
    (installed / "kconfigs" / "matrix").unlink()   # a share/ without its data is not one
    assert paths.data_root() == checkout


def test_orch_data_without_data_is_bad_input(tmp_path, monkeypatch, layouts):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(BadInput, match="ORCH_DATA=.*empty is not an orch data directory"):
        paths.data_root()
    with pytest.raises(BadInput):     # no quiet fallback to the installed data
        kconfig.load("base")


def test_no_data_anywhere_is_infra(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setattr(paths, "INSTALLED", tmp_path / "share")
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path)
    with pytest.raises(OrchError, match="reinstall orch, or set ORCH_DATA") as e:
        paths.data_root()
    assert e.value.exit == Exit.INFRA

