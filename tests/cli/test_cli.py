"""`orch test` end to end on small inputs: exit statuses, one-line errors,
and a run directory that keeps what was done. Real b4, real git."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, V3_COVER, git, one_error_line, orch, run_json
from lore_server import LORE_DATA_DIR


# Overrides conftest.py's `env` (orch on the stand-in tree) in this module:
# these runs talk to b4, so they start from b4_env, cut off from the user's
# config and cache.
@pytest.fixture
def env(b4_orch_env):
    return b4_orch_env


@pytest.fixture
def small_tree(tmp_path):
    """A tiny git tree and two one-patch series: one applies, one does not."""
    repo = tmp_path / "tree"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "hello.c").write_text("int main(void)\n{\n\treturn 0;\n}\n")
    git(repo, "add", "hello.c")
    git(repo, "commit", "-q", "-m", "base")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    (work / "hello.c").write_text("int main(void)\n{\n\treturn 1;\n}\n")
    git(work, "commit", "-q", "-am", "hello: return 1")
    good = subprocess.run(["git", "-C", str(work), "format-patch", "--stdout", "-1"],
                          check=True, capture_output=True).stdout
    (work / "hello.c").write_text("int main(void)\n{\n\treturn 2;\n}\n")
    git(work, "commit", "-q", "-am", "hello: return 2")
    bad = subprocess.run(["git", "-C", str(work), "format-patch", "--stdout", "-1"],
                         check=True, capture_output=True).stdout  # context is 'return 1'
    (tmp_path / "good.mbox").write_bytes(good)
    (tmp_path / "bad.mbox").write_bytes(bad)
    return repo


def bad_input_alone(r: subprocess.CompletedProcess, rd: Path) -> str:
    """Bad input's whole answer: status 2, its one error line on stderr and
    nothing else, and no run directory left (it is what returns)."""
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1, r.stdout + r.stderr
    assert not rd.exists(), sorted(rd.rglob("*"))
    return one_error_line(r.stderr)


def test_unknown_msgid_exit_2(env, tmp_path, lore_server):
    rd = tmp_path / "run"
    before = len(lore_server.requests)
    r = orch(env, tmp_path, "test", "--lore-url", lore_server.url, "--run-dir", str(rd),
             "missing@example.org")
    assert "unknown Message-ID missing@example.org" in bad_input_alone(r, rd)
    assert any("missing%40example.org" in q.path or "missing@example.org" in q.path
               for q in lore_server.requests[before:]), "lore was not asked"


def test_cover_letter_only_exit_2(env, tmp_path):
    mbox = tmp_path / "cover.mbox"
    mbox.write_bytes(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
                     + (LORE_DATA_DIR / "messages" / f"{V3_COVER}.eml").read_bytes())
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(mbox), "--run-dir", str(rd))
    assert "no patches" in bad_input_alone(r, rd)


def test_missing_tree_exit_2_leaves_nothing(env, tmp_path):
    """Found after the series was read (b4 ran, its progress was said):
    still the one line, and the run directory is gone."""
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(LORE_DATA_DIR / "all.mbox"),
             "--tree", str(tmp_path / "nope"), "--run-dir", str(rd))
    assert "no such tree" in bad_input_alone(r, rd)


def test_does_not_apply_exit_3(env, tmp_path, small_tree):
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "bad.mbox"),
             "--tree", str(small_tree), "--run-dir", str(rd))
    assert r.returncode == 3, r.stderr
    line = one_error_line(r.stderr)
    assert "patch 1/1" in line and "hello.c" in line and "hunk #1" in line
    rec = run_json(rd)
    assert rec["verdict"] == "NO-APPLY"
    assert rec["apply"]["rejections"][0]["file"] == "hello.c"
    assert rec["series"]["patches"][0]["status"] == "failed"
    assert "series names no base-commit; using the tree's HEAD" in rec["tree"]["base_reason"]
    # The user's checkout is untouched.
    assert (small_tree / "hello.c").read_text().count("return 0") == 1
    assert not list(small_tree.glob("*.rej"))


def test_applies_then_baseline_build_fails_exit_5(env, tmp_path, small_tree):
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "good.mbox"),
             "--tree", str(small_tree), "--run-dir", str(rd))
    assert r.returncode == 5, r.stderr
    assert "baseline build of config base failed" in one_error_line(r.stderr)
    rec = run_json(rd)
    assert rec["apply"]["ok"] is True
    assert rec["series"]["patches"][0]["status"] == "applied"
    assert rec["configs"][0]["baseline"]["build"]["status"] == "failed"
    assert (rd / "logs" / "build-base-baseline.log").exists()


def test_unknown_config_exit_2(env, tmp_path):
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(LORE_DATA_DIR / "all.mbox"),
             "--config", "nosuch", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "unknown config 'nosuch'" in one_error_line(r.stderr)


def test_report_reprints_a_run(env, tmp_path, small_tree):
    rd = tmp_path / "run"
    orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "bad.mbox"),
         "--tree", str(small_tree), "--run-dir", str(rd))
    r = orch(env, tmp_path, "report", str(rd))
    assert r.returncode == 3
    assert "verdict: NO-APPLY (exit 3)" in r.stdout


def test_msgid_from_lore_through_the_cli(env, tmp_path, lore_server, small_tree):
    """The online path end to end: b4 fetches v2 from the loopback lore,
    --latest moves to v3, the series does not apply to a foreign tree."""
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--lore-url", lore_server.url, "--latest",
             "--tree", str(small_tree), "--run-dir", str(rd),
             "<20260225-blk-dontcache-v2-0-70e7ac4f7108@columbia.edu>")
    assert r.returncode == 3, r.stderr
    rec = run_json(rd)
    s = rec["series"]
    assert s["version"] == 3 and s["change_id"] == "20260218-blk-dontcache-338133dd045e"
    assert s["patches"][1]["collected"] == ["Reviewed-by: Jan Kara <jack@suse.cz>"]
    assert "not in the tree; using the tree's HEAD" in rec["tree"]["base_reason"]
    assert "patch 1/2" in one_error_line(r.stderr)


def test_second_run_waits_for_the_worktree_and_sigterm_is_recorded(env, tmp_path, small_tree):
    """Two runs on one tree never share the worktree: the second waits and
    says so. SIGTERM while it waits ends it with 130 and run.json says the
    run was interrupted (what it had done is kept)."""
    real = str(small_tree.resolve())
    ws = Path(env["ORCH_CACHE"]) / "work" / f"{small_tree.name}-{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    ws.mkdir(parents=True)
    holder = os.open(ws / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as another orch run would
    rd = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode",
                          "--mbox", str(tmp_path / "good.mbox"), "--tree", str(small_tree),
                          "--run-dir", str(rd)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (rd / "run.json").exists() and run_json(rd).get("tree"):
                break
            time.sleep(0.2)
        time.sleep(1.5)  # inside the wait loop by now
        assert p.poll() is None, "the second run did not wait"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        os.close(holder)
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "waiting for another orch run" in err
    assert "Traceback" not in err
    rec = run_json(rd)
    assert rec["state"] == "interrupted" and rec["verdict"] == "INTERRUPTED"
    assert rec["series"]["patches"][0]["subject"] == "hello: return 1"


def test_lore_unreachable_exit_5(env, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--lore-url", f"http://127.0.0.1:{port}/",
             "--run-dir", str(rd), "someone@example.org")
    assert r.returncode == 5, r.stderr
    assert "lore unreachable at http://127.0.0.1:" in one_error_line(r.stderr)
    assert run_json(rd)["verdict"] == "INFRA-ERROR"


def test_lore_that_never_answers_times_out_exit_5(env, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # accepts connections, never answers
    try:
        port = s.getsockname()[1]
        rd = tmp_path / "run"
        r = orch(env, tmp_path, "test", "--lore-url", f"http://127.0.0.1:{port}/",
                 "--lore-timeout", "5", "--run-dir", str(rd), "someone@example.org")
    finally:
        s.close()
    assert r.returncode == 5, r.stderr
    assert "b4 timed out after 5s talking to http://127.0.0.1:" in one_error_line(r.stderr)


def test_not_an_mbox_exit_2(env, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("just some text\nnot a mail\n")
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(f),
             "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "is not an mbox" in one_error_line(r.stderr)
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "nope.mbox"),
             "--run-dir", str(tmp_path / "run2"))
    assert r.returncode == 2
    assert "cannot read mbox" in one_error_line(r.stderr)


def test_corrupt_diff_exit_3_and_nothing_built(env, tmp_path, small_tree):
    good = (tmp_path / "good.mbox").read_text()
    # A hunk that claims more lines than it has: git rejects it as corrupt.
    corrupt = good.replace("@@ -1,4 +1,4 @@", "@@ -1,9 +1,9 @@")
    assert corrupt != good
    (tmp_path / "corrupt.mbox").write_text(corrupt)
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "corrupt.mbox"),
             "--tree", str(small_tree), "--run-dir", str(rd))
    assert r.returncode == 3, r.stderr
    line = one_error_line(r.stderr)
    assert "patch 1/1" in line and "corrupt patch" in line
    rec = run_json(rd)
    assert rec["configs"] == [] and rec["verdict"] == "NO-APPLY"


def test_selection_that_matches_nothing_exit_2_before_any_work(env, tmp_path):
    """The selection is collected on the host first: a test id that matches
    nothing stops with one line naming it, before b4, a tree or a build
    (this once booted both kernels and printed PASS)."""
    rd = tmp_path / "run"
    sel = "guest_tests/test_blockdev_dontcache.py::test_no_such_test"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox",
             str(LORE_DATA_DIR / "blk-dontcache-v3.mbox"), "--tree", str(tmp_path / "no-tree"),
             "--guest-test", sel, "--run-dir", str(rd))
    line = bad_input_alone(r, rd)
    assert line.startswith(f"orch: error: no guest test matches the selection: {sel}")
    # --repeat must be a positive count.
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox",
             str(LORE_DATA_DIR / "blk-dontcache-v3.mbox"), "--repeat", "0")
    assert r.returncode == 2 and "--repeat must be positive" in one_error_line(r.stderr)


def test_help_ends_with_the_exit_statuses_and_lists_the_configs(env, tmp_path):
    """`python -m orchestrator` is `orch`; every help ends with the exit
    statuses, and `--config` names the configs it knows."""
    for args in (["--help"], ["test", "--help"], ["report", "--help"], ["bisect", "--help"],
                 ["check", "--help"]):
        r = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        tail = r.stdout.rstrip().split("\n\n")[-1]
        assert tail.startswith("exit status"), args
        assert ("130" in tail) if args[0] != "report" else ("newer" in tail), tail
    r = orch(env, tmp_path, "test", "--help")
    flat = " ".join(r.stdout.split())
    for name in sorted(p.stem for p in (REPO / "kconfigs").glob("*.config")):
        assert name in flat.split("one of ")[1].split(";")[0], name
    for group in ("series intake:", "tree:", "build:", "boot and guest tests:"):
        assert group in r.stdout


def test_config_file_flags_override_and_print_config_says_where(env, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('lore_url = "https://lore.example.org"\nguest_timeout = 1234\n'
                   'configs = ["base"]\n')
    env = {**env, "ORCH_CONFIG": str(cfg)}
    r = orch(env, tmp_path, "test", "--print-config", "--guest-timeout", "99")
    assert r.returncode == 0, r.stderr
    lines = {l.split(" = ")[0].lstrip("# "): l for l in r.stdout.splitlines()}
    assert float(lines["guest_timeout"].split("#")[0].split("=")[1]) == 99
    assert lines["guest_timeout"].endswith("# flag --guest-timeout")
    assert '"https://lore.example.org"' in lines["lore_url"] and lines["lore_url"].endswith(str(cfg))
    assert '["base"]' in lines["configs"] and lines["configs"].endswith(str(cfg))
    assert lines["cache"].endswith("# env ORCH_CACHE")   # the environment wins over the file
    assert lines["test_timeout"].endswith("# default")


def test_config_file_cache_and_configs_are_used(env, tmp_path, small_tree):
    """What the file says is what a run does: its cache holds the worktree,
    its config list is the matrix."""
    cache = tmp_path / "filecache"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'cache = "{cache}"\nconfigs = ["base"]\n')
    env = {k: v for k, v in env.items() if k != "ORCH_CACHE"} | {"ORCH_CONFIG": str(cfg)}
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "bad.mbox"),
             "--tree", str(small_tree), "--run-dir", str(rd))
    assert r.returncode == 3, r.stderr
    assert list((cache / "work").iterdir()), "the worktree is not in the file's cache"
    cfg.write_text('configs = ["nosuch"]\n')
    r = orch(env, tmp_path, "test", "--offline-mode", "--mbox", str(tmp_path / "bad.mbox"),
             "--tree", str(small_tree), "--run-dir", str(tmp_path / "run2"))
    assert r.returncode == 2 and "unknown config 'nosuch'" in one_error_line(r.stderr)


@pytest.mark.parametrize("text,why", [
    ('guest_timeout = "fast"\n', "guest_timeout must be a positive number"),
    ("guest-timeout = 10\n", "did you mean guest_timeout"),
    ("jobs = \n", "not valid TOML"),
])
def test_bad_config_file_is_one_line_exit_2(env, tmp_path, text, why):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    r = orch({**env, "ORCH_CONFIG": str(cfg)}, tmp_path, "test", "--offline-mode", "--mbox",
             str(tmp_path / "x.mbox"))
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert why in line and str(cfg) in line, line
