"""Hermetic git and b4 (orchestrator/source/hermetic.py), with real git and b4.

A hostile setup: hooks in .git/hooks and behind core.hooksPath, a command as
core.fsmonitor, filter drivers, am.threeWay and apply.whitespace=fix in the
repository's, the user's (HOME, XDG_CONFIG_HOME), the system's
(GIT_CONFIG_SYSTEM) and an inherited `git -c` (GIT_CONFIG_PARAMETERS)
config, and b4 check commands and gpg programs. Every hook and command
appends its name to a marker file; orch's apply path and intake must leave
it absent and apply by git's defaults. Each test ends with a control: plain
git (or b4) in the same setup does write the marker or apply differently,
so the setup is not hostile by accident only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from lore_server import LORE_DATA_DIR

from orchestrator.core.models import Base
from orchestrator.source import intake, tree

HOOKS = ["applypatch-msg", "pre-applypatch", "post-applypatch", "post-checkout",
         "post-rewrite", "reference-transaction", "pre-commit", "post-commit"]
SETUP_ENV = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
             "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org",
             "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
             "HOME": "/nonexistent", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
LINES = [f"line {i}\n" for i in range(1, 13)]


def git(repo: Path, *args: str, env: dict | None = None, check: bool = True):
    return subprocess.run(["git", "-C", str(repo), *args], check=check, capture_output=True,
                          text=True, env=env or SETUP_ENV)


def commit_file(repo: Path, lines: list[str], msg: str, name: str = "f.txt") -> str:
    (repo / name).write_text("".join(lines))
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def script(path: Path, marker: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {name} >> {marker}\ncat\n")
    path.chmod(0o755)
    return path


class Hostile:
    """The user's world: HOME, XDG config, system config, inherited git -c."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp = tmp_path
        self.marker = tmp_path / "marker"
        self.home = tmp_path / "home"
        self.xdg = self.home / ".config"
        (self.xdg / "git").mkdir(parents=True)
        self.system = tmp_path / "etc-gitconfig"
        self.system.touch()
        for var in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_DIR", "GIT_WORK_TREE",
                    "GIT_INDEX_FILE", "GIT_CONFIG", "GIT_CEILING_DIRECTORIES",
                    "GIT_CONFIG_COUNT", "GIT_ATTR_NOSYSTEM"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(self.xdg))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(self.system))
        monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "orch-cache"))

    def cmd(self, name: str) -> str:
        return str(script(self.tmp / "bin" / name, self.marker, name))

    def hooks(self, d: Path) -> None:
        for h in HOOKS:
            script(d / h, self.marker, f"{d.name}/{h}")

    def config(self, where: str, repo: Path | None, items: dict[str, str]) -> None:
        """Set `items` in the repository's, the user's (~/.gitconfig and XDG),
        the system's config or an inherited `git -c`."""
        if where == "env":
            os.environ["GIT_CONFIG_PARAMETERS"] = " ".join(
                f"'{k}'='{v}'" for k, v in items.items())
            return
        files = {"repo": [repo / ".git" / "config"] if repo else [],
                 "global": [self.home / ".gitconfig", self.xdg / "git" / "config"],
                 "system": [self.system]}[where]
        for f in files:
            for k, v in items.items():
                subprocess.run(["git", "config", "--file", str(f), "--add", k, v], check=True)

    def marks(self) -> list[str]:
        return self.marker.read_text().split() if self.marker.exists() else []


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_CONFIG_PARAMETERS", raising=False)
    return Hostile(tmp_path, monkeypatch)


