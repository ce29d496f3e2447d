"""Kernel trees: the user's git tree or the Debian default, orch's own
worktree of it, choosing the base and applying a series patch by patch.

The worktree is long-lived (one per tree) so that Kbuild, which records
absolute source paths and compares mtimes, rebuilds only what a series
touches. The user's checkout is never modified: only `git worktree add`
writes into their .git.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import mailbox
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import git

from orchestrator.core import cache_use
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Base, PatchStatus, Series
from orchestrator.core.paths import cache_dir
from orchestrator.kernel import buildtree
from orchestrator.source import debsrc, hermetic

# Commits orch makes must not depend on the user's git identity, hooks or
# config (hermetic.py; _repo adds the repository's filter drivers), nor stop
# for auto-gc.
GIT_ENV = {"GIT_COMMITTER_NAME": "orch", "GIT_COMMITTER_EMAIL": "orch@localhost",
           "GIT_COMMITTER_DATE": "1970-01-01T00:00:00Z",
           **hermetic.git_env(extra={"gc.auto": "0"})}


@dataclass
class Tree:
    repo: Path
    label: str        # what the report calls it


@dataclass
class Range:
    """`orch test --range A..B`: a local branch as a series."""
    text: str                 # "A..B" as given
    base: str                 # A's commit: the series goes on it
    commits: list[str]        # A..B, oldest first, one patch each
    mbox: Path                # git format-patch of them


@dataclass
class Workspace:
    root: Path        # cache/work/<name>
    src: Path         # orch's worktree
    lock: "WorkspaceLock"
    # A series' builds work in a copy-on-write layer per config over the
    # trusted build directory (buildtree), kept while this object is in use:
    # a series' each-patch steps and a bisect's steps build on in it.
    layers: dict = field(default_factory=dict)

    def build_dir(self, config: str) -> Path:
        return self.root / "build" / config

    def build_tree(self, config: str, trusted: bool) -> "buildtree.BuildDir":
        """Where a build of `config` works: the trusted directory (a
        baseline), or this run's layer over it (a series)."""
        base = buildtree.trusted(self.root, self.build_dir(config), config)
        if trusted:
            return base
        name = f"{self.root.name}-{config}"
        layer = self.layers.get(config)
        layer = buildtree.new_layer(base, name) if layer is None else \
            buildtree.current(layer, base, name)
        self.layers[config] = layer
        return layer

    def close(self) -> None:
        """Throw this run's layers away (the kernels are in the cache)."""
        for layer in self.layers.values():
            buildtree.drop(layer)
        self.layers.clear()


@dataclass
class RejectedFile:
    file: str
    hunks: list[str] = field(default_factory=list)


@dataclass
class Applied:
    base: Base
    head: str                 # commit after the last applied patch
    tree_id: str              # the source state of `head`, for the build cache
    ok: bool
    failed_patch: int | None = None
    rejections: list[RejectedFile] = field(default_factory=list)
    error: str = ""


def git_env(path: Path) -> dict[str, str]:
    """The environment of a plain `git` subprocess in `path`, as hermetic as
    the GitPython calls below."""
    return {**os.environ, **GIT_ENV, **hermetic.git_env(path, {"gc.auto": "0"})}


def _repo(path: Path) -> git.Repo:
    repo = git.Repo(path)
    repo.git.update_environment(**{**GIT_ENV, **hermetic.git_env(path, {"gc.auto": "0"})})
    return repo


