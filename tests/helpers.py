"""Plain helpers and constants shared by the test modules: paths, the guest
tests the real-kernel tests select, one way to run orch, readers of what a
run leaves, git and mbox makers, process watching.

Fixtures shared by several modules are in conftest.py; no test module
imports another.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
PORT = REPO / "patches" / "blk-dontcache-v3-port-7.2.13.mbox"
# Small patches on the 7.2.13 base: crash cases and guest-suite mutants.
PATCHES = TESTS_DIR / "data" / "patches"
# The stand-in tree with Kbuild's make interface (builds in seconds).
MINI = TESTS_DIR / "data" / "minikernel"
# v3's cover letter in tests/data/lore.
V3_COVER = "20260227-blk-dontcache-v3-0-cd309ccd5868@columbia.edu"

IRQ_TEST = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts"
TASK_TEST = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts"
CACHED_TEST = "guest_tests/test_mixing.py::test_cached_then_dontcache_stays_cached"
# The selection of the port's cached rerun (test_kernel_e2e.py) and of every
# CI mutant (test_mutants_e2e.py): one selection, so the baseline boots for
# it once in the whole suite and its kept results serve the rest.
SHORT_SELECTION = [IRQ_TEST, TASK_TEST, CACHED_TEST]

# The canary series' probes (build step and guest test) and where the
# sandbox tests put the /root canary.
CANARY_DIR = TESTS_DIR / "data" / "canary"
CANARY_SERIES = PATCHES / "canary-probe.mbox"
ROOT_CANARY = Path("/root/.orch-canary")

# A mini_new() that compiles, for series on the stand-in tree.
FIXED = "int mini_new(void)\n{\n\treturn 1;\n}\n"


def orch(env, cwd, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


# `orch` with the stand-in guest running the selected guest tests for real
# (tests/standin_guest.py, harness=True): a real sandboxed build of a series
# on the stand-in tree and the real guest harness in the guest's view.
ORCH_STANDIN = """\
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
standin_guest.install_globally(harness={harness!r})
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def orch_standin(tmp_path: Path, env: dict, *args, timeout=600,
                 harness: bool = True) -> subprocess.CompletedProcess:
    """`orch ARGS` with the stand-in guest; harness=False: the stand-in
    reports what the kernel's ORCH-GUEST marks say (standin_guest.py)."""
    script = tmp_path / f"orch_standin_{harness}.py"
    script.write_text(ORCH_STANDIN.format(tests=str(TESTS_DIR), repo=str(REPO), harness=harness))
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def orch_real(tmp_path, *args, timeout=3600):
    """`orch test --offline-mode ARGS` in tmp_path, in this environment with
    this checkout's orch: how the real-kernel tests run it (their kernels
    are cached in orch's own cache, so a real build is paid for once)."""
    return orch({**os.environ, "PYTHONPATH": str(REPO)}, tmp_path, "test", "--offline-mode",
                *args, timeout=timeout)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [l for l in stderr.splitlines() if l.startswith("orch: error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org",
                        "HOME": str(repo), "PATH": "/usr/bin:/bin"})


def series(repo: Path, tmp_path: Path, name: str, steps: list[tuple[str, dict]]) -> Path:
    """An mbox of one commit per step on top of repo's HEAD: {file: text or None}."""
    work = tmp_path / f"work-{name}"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    for subject, files in steps:
        for f, text in files.items():
            if text is None:
                (work / f).unlink()
            else:
                (work / f).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", subject)
    out = subprocess.run(["git", "-C", str(work), "format-patch", "--stdout",
                          f"-{len(steps)}"], check=True, capture_output=True).stdout
    mbox = tmp_path / f"{name}.mbox"
    mbox.write_bytes(out)
    return mbox


def build_only(env, tmp_path, mini, mbox, *extra, rd_name="run"):
    rd = tmp_path / rd_name
    r = orch(env, tmp_path, "test", "--offline-mode", "--build-only", "--mbox", str(mbox),
             "--tree", str(mini), "--run-dir", str(rd), *extra)
    return r, rd


def sigterm_when(args: list[str], cwd: Path, env: dict, ready, within: float) -> tuple[int, str]:
    """Start `orch test --offline-mode ARGS`, SIGTERM it once ready() holds;
    return its exit status and stderr."""
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode",
                          *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not ready():
            time.sleep(0.2)
        assert ready(), "the run never got to the point to interrupt"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, err


def processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{d.name}: {cmd}")
    return found


def assert_booted_as_built(cfg: dict) -> None:
    """Each side that booted ran the kernel its build produced: the banner
    its console printed is the one orch found in the image and the build."""
    banners = {}
    for side in ("baseline", "patched"):
        s = cfg[side]
        if s.get("boot", {}).get("status", "not run") == "not run":
            continue
        assert s["build"]["banner"].startswith("Linux version 7.2.13"), s["build"]
        assert s["boot"]["banner"] == s["build"]["banner"], s["boot"]
        banners[side] = s["build"]["banner"]
    if len(banners) == 2:
        assert banners["baseline"] != banners["patched"]