@pytest.fixture
def repo(tmp_path):
    """A repository with base commit A (12 lines) and, on branch `other`, X
    (line 3 changed). patches/: `fits.mbox` (changes line 6 on A),
    `needs3way.mbox` (changes line 6 on X: its context has X's line 3),
    `trailing.mbox` (adds a line with trailing blanks on A)."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    a = commit_file(r, LINES, "A")
    out = tmp_path / "patches"
    out.mkdir()

    def patch_on(start: str, lines: list[str], msg: str, name: str) -> None:
        git(r, "checkout", "-q", "--detach", start)
        commit_file(r, lines, msg)
        (out / name).write_text(git(r, "format-patch", "--stdout", "-1").stdout)

    x = LINES.copy()
    x[2] = "line 3 changed upstream\n"
    git(r, "checkout", "-q", "-b", "other")
    commit_file(r, x, "X")
    x6 = x.copy()
    x6[5] = "line 6 patched\n"
    patch_on("other", x6, "f: patch line 6 (on X)", "needs3way.mbox")
    a6 = LINES.copy()
    a6[5] = "line 6 patched\n"
    patch_on(a, a6, "f: patch line 6", "fits.mbox")
    patch_on(a, LINES + ["trailing  \t \n"], "f: add a line with trailing blanks",
             "trailing.mbox")
    git(r, "checkout", "-q", "main")
    return r


def series(tmp_path: Path, name: str):
    return intake.read_series(tmp_path / "patches" / name, tmp_path / "no.cover", "",
                              None, "mbox")


def orch_apply(repo_path: Path, tmp_path: Path, name: str):
    t = tree.Tree(repo_path, str(repo_path))
    ws = tree.workspace(t, lock_timeout=10)
    try:
        base = Base(git(repo_path, "rev-parse", "main").stdout.strip(), "main")
        logs = tmp_path / "logs" / name
        logs.mkdir(parents=True, exist_ok=True)
        return ws, tree.apply_series(ws, base, series(tmp_path, name), logs)
    finally:
        ws.lock.release()


def user_git(repo: Path, *args: str, check: bool = False):
    """Plain git in the user's environment (the control)."""
    env = {**os.environ, "GIT_COMMITTER_NAME": "U", "GIT_COMMITTER_EMAIL": "u@example.org"}
    return git(repo, *args, env=env, check=check)


@pytest.mark.parametrize("where", ["gitdir", "repo", "global", "system", "env"])
def test_no_hook_or_fsmonitor_runs(where, hostile, repo, tmp_path):
    if where == "gitdir":
        hostile.hooks(repo / ".git" / "hooks")
        hostile.config("repo", repo, {"core.fsmonitor": hostile.cmd("fsmonitor")})
    else:
        d = tmp_path / f"{where}-hooks"
        hostile.hooks(d)
        hostile.config(where, repo, {"core.hooksPath": str(d)})
    # a series that applies (worktree add, checkout, am), then one that does not
    # (am fails, am --abort, apply --reject, checkout back)
    ws, ok = orch_apply(repo, tmp_path, "fits.mbox")
    assert ok.ok, ok.error
    _, bad = orch_apply(repo, tmp_path, "needs3way.mbox")
    assert not bad.ok
    tree.keep_ref(ws.src, "refs/orch/last-patched", ok.head)
    assert hostile.marks() == []
    # control: the same tree, plain git
    user_git(ws.src, "checkout", "-q", "--detach", "HEAD")
    assert hostile.marks(), "the hostile setup ran nothing even for plain git"


@pytest.mark.parametrize("where", ["repo", "global", "system", "env"])
def test_three_way_config_is_ignored(where, hostile, repo, tmp_path):
    hostile.config(where, repo, {"am.threeWay": "true"})
    ws, applied = orch_apply(repo, tmp_path, "needs3way.mbox")
    assert not applied.ok and applied.failed_patch == 1
    assert applied.rejections and applied.rejections[0].file == "f.txt"
    assert git(ws.src, "rev-parse", "HEAD").stdout.strip() == applied.base.commit
    # control: plain git am on the same base takes the 3-way path and applies
    r = user_git(ws.src, "am", str(tmp_path / "patches" / "needs3way.mbox"))
    assert r.returncode == 0, r.stderr
    assert "line 3 changed upstream" not in (ws.src / "f.txt").read_text()
    assert "line 6 patched" in (ws.src / "f.txt").read_text()


@pytest.mark.parametrize("where", ["repo", "global", "system", "env"])
def test_whitespace_config_is_ignored(where, hostile, repo, tmp_path):
    hostile.config(where, repo, {"apply.whitespace": "fix", "core.whitespace": "tab-in-indent",
                                 "apply.ignoreWhitespace": "change"})
    ws, applied = orch_apply(repo, tmp_path, "trailing.mbox")
    assert applied.ok, applied.error
    text = git(ws.src, "show", f"{applied.head}:f.txt").stdout
    assert text.endswith("trailing  \t \n")  # git's default: warn, keep
    # control: plain git am strips the blanks
    git(ws.src, "checkout", "-q", "--detach", applied.base.commit)
    r = user_git(ws.src, "am", str(tmp_path / "patches" / "trailing.mbox"))
    assert r.returncode == 0, r.stderr
    assert (ws.src / "f.txt").read_text().endswith("trailing\n")


