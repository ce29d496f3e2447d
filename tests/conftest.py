from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Explicit, so `import lore_server` and `import helpers` work whether or not tests/
# becomes a package.
TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
# The tests are laid out like orchestrator/ (tests/kernel/ tests
# orchestrator/kernel/, ...). A few modules share fixtures across packages
# by importing each other by name (`from test_nightly import world`), so
# every package's directory is on the path, whatever pytest collects first.
for _d in sorted(TESTS_DIR.iterdir()):
    if _d.is_dir() and any(_d.glob("test_*.py")) and str(_d) not in sys.path:
        sys.path.append(str(_d))

from helpers import MINI, REPO, ROOT_CANARY, git  # noqa: E402
from lore_server import LORE_DATA_DIR, LoreServer  # noqa: E402

# Every run.json a test writes is checked against the schema (schema_check.py).
pytest_plugins = ["schema_check"]

# No orch the suite starts reads the developer's own config file
# (~/.config/orch/config.toml): its timeouts or lore URL would change what
# tests see. Tests of the config file set ORCH_CONFIG themselves.
os.environ["ORCH_CONFIG"] = os.devnull


@pytest.fixture(scope="session")
def lore_server() -> Iterator[LoreServer]:
    """Loopback lore serving tests/data/lore; `.url`, `.midmask`, `.requests`.

    Session-wide, so `.requests` accumulates: slice from `len(srv.requests)`
    taken before the action under test.
    """
    with LoreServer(LORE_DATA_DIR) as srv:
        yield srv


@pytest.fixture
def b4_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running b4/git cut off from the user's config and cache.

    A fresh cache matters most: b4 caches lore answers for 10 minutes, which
    would hide requests from the server and leak data between tests.
    """
    home = tmp_path_factory.mktemp("b4home")
    gitconfig = home / "gitconfig"
    gitconfig.touch()
    env = dict(os.environ)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS"):
        env.pop(var, None)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        # a proxy from the outer environment would swallow loopback requests
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@pytest.fixture
def b4_orch_env(b4_env, tmp_path) -> dict[str, str]:
    """b4_env for a real `orch` subprocess of this checkout, with its own cache."""
    return {**b4_env, "ORCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}


# orch on the stand-in tree (test_build.py, test_built_kernel.py). test_cli.py
# overrides `env` with its own, built on b4_env.

@pytest.fixture
def env(tmp_path):
    """This environment, with orch from this checkout, its own cache and HOME."""
    e = dict(os.environ)
    e["ORCH_CACHE"] = str(tmp_path / "cache")
    e["PYTHONPATH"] = str(REPO)
    e["HOME"] = str(tmp_path)
    return e


@pytest.fixture
def mini(tmp_path):
    """tests/data/minikernel as a git tree of one commit."""
    repo = tmp_path / "tree"
    shutil.copytree(MINI, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "mini: base")
    return repo


@pytest.fixture
def canaries(tmp_path, monkeypatch):
    """Three fresh secrets: in $HOME/.orch-canary (HOME becomes tmp_path/home),
    /root/.orch-canary and SECRET_TOKEN of this process, so of every orch it
    starts. Names by place: home, root, env."""
    if not os.access("/root", os.W_OK):
        pytest.skip("placing the /root canary needs root (CI runs as root)")
    if ROOT_CANARY.exists():
        pytest.fail(f"{ROOT_CANARY} exists: left by an interrupted run? remove it")
    c = {k: f"ORCH-CANARY-{k}-{secrets.token_hex(8)}" for k in ("home", "root", "env")}
    home = tmp_path / "home"
    home.mkdir()
    (home / ".orch-canary").write_text(c["home"] + "\n")
    ROOT_CANARY.write_text(c["root"] + "\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SECRET_TOKEN", c["env"])
    try:
        yield c
    finally:
        ROOT_CANARY.unlink(missing_ok=True)


def pytest_collection_modifyitems(session, config, items):
    """Run the modules in the order of their names, whatever package
    directory holds them: the real-kernel tests share kernels and kept
    results through the cache, and that order is the one they were written
    for (test_bisect_e2e builds the port's tree first; test_kernel_e2e's and
    test_mutants_e2e's kernels are the ones test_nightly_e2e's night reuses,
    so its second series costs an incremental build at most). A stable
    sort: tests keep their order within a module."""
    items.sort(key=lambda item: item.path.name)
