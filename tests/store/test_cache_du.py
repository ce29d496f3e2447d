"""`orch cache du`: a real cache made by orch runs on the stand-in tree, sized
as `du -sx --block-size=1` sizes it (hard links once, links not followed,
other file systems not entered), per kind and in all; and what it prints."""

from __future__ import annotations

import json
import os
import time

from cache_world import KINDS, cache_cmd, du, one_series, run_series, stamp

from orchestrator.store import usage


def test_du_counts_what_du_counts(env, tmp_path, mini):
    for i, name in enumerate(("alpha", "beta")):
        r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, name, i), f"run{i}",
                       "--kselftest", "mini")
        assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    # A hard link across kinds is one file's blocks (du counts it once).
    kernel = next((cache / "kernels").iterdir())
    result = next((cache / "results").iterdir())
    os.link(kernel / "bzImage", result / "linked")
    # A check's record, and a link out of the cache that must not be walked.
    (cache / "checks" / "20261204-1200-abc").mkdir(parents=True)
    (cache / "checks" / "20261204-1200-abc" / "logs.txt").write_text("{}" * 3000)
    (cache / "results" / "outside").symlink_to("/usr")

    u = usage.scan(cache)
    assert u.total == du(cache)
    for k in ("kernels", "kselftests", "work", "checks", "ccache"):
        assert u.kinds[k].bytes == du(cache / k), k
    # The link's own size is all /usr adds (the linked bzImage is in kernels/).
    assert u.kinds["results"].bytes == du(cache / "results") - \
        (kernel / "bzImage").lstat().st_blocks * 512
    assert len(u.kinds["kernels"].entries) == 3       # one baseline, two patched
    assert len(u.kinds["results"].entries) == 3 + 1   # a boot per kernel, and the link
    assert len(u.kinds["kselftests"].entries) == 3
    assert [e.key for e in u.kinds["work"].entries] == os.listdir(cache / "work")
    assert sum(u.kinds[k].bytes for k in u.kinds) + os.lstat(cache).st_blocks * 512 == u.total

    r = cache_cmd(env, tmp_path, "du", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["total"]["bytes"] == du(cache)
    assert set(data["kinds"]) == {*KINDS, "ccache", "other"}
    assert data["kinds"]["kernels"]["entries"] == 3
    assert data["kinds"]["ccache"]["files"] > 0

    text = cache_cmd(env, tmp_path, "du").stdout
    lines = text.splitlines()
    assert lines[0] == f"cache {cache}"
    assert lines[1].split() == ["kind", "size", "entries", "oldest", "use", "newest", "use"]
    assert [l.split()[0] for l in lines[2:11]] == [*KINDS, "ccache", "other", "total"]


def test_last_use_is_the_lock_stamp_and_du_says_it(env, tmp_path, mini):
    r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, "alpha"), "run")
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    keys = sorted(os.listdir(cache / "kernels"))
    stamp(cache, "kernels", keys[0], 40 * 86400)
    stamp(cache, "kernels", keys[1], 3 * 3600)
    u = usage.scan(cache)
    ages = {e.key: time.time() - e.last_used for e in u.kinds["kernels"].entries}
    assert 40 * 86400 - 60 < ages[keys[0]] < 40 * 86400 + 60
    assert all(e.stamped for e in u.kinds["kernels"].entries)
    line = next(l for l in usage.text(u).splitlines() if l.strip().startswith("kernels"))
    assert line.split()[-4:] == ["40d", "ago", "3h", "ago"]


def test_an_empty_or_missing_cache(env, tmp_path):
    r = cache_cmd(env, tmp_path, "du")
    assert r.returncode == 0, r.stderr
    assert "none yet" in r.stdout
    (tmp_path / "cache").mkdir()
    data = json.loads(cache_cmd(env, tmp_path, "du", "--json").stdout)
    assert data["total"] == {"bytes": du(tmp_path / "cache"), "entries": 0}


def test_a_kind_directory_that_is_a_link_is_not_walked(env, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "kernels").symlink_to("/usr")
    u = usage.scan(cache)
    assert u.kinds["kernels"].entries == []
    assert u.total == du(cache)           # the link itself, not /usr
    assert any("kernels is not a directory" in n for n in u.kinds["other"].notes)
