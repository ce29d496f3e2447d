"""A shared ccache between two "runners" (two ORCH_CACHE directories) through
a real redis-server this test starts, reached from inside the build sandbox
through a Unix socket: baseline jobs fill it, a series job only reads it,
and a hostile series cannot write to it even with the credentials it is
given (the server's ACL says so, not ccache's setting).

The stand-in tree (tests/data/minikernel) builds with real gcc and ccache;
its boots are the stand-in guest's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
import standin_guest
from helpers import IRQ_TEST, git, series

from orchestrator.fanout import job_run as job_cmd
from orchestrator.fanout import jobfiles
from orchestrator.kernel import ccache_stats, remote_ccache
from orchestrator.nightly import night as nightrec
from orchestrator.nightly.night import Plan, SeriesRev, TreeState

REDIS = shutil.which("redis-server")

# What a hostile series can do from inside its build: read the shared
# ccache's URL from its environment and write with its credentials, or as
# Redis's default user.
POISON = r"""#!/bin/sh
url=${CCACHE_REMOTE_STORAGE%%|*}
echo "url-seen: ${url:+yes}"
rest=${url#redis+unix://}
cred=${rest%%@*}; user=${cred%%:*}; pass=${cred#*:}
sock=/${rest#*@localhost/}
redis-cli -s "$sock" --user "$user" --pass "$pass" --no-auth-warning SET orch-poisoned 1 2>&1
redis-cli -s "$sock" SET orch-poisoned-default 1 2>&1
"""


@pytest.fixture
def redis(tmp_path):
    if REDIS is None:
        pytest.fail("redis-server is missing: scripts/setup.sh installs it (Debian redis-server)")
    d = tmp_path / "redis"
    d.mkdir()
    (d / "users.acl").write_text(
        (open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "redis",
                           "orch-ccache.acl")).read())
        .replace("CHANGE-ME-WRITER", "wpass").replace("CHANGE-ME-READER", "rpass")
        + "user admin on >apass ~* &* +@all\n")     # the test's own look inside
    sock = d / "redis.sock"
    proc = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", str(sock),
                             "--unixsocketperm", "777", "--aclfile", str(d / "users.acl"),
                             "--save", "", "--appendonly", "no", "--dir", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    # However slow the machine: until the socket is there, or the server died.
    deadline = time.monotonic() + 120
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sock.exists(), "redis-server did not start"

    def cli(*args: str, user: str = "admin", password: str = "apass") -> str:
        return subprocess.run(["redis-cli", "-s", str(sock), "--user", user, "--pass", password,
                               "--no-auth-warning", *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        yield {"sock": sock, "cli": cli,
               "write": f"redis+unix://writer:wpass@localhost{sock}",
               "read": f"redis+unix://reader:rpass@localhost{sock}"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ccache(run_json) -> dict:
    rec = json.loads(run_json.read_text())
    (cfg,) = rec["configs"]
    return {side: cfg[side]["build"].get("ccache") for side in ("baseline", "patched")}


def test_baseline_jobs_fill_it_series_jobs_only_read_it(redis, mini, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    standin_guest.install(monkeypatch)
    # Sources with a header, as every kernel source has: ccache 4.7 keys a
    # header-less source's manifest and its result alike, so a shared
    # cache "hits" the manifest and never the object for those.
    (mini / "mini.h").write_text("#define MINI 1\n")
    for c in ("main.c", "old.c"):
        (mini / c).write_text('#include "mini.h"\n' + (mini / c).read_text())
    git(mini, "add", "-A")
    git(mini, "commit", "-q", "-m", "mini: a header")
    makefile = (mini / "Makefile").read_text()
    evil = series(mini, tmp_path, "evil", [("mini: a hostile series", {
        "poison.sh": POISON, "evil.c": "int evil(void) { return 666; }\n",
        # What it got goes into the build log (its build directory is a
        # layer orch throws away).
        "Makefile": makefile + "$(info POISON: $(shell sh $(srctree)/poison.sh 2>&1 "
                               "| tr '\\n' ' '))\n"})])
    commit = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    pdir = tmp_path / "plan"
    (pdir / "series").mkdir(parents=True)
    shutil.copy(evil, pdir / "series" / "evil.mbx")
    plan = Plan("2026-11-28", "http://127.0.0.1:9/all", ["base"],
                [SeriesRev("msgid:evil@x", "mini: a hostile series", "evil@x", 1, None,
                           "tracked", "series/evil.mbx")],
                [TreeState("mini", "git", str(mini), commit)], guest_tests=[IRQ_TEST])
    nightrec.write_plan(pdir, plan)
    jobfiles.write_jobs(pdir, jobfiles.cut(plan))
    # A careless engine setup: every job sees both URLs. orch gives the
    # writer's only to builds of a baseline job.
    monkeypatch.setenv(remote_ccache.WRITE_ENV, redis["write"])
    monkeypatch.setenv(remote_ccache.READ_ENV, redis["read"])

    # -- runner 1: the baseline job fills the shared cache ---------------------------
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner1"))
    assert job_cmd.run_job(pdir, "b-mini-base", tmp_path / "shards" / "b") == 0
    keys = int(redis["cli"]("DBSIZE"))
    assert keys > 0
    log = (tmp_path / "shards" / "b" / "logs" / "build-base-baseline.log").read_text()
    assert f"shared ccache {redis['sock']} (read-write)" in log

    # -- runner 2: empty, no import: it builds the baseline from the shared cache ----
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner2"))
    assert job_cmd.run_job(pdir, "s-mini-base-1", tmp_path / "shards" / "s") == 0
    (cell,) = json.loads((tmp_path / "shards" / "s" / "night.json").read_text())["cells"]
    assert cell["status"] == "PASS" and cell["built"] == {"baseline": True, "patched": True}
    stats = _ccache(tmp_path / "shards" / "s" / cell["run_dir"] / "run.json")
    # main.c and old.c came from runner 1 (and init/version.c too when both
    # builds stamped the same second into it).
    assert stats["baseline"]["remote_hits"] >= 2, stats
    assert stats["patched"].get("remote_misses", 0) >= 1, stats     # evil.c: nobody had it
    logs = tmp_path / "shards" / "s" / cell["run_dir"] / "logs"
    assert f"shared ccache {redis['sock']} (read-only)" in (logs / "build-base-patched.log").read_text()
    assert "(read-write)" not in (logs / "build-base-baseline.log").read_text()

    # Nothing the series job built went in, and the hostile build could not
    # write: it saw the reader's URL, and the server refused.
    assert int(redis["cli"]("DBSIZE")) == keys
    assert redis["cli"]("EXISTS", "orch-poisoned") == "0"
    assert redis["cli"]("EXISTS", "orch-poisoned-default") == "0"
    said = (logs / "build-base-patched.log").read_text()
    assert "url-seen: yes" in said and "NOPERM" in said and "NOAUTH" in said, said

    # -- one machine (orch test, both URLs set): its baseline build may write,
    #    its patched build only reads ----------------------------------------------
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner3"))
    from orchestrator.run import series_run as test_cmd
    rd = tmp_path / "single"
    test_cmd.test(test_cmd.Options(mbox=evil, offline=True, tree=mini, on=commit,
                                   configs=["base"], run_dir=rd, guest_tests=[IRQ_TEST]))
    assert "(read-write)" in (rd / "logs" / "build-base-baseline.log").read_text()
    assert f"shared ccache {redis['sock']} (read-only)" in \
        (rd / "logs" / "build-base-patched.log").read_text()
    assert redis["cli"]("EXISTS", "orch-poisoned") == "0"
    said = (rd / "logs" / "build-base-patched.log").read_text()
    assert "NOPERM" in said, said

    # Control: the same script with the writer's URL (what a series build
    # would have if orch handed it over) does poison the cache.
    r = subprocess.run(["sh", "-c", POISON], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "CCACHE_REMOTE_STORAGE": redis["write"]})
    assert "OK" in r.stdout and redis["cli"]("EXISTS", "orch-poisoned") == "1"


def test_remote_urls_are_checked_before_any_work():
    r = remote_ccache.parse("redis+unix://u:p@localhost/run/r.sock", False)
    assert r.socket.as_posix() == "/run/r.sock" and r.storage().endswith("|read-only=true")
    assert "p@" not in r.describe()
    assert remote_ccache.parse("redis+unix:/run/r.sock", True).storage() == "redis+unix:/run/r.sock"
    for bad, why in (("redis://cache:6379", "builds run without network"),
                     ("redis+unix:relative.sock", "must be absolute"),
                     ("redis+unix:/s|read-only=false", "without ccache attributes"),
                     ("ftp://x", r"not redis\+unix:")):
        with pytest.raises(remote_ccache.BadInput, match=why):
            remote_ccache.parse(bad, True)
    assert remote_ccache.parse("redis://cache:6379", True, sandbox=False).socket is None


def test_stats_count_remote_hits(tmp_path):
    log = tmp_path / "stats"
    # a.c: answered from the shared cache; b.c: not there, and the write
    # refused; c.c: a manifest found there but no result (ccache 4.7 keys a
    # header-less source's manifest and result alike): compiled, no hit.
    log.write_text("# a.c\ndirect_cache_hit\nremote_storage_hit\n"
                   "# b.c\ncache_miss\nremote_storage_read_miss\nremote_storage_error\n"
                   "# c.c\ncache_miss\ndirect_cache_miss\nremote_storage_hit\n"
                   "# d.c\ncache_miss\n")
    s = ccache_stats.read(log)
    assert (s["hits"], s["misses"], s["remote_hits"], s["remote_misses"], s["remote_errors"],
            s["remote_hit_rate"]) == (1, 3, 1, 1, 1, 0.25)
    log.write_text("# a.c\ndirect_cache_hit\n")
    assert "remote_hits" not in ccache_stats.read(log)