def open_tree(path: Path | None, debian_package: str = debsrc.DEFAULT_PACKAGE,
              log_dir: Path | None = None) -> Tree:
    if path is None:
        d = debsrc.import_tree(debian_package, log_dir=log_dir)
        return Tree(d.path, f"{d.package} {d.version} (Debian)")
    path = path.expanduser()
    if not path.exists():
        raise BadInput(f"no such tree: {path}")
    try:
        repo = git.Repo(path, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise BadInput(f"not a git tree: {path}")
    top = Path(repo.git.rev_parse("--show-toplevel"))
    return Tree(top, str(top))


def has_commit(repo: Path, rev: str) -> str | None:
    try:
        return _repo(repo).git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
    except git.GitCommandError:
        return None


def resolve_base(tree: Tree, series: Series, base_ref: str | None,
                 on: str | None = None) -> Base:
    """The series' base-commit when the tree has it, else --base, else HEAD.
    `on` (--on): exactly that commit, whatever the series names: the nightly
    tests every series on the tree as it is tonight."""
    if on:
        sha = has_commit(tree.repo, on)
        if not sha:
            raise BadInput(f"no such commit in {tree.label}: {on}")
        return Base(sha, f"--on {on} ({sha[:12]})")
    wanted = series.base_commit
    if wanted:
        sha = has_commit(tree.repo, wanted)
        if sha:
            return Base(sha, f"the series' base-commit {wanted[:12]} is in the tree")
        why = f"the series' base-commit {wanted[:12]} is not in the tree"
    else:
        why = "the series names no base-commit"
    ref = base_ref or "HEAD"
    sha = has_commit(tree.repo, ref)
    if not sha:
        raise BadInput(f"no such base in {tree.label}: {ref}")
    how = f"--base {ref}" if base_ref else "the tree's HEAD"
    return Base(sha, f"{why}; using {how} ({sha[:12]})")


def parse_range(text: str) -> tuple[str, str]:
    """'A..B' -> (A, B). Not A...B (the commits of both sides), A.. or a
    single ref: orch says which commits it tests, so both ends are named."""
    a, sep, b = text.partition("..")
    if (not sep or not a or not b or b.startswith(".") or ".." in b
            or a.startswith("-") or b.startswith("-")):
        raise BadInput(f"--range wants A..B (two commits or refs), not {text!r}")
    return a, b


def format_range(tree: Tree, text: str, outdir: Path) -> Range:
    """The commits A..B of the tree as an mbox, one patch per commit, with a
    base-commit: trailer naming A. Only reads the repository: the user's
    checkout (HEAD, index, a bisect or rebase in progress) stays as it is."""
    a, b = parse_range(text)
    base, head = (_range_end(tree, text, ref) for ref in (a, b))
    repo = _repo(tree.repo)
    commits = repo.git.rev_list("--reverse", f"{base}..{head}").split()
    if not commits:
        raise BadInput(f"--range {text} has no commits: {b} has nothing that {a} lacks")
    merges = repo.git.rev_list("--merges", f"{base}..{head}").split()
    if merges:
        subject = repo.git.log("-1", "--format=%s", merges[-1])[:60]
        raise BadInput(f"--range {text} has a merge, {merges[-1][:12]} \"{subject}\": "
                       "a series is one patch per commit, no merges")
    try:
        repo.git.merge_base("--is-ancestor", base, head)
    except git.GitCommandError:
        raise BadInput(f"--range {text}: {a} is not an ancestor of {b}, so the commits "
                       f"do not sit on it (try $(git merge-base {a} {b})..{b})")
    # Flags over the repository's own config (format.*, diff.noprefix): the
    # mails are what `git am` takes, whatever the user set.
    out = repo.git.format_patch(
        "--stdout", f"--base={base}", "--no-cover-letter", "--no-signature", "--no-attach",
        "--no-notes", "--no-relative", "--src-prefix=a/", "--dst-prefix=b/",
        f"{base}..{head}", stdout_as_string=False, strip_newline_in_stdout=False)
    # format-patch skips a commit that changes nothing; then the patches
    # would not line up with the commits.
    written = [m.decode() for m in re.findall(rb"^From ([0-9a-f]{40}) ", out, re.M)]
    missing = [c for c in commits if c not in written]
    if missing:
        raise BadInput(f"--range {text}: commit {missing[0][:12]} changes nothing, "
                       "so it is no patch")
    outdir.mkdir(parents=True, exist_ok=True)
    mbox = outdir / "range.mbox"
    mbox.write_bytes(out)
    return Range(text, base, commits, mbox)


def _range_end(tree: Tree, text: str, ref: str) -> str:
    sha = has_commit(tree.repo, ref)
    if not sha:
        raise BadInput(f"--range {text}: no commit {ref!r} in {tree.label}")
    return sha


class WorkspaceLock:
    """One orch run per worktree at a time: a second run waits, saying so."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, timeout: float, announce=lambda msg: None) -> None:
        self.fd = self._open()
        t0 = time.monotonic()
        deadline = t0 + timeout
        next_word = t0
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if cache_use.same_file(self.fd, self.path):
                    return
                # `orch cache gc` took the workspace away while we waited
                # (it holds this lock as it does): lock the new one.
                os.close(self.fd)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fd = self._open()
                continue
            except BlockingIOError:
                # Said at once and then every minute: a wait is never silent.
                now = time.monotonic()
                if now >= next_word:
                    waited = f" (waited {now - t0:.0f}s of {timeout:.0f}s)" if now > t0 + 1 else ""
                    announce(f"waiting for another orch run on {self.path.parent} to finish "
                             f"its checkout and builds{waited}")
                    next_word = now + 60
                if time.monotonic() > deadline:
                    raise OrchError(f"another orch run holds {self.path} "
                                    f"(waited {timeout:.0f}s)", Exit.INFRA)
                time.sleep(1)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def workspace(tree: Tree, lock_timeout: float = 3600, announce=lambda m: None) -> Workspace:
    real = str(tree.repo.resolve())
    name = f"{Path(real).name}-{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    root = cache_dir() / "work" / name
    # Used (core.cache_use) before it is looked at, for the rest of this
    # process: `orch cache gc` never takes a workspace a run is in.
    cache_use.use("work", name)
    root.mkdir(parents=True, exist_ok=True)
    lock = WorkspaceLock(root / "lock")
    lock.acquire(lock_timeout, announce)
    src = root / "src"
    repo = _repo(tree.repo)
    if src.exists():
        try:
            _repo(src).git.rev_parse("HEAD")
        except Exception:
            shutil.rmtree(src)
            repo.git.worktree("prune")
    if not src.exists():
        repo.git.worktree("prune")
        repo.git.worktree("add", "--detach", str(src), "HEAD")
    buildtree.sweep()
    ws = Workspace(root, src, lock)
    atexit.register(ws.close)
    return ws


def checkout(src: Path, commit: str) -> None:
    """Move the worktree to `commit`, touching only files that differ."""
    repo = _repo(src)
    if Path(repo.git.rev_parse("--git-path", "rebase-apply")).exists():
        repo.git.am("--abort")
    repo.git.checkout("-q", "--detach", "-f", commit)
    # Leftovers of a failed apply (.rej, new files); all real files are
    # tracked (force-added for Debian imports), so -x removes only debris.
    repo.git.clean("-fdxq")


def tree_id(src: Path, commit: str) -> str:
    """The source state of `commit`: what the kernel cache keys on."""
    return _repo(src).git.rev_parse(f"{commit}^{{tree}}")


def commits_between(src: Path, base: str, head: str) -> list[str]:
    """base..head, oldest first."""
    return _repo(src).git.rev_list("--reverse", f"{base}..{head}").split()


def keep_ref(src: Path, ref: str, commit: str) -> None:
    """Keep `commit` reachable (from `refs/orch/...`) while the worktree moves."""
    _repo(src).git.update_ref(ref, commit)


def split_mbox(mbx: Path, outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, msg in enumerate(mailbox.mbox(str(mbx), create=False), start=1):
        f = outdir / f"{i:04d}.patch"
        f.write_bytes(msg.as_bytes(unixfrom=True))
        files.append(f)
    return files


def apply_series(ws: Workspace, base: Base, series: Series, log_dir: Path) -> Applied:
    checkout(ws.src, base.commit)
    repo = _repo(ws.src)
    log = log_dir / "git-am.log"
    files = split_mbox(series.mbx, log_dir / "patches")
    with open(log, "w") as out:
        for patch, f in zip(series.patches, files):
            out.write(f"$ git am {f.name}  # [{patch.index}/{len(files)}] {patch.subject}\n")
            try:
                res = repo.git.am("--no-gpg-sign", "--committer-date-is-author-date",
                                  str(f), with_extended_output=True)
                out.write(res[1] + res[2] + "\n")
                patch.status = PatchStatus.APPLIED
            except git.GitCommandError as e:
                out.write(f"{e.stdout}\n{e.stderr}\n")
                patch.status = PatchStatus.FAILED
                rejections = _rejections(repo, f, out)
                patch.detail = "; ".join(
                    f"{r.file}: " + (", ".join(r.hunks) if r.hunks else "does not apply")
                    for r in rejections) or _first_error(e.stderr)
                for later in series.patches[patch.index:]:
                    later.status = PatchStatus.SKIPPED
                checkout(ws.src, base.commit)
                return Applied(base, base.commit, "", False, patch.index, rejections,
                               patch.detail)
    head = repo.git.rev_parse("HEAD")
    return Applied(base, head, repo.git.rev_parse("HEAD^{tree}"), True)


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:200]
    return "git am failed"


def _rejections(repo: git.Repo, patch_file: Path, out) -> list[RejectedFile]:
    """Which files and hunks do not apply: let `git apply --reject` try."""
    try:
        repo.git.am("--abort")
    except git.GitCommandError:
        pass
    try:
        res = repo.git.apply("--reject", "--verbose", str(patch_file),
                             with_extended_output=True)
        text = res[1] + res[2]
    except git.GitCommandError as e:
        text = (e.stdout or "") + (e.stderr or "")
    out.write("$ git apply --reject --verbose\n" + text + "\n")
    rejs: list[RejectedFile] = []
    current: RejectedFile | None = None
    contexts: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^Applying patch (\S+) with \d+ reject", line)
        if m:
            current = RejectedFile(m.group(1))
            rejs.append(current)
            rejfile = Path(repo.working_tree_dir) / (m.group(1) + ".rej")
            contexts = (re.findall(r"^@@ [^@]* @@ ?(.*)$", rejfile.read_text(errors="replace"), re.M)
                        if rejfile.exists() else [])
            continue
        m = re.match(r"^Rejected hunk #(\d+)\.", line)
        if m and current is not None:
            ctx = contexts.pop(0).strip() if contexts else ""
            current.hunks.append(f"hunk #{m.group(1)}" + (f" ({ctx[:60]})" if ctx else ""))
    # Files git could not even try (missing, or a corrupt diff).
    for m in re.finditer(r"^error: (\S+?): (does not exist in index|No such file or directory)", text, re.M):
        rejs.append(RejectedFile(m.group(1), ["file does not exist"]))
    return rejs