def test_filter_drivers_never_run(hostile, repo, tmp_path):
    # the user's attributes name `evil` for every file; a patch of the series
    # brings a .gitattributes naming `evil2`; the repository defines both
    git(repo, "checkout", "-q", "-b", "attrs")
    (repo / ".gitattributes").write_text("*.txt filter=evil2\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    (tmp_path / "patches" / "attrs.mbox").write_text(
        git(repo, "format-patch", "--stdout", "-1").stdout
        + (tmp_path / "patches" / "fits.mbox").read_text())
    git(repo, "checkout", "-q", "main")
    (hostile.xdg / "git" / "attributes").write_text("* filter=evil\n")
    for drv in ("evil", "evil2"):
        hostile.config("repo", repo, {f"filter.{drv}.clean": hostile.cmd(f"{drv}-clean"),
                                      f"filter.{drv}.smudge": hostile.cmd(f"{drv}-smudge"),
                                      f"filter.{drv}.required": "true"})
    ws, applied = orch_apply(repo, tmp_path, "attrs.mbox")
    assert applied.ok, applied.error
    assert "line 6 patched" in (ws.src / "f.txt").read_text()
    assert hostile.marks() == []
    # control
    (ws.src / "f.txt").unlink()
    user_git(ws.src, "checkout", "--", "f.txt")
    assert hostile.marks()


def test_user_attributes_are_ignored(hostile, repo, tmp_path):
    # what Kbuild compiles is the worktree: the user's attributes must not
    # turn it into CRLF text
    (hostile.xdg / "git" / "attributes").write_text("* text eol=crlf\n")
    ws, applied = orch_apply(repo, tmp_path, "fits.mbox")
    assert applied.ok, applied.error
    assert b"\r" not in (ws.src / "f.txt").read_bytes()
    # control
    (ws.src / "f.txt").unlink()
    user_git(ws.src, "checkout", "--", "f.txt")
    assert b"\r\n" in (ws.src / "f.txt").read_bytes()


def openpgp_signed(tmp_path: Path) -> Path:
    """v3 with its patatt signatures claiming to be OpenPGP: checking them
    means running gpg (b4.gpgbin, else gpg.program)."""
    mbox = tmp_path / "v3-openpgp.mbox"
    text = (LORE_DATA_DIR / "blk-dontcache-v3.mbox").read_text()
    assert "a=ed25519-sha256" in text
    mbox.write_text(text.replace("a=ed25519-sha256", "a=openpgp-sha256"))
    return mbox


def test_b4_runs_no_configured_command(hostile, repo, tmp_path):
    hostile.config("repo", repo, {"b4.am-perpatch-check-cmd": hostile.cmd("repo-check"),
                                  "b4.prep-perpatch-check-cmd": hostile.cmd("repo-prep-check"),
                                  "b4.gpgbin": hostile.cmd("repo-gpg"),
                                  "core.fsmonitor": hostile.cmd("fsmonitor")})
    hostile.config("global", None, {"b4.am-perpatch-check-cmd": hostile.cmd("global-check"),
                                    "gpg.program": hostile.cmd("global-gpg"),
                                    "core.hooksPath": str(tmp_path / "global-hooks")})
    hostile.hooks(repo / ".git" / "hooks")
    hostile.hooks(tmp_path / "global-hooks")
    (repo / ".b4-config").write_text(
        f"[b4]\n\tprep-perpatch-check-cmd = {hostile.cmd('b4config-check')}\n")
    # the default run directory is orch-runs/... under where orch is started:
    # often the kernel tree itself
    outdir = repo / "orch-runs" / "x" / "series"
    s = intake.fetch(None, mbox=openpgp_signed(tmp_path), outdir=outdir,
                     log=tmp_path / "b4.log", offline=True)
    assert hostile.marks() == []
    assert s.version == 3 and len(s.patches) == 2
    assert "Reviewed-by: Jan Kara <jack@suse.cz>" in s.patches[1].collected
    # control: b4 as a user would run it there checks the signatures with gpg
    b4 = subprocess.run([*intake.b4_command(), "--no-stdin", "--offline-mode", "am", "-o",
                         str(tmp_path / "ctl"), "-m", str(openpgp_signed(tmp_path))],
                        cwd=outdir, capture_output=True, text=True)
    assert b4.returncode == 0, b4.stderr
    assert "repo-gpg" in hostile.marks()