# The real bisect's stack (test_bisect_e2e.py, scripts/bench.py).
BISECT_BREAKS = PATCHES / "bisect-breaks-irq-eviction.mbox"
STACK_GIT_ENV = {"GIT_AUTHOR_NAME": "Orch Tests", "GIT_AUTHOR_EMAIL": "orch-tests@localhost",
                 "GIT_COMMITTER_NAME": "orch", "GIT_COMMITTER_EMAIL": "orch@localhost",
                 "GIT_AUTHOR_DATE": "2026-11-28T12:00:00Z",
                 "GIT_COMMITTER_DATE": "2026-11-28T12:00:00Z",
                 "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def stack_git(cwd, *args) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **STACK_GIT_ENV}).stdout.strip()


def _commit_mail(repo: Path, parent: str, mail: Path, work: Path) -> str:
    """`git am` of one mail without a checkout (a kernel checkout costs half
    a minute): its diff applied to a temporary index of `parent`."""
    work.mkdir(parents=True, exist_ok=True)
    msg, patch = work / "msg", work / "patch"
    info = subprocess.run(["git", "-C", str(repo), "mailinfo", str(msg), str(patch)],
                          stdin=open(mail), check=True, capture_output=True, text=True).stdout
    fields = dict(l.split(": ", 1) for l in info.splitlines() if ": " in l)
    env = {**os.environ, **STACK_GIT_ENV, "GIT_INDEX_FILE": str(work / "index"),
           "GIT_AUTHOR_NAME": fields["Author"], "GIT_AUTHOR_EMAIL": fields["Email"]}
    run = lambda *a, **kw: subprocess.run(["git", "-C", str(repo), *a], check=True,  # noqa: E731
                                          capture_output=True, text=True, env=env,
                                          **kw).stdout.strip()
    run("read-tree", parent)
    run("apply", "--cached", str(patch))
    tree = run("write-tree")
    body = fields["Subject"] + "\n\n" + msg.read_text()
    return run("commit-tree", tree, "-p", parent, input=body)


def bisect_stack(debian: Path, where: Path) -> dict[str, str]:
    """The real bisect's stack in `debian` (orch's 7.2.13 import, which orch
    bisects: the other real tests' kernels were built there), under
    refs/orch-tests/bisect-stack: the v3 port, the breaking patch and an
    unrelated Documentation commit; and `where`, a plain clone of it with
    nothing checked out (git bisect --no-checkout and orch check need none).
    Commit ids by name: port, breaking, top."""
    work = where.parent / f".{where.name}-mails"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "mailsplit", "-o" + str(work), str(PORT)], check=True,
                   capture_output=True)
    head = stack_git(debian, "rev-parse", "refs/tags/debian-7.2.13-1")
    for mail in sorted(work.glob("[0-9]*")):
        if "\n---\n" in mail.read_text() and "diff --git" in mail.read_text():
            head = _commit_mail(debian, head, mail, work / "am")
    ids = {"port": head}
    ids["breaking"] = _commit_mail(debian, head, BISECT_BREAKS, work / "am")
    doc = subprocess.run(["git", "-C", str(debian), "hash-object", "-w", "--stdin"],
                         input="An unrelated commit: nothing the kernel build reads.\n",
                         check=True, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, **STACK_GIT_ENV, "GIT_INDEX_FILE": str(work / "am" / "index")}
    g = lambda *a, **kw: subprocess.run(["git", "-C", str(debian), *a], check=True,  # noqa: E731
                                        capture_output=True, text=True, env=env,
                                        **kw).stdout.strip()
    g("read-tree", ids["breaking"])
    g("update-index", "--add", "--cacheinfo", f"100644,{doc},Documentation/orch-bisect-test.rst")
    ids["top"] = g("commit-tree", g("write-tree"), "-p", ids["breaking"],
                   input="Documentation: a note nobody builds\n")
    g("update-ref", "refs/orch-tests/bisect-stack", ids["top"])
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(debian), str(where)],
                   check=True, env={**os.environ, **STACK_GIT_ENV})
    stack_git(where, "fetch", "-q", str(debian), "refs/orch-tests/bisect-stack")
    return ids


def leaked(canaries: dict, *places: Path | str) -> dict[str, list[str]]:
    """Which canaries appear where: in any file under each directory (every
    byte, any name) or in a string (orch's output)."""
    out: dict[str, list[str]] = {}
    for place in places:
        if isinstance(place, Path):
            items = [(str(f), f.read_bytes()) for f in sorted(place.rglob("*"))
                     if f.is_file() and not f.is_symlink()]
        else:
            items = [("output", place.encode())]
        for where, data in items:
            for k, v in canaries.items():
                if v.encode() in data:
                    out.setdefault(k, []).append(where)
    return out


# A real browser for the HTML reports (Debian's chromium, headless).
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is not installed (scripts/setup.sh installs Debian's chromium)"
    return exe


def browse(tmp_path: Path, page: Path, shot: Path | None = None) -> tuple[str, list[str]]:
    """The DOM Chromium built from `page`, and the console messages it logged."""
    args = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1280,2400"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120)
    console = [l for l in dom.stderr.splitlines() if ":CONSOLE" in l]
    if shot:
        r = subprocess.run([*args, f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=120)
        console += [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    return dom.stdout, console
