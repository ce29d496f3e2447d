"""`git bisect` itself, in a worktree of orch's own that is never checked out.

git keeps a bisect's state per worktree (BISECT_LOG and refs/bisect/ in the
worktree's own git dir), so a bisect here leaves the user's checkout, and any
bisect they have running in it, alone. `--no-checkout` makes git only move
BISECT_HEAD: orch builds each commit in its build worktree (tree.py), under
that worktree's lock, so this worktree needs no files at all.

git does the bookkeeping (which commit next, skips, the first bad commit,
the log that `git bisect replay` reproduces); orch only says good, bad or
skip and reads git's answer.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.sanitize import clean
from orchestrator.source import tree

TEST_TERMS = ("good", "bad")      # old, new: the first commit that fails
FIXED_TERMS = ("old", "new")      # old fails, new passes: the first commit that passes


@dataclass
class Answer:
    """What git says after a start or a mark."""
    next: str | None = None            # the commit to test next
    steps_left: int | None = None      # git's "roughly N steps" after the next one
    first: str | None = None           # the first new ("bad") commit, when found
    candidates: list[str] = field(default_factory=list)   # only skipped commits are left

    @property
    def done(self) -> bool:
        return self.next is None


_ROUGHLY = re.compile(r"roughly (\d+) steps?")
_FIRST = re.compile(r"^([0-9a-f]{40}) is the first \S+ commit", re.M)


def parse(out: str, bisect_head: str | None) -> Answer:
    m = _FIRST.search(out)
    if m:
        return Answer(first=m.group(1))
    if "only 'skip'ped commits left" in out:
        # "The first bad commit could be any of:" then one id per line.
        return Answer(candidates=re.findall(r"^([0-9a-f]{40})$", out, re.M))
    r = _ROUGHLY.search(out)
    if bisect_head is None:
        raise OrchError(f"git bisect said nothing orch understands: {out.strip()[:300]}",
                        Exit.INFRA)
    return Answer(next=bisect_head, steps_left=int(r.group(1)) if r else None)


class GitBisect:
    """One bisect, in its own no-checkout worktree of `repo`."""

    def __init__(self, repo: Path, where: Path):
        self.repo, self.where = repo, where

    @classmethod
    def create(cls, repo: Path, root: Path, run_id: str) -> "GitBisect":
        """A fresh worktree for the run `run_id` (any earlier one for the
        same run is removed: its state is replayed from the run's log)."""
        where = root / "bisect" / hashlib.sha1(run_id.encode()).hexdigest()[:12]
        b = cls(repo, where)
        b.remove()
        where.parent.mkdir(parents=True, exist_ok=True)
        b._git(repo, "worktree", "add", "--no-checkout", "--detach", str(where), "HEAD")
        return b

    def _git(self, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                           env=tree.git_env(cwd))
        if check and r.returncode != 0:
            raise OrchError(f"git {' '.join(args[:2])} failed: "
                            f"{(r.stderr or r.stdout).strip()[:300]}", Exit.INFRA)
        return r

    def _bisect(self, *args: str) -> Answer:
        r = self._git(self.where, "bisect", *args, check=False)
        out = r.stdout + r.stderr
        # git exits 2 when only skipped commits are left: an answer, not a failure.
        if r.returncode != 0 and "only 'skip'ped commits left" not in out:
            raise OrchError(f"git bisect {args[0]} failed: {out.strip()[:300]}", Exit.INFRA)
        head = self._git(self.where, "rev-parse", "--verify", "--quiet", "BISECT_HEAD",
                         check=False).stdout.strip() or None
        return parse(out, head)

    def start(self, old: str, new: str, terms: tuple[str, str]) -> Answer:
        """Start with full commit ids, so the log replays the same anywhere."""
        return self._bisect("start", "--no-checkout", f"--term-old={terms[0]}",
                            f"--term-new={terms[1]}", new, old)

    def mark(self, term: str, commit: str) -> Answer:
        return self._bisect(term, commit)

    def replay(self, log: Path) -> Answer:
        return self._bisect("replay", str(log))

    def log(self) -> str:
        return self._git(self.where, "bisect", "log").stdout

    def remove(self) -> None:
        if self.where.exists():
            self._git(self.repo, "worktree", "remove", "--force", str(self.where), check=False)
            shutil.rmtree(self.where, ignore_errors=True)
        self._git(self.repo, "worktree", "prune", check=False)


def resolve(repo: Path, ref: str, what: str) -> str:
    sha = tree.has_commit(repo, ref)
    if not sha:
        raise BadInput(f"{what} {ref!r} is not a commit in {repo}")
    return sha


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    r = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", older, newer],
                       capture_output=True, env=tree.git_env(repo))
    return r.returncode == 0


def describe(repo: Path, commit: str) -> tuple[str, str]:
    """(subject, "Name <email>") of a commit, for reports (cleaned: commit
    messages of a mailing-list series are untrusted)."""
    r = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%s%x00%an <%ae>",
                        commit], capture_output=True, text=True, env=tree.git_env(repo))
    subject, _, author = r.stdout.strip().partition("\0")
    return clean(subject, 200), clean(author, 200)


def count(repo: Path, old: str, new: str) -> int:
    """Commits a bisect between `old` and `new` may name: old..new."""
    r = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", f"{old}..{new}"],
                       capture_output=True, text=True, env=tree.git_env(repo))
    return int(r.stdout.strip() or 0)
