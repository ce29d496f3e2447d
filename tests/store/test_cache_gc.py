"""`orch cache gc` on real caches of the stand-in tree: by age, by size least
recently used first, a dry run, ccache trimmed by ccache, leftovers of killed
runs, the config file's defaults, bad values as one line, and a cache that
still works after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cache_world import (
    cache_cmd,
    entries,
    gc_json,
    kept,
    one_series,
    removed,
    run_series,
    stamp,
)
from helpers import one_error_line, orch, run_json

DAY = 86400


@pytest.fixture
def filled(env, tmp_path, mini):
    """A cache after two series' runs: 3 kernels (one baseline), 3 kept
    results, the workspace; each entry's last use set apart from the others."""
    for i, name in enumerate(("alpha", "beta")):
        r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, name, i), f"run{i}")
        assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    have = entries(cache)
    assert len(have["kernels"]) == 3 and len(have["results"]) == 3 and len(have["work"]) == 1
    ages = {}
    for i, (kind, key) in enumerate([(k, e) for k in ("kernels", "results", "work")
                                     for e in have[k]]):
        ages[f"{kind}/{key}"] = (60 - i * 7) * DAY      # 60d, 53d, ... 4d ago
        stamp(cache, kind, key, ages[f"{kind}/{key}"])
    return cache, ages


def by_age(ages: dict[str, float]) -> list[str]:
    return sorted(ages, key=lambda n: -ages[n])


def test_gc_by_age_removes_what_was_not_used_within_it(env, tmp_path, filled):
    cache, ages = filled
    rep = gc_json(env, tmp_path, "--max-age", "30d", "--max-size", "1T")
    old = [n for n in by_age(ages) if ages[n] > 30 * DAY]
    assert sorted(removed(rep)) == sorted(old) and len(old) == 5
    assert all(d["why"].startswith("not used for ") and "(max age 30d)" in d["why"]
               for d in rep["removed"])
    left = entries(cache)
    assert sorted(f"{k}/{e}" for k in left for e in left[k]) == \
        sorted(n for n in ages if ages[n] <= 30 * DAY)
    assert rep["newer"]["entries"] == len(ages) - 5
    assert rep["freed"] > 0 and rep["after"] == rep["before"] - rep["freed"]


def test_gc_by_size_removes_the_least_recently_used_first(env, tmp_path, filled):
    cache, ages = filled
    before = gc_json(env, tmp_path, "--dry-run", "--max-age", "1000d", "--max-size", "1T")
    total = before["before"]
    sizes = {}
    for kind in ("kernels", "results", "work"):
        for e in entries(cache)[kind]:
            sizes[f"{kind}/{e}"] = int(subprocess.run(
                ["du", "-sx", "--block-size=1", str(cache / kind / e)], capture_output=True,
                text=True, check=True).stdout.split()[0])
    order = by_age(ages)
    # A cap that the three least recently used entries must go for, not a fourth.
    cap = total - sum(sizes[n] for n in order[:3]) + 1
    assert cap < total - sum(sizes[n] for n in order[:2])
    rep = gc_json(env, tmp_path, "--max-size", str(cap), "--max-age", "1000d")
    assert removed(rep) == order[:3]
    assert all(d["why"].startswith("least recently used") for d in rep["removed"])
    assert rep["after"] <= cap
    left = entries(cache)
    assert sorted(f"{k}/{e}" for k in left for e in left[k]) == sorted(order[3:])


def test_a_dry_run_removes_nothing_and_says_what_it_would(env, tmp_path, filled):
    cache, ages = filled
    before = entries(cache)
    r = cache_cmd(env, tmp_path, "gc", "--dry-run", "--max-size", "0")
    assert r.returncode == 0, r.stderr
    assert entries(cache) == before
    lines = r.stdout.splitlines()
    assert sum(l.startswith("would remove ") for l in lines) == len(ages)
    assert lines[-1].startswith("would free ")
    assert not (cache / ".trash").exists()


def test_the_cache_still_works_after_gc_took_everything(env, tmp_path, mini, filled):
    cache, _ages = filled
    rep = gc_json(env, tmp_path, "--max-size", "0")
    assert all(v == [] for v in entries(cache).values()), entries(cache)
    assert rep["kept"] == [] and rep["failed"] == []
    assert os.listdir(cache / ".trash") == [] and os.listdir(cache / "locks" / "kernels") == []
    r = run_series(tmp_path, env, mini, one_series(mini, tmp_path, "gamma"), "again")
    assert r.returncode == 0, r.stderr
    rec = run_json(tmp_path / "again")
    assert rec["configs"][0]["baseline"]["build"]["cached"] is False   # built anew
    assert rec["verdict"] == "PASS"


def test_ccache_is_trimmed_by_ccache_and_its_config_never_written(env, tmp_path, filled):
    cache, _ages = filled
    ccache = cache / "ccache"

    def cached_objects() -> int:
        return sum(1 for d, _s, files in os.walk(ccache) for f in files
                   if f.endswith(("R", "M")) and "tmp" not in os.path.relpath(d, ccache))
    assert cached_objects() > 0
    rep = gc_json(env, tmp_path, "--max-size", "1M", "--max-age", "1000d")
    assert any(line.startswith("ccache: trimmed to its share") and "--clear" in line
               for line in rep["ccache"]), rep["ccache"]
    assert cached_objects() == 0
    assert not (ccache / "ccache.conf").exists()
    # A share big enough for ccache: it is left alone.
    rep = gc_json(env, tmp_path, "--max-size", "1T", "--max-age", "1000d")
    assert not any("share" in line for line in rep["ccache"])


def test_leftovers_of_a_killed_run_go_and_a_live_ones_stay(env, tmp_path, filled):
    cache, _ages = filled
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    live = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (dead, live.pid):
            d = cache / "kernels" / f".{'ab' * 16}.{pid}"
            d.mkdir()
            (d / "bzImage").write_bytes(b"half")
            os.utime(d, (1, 1))                  # older than LEFTOVER_AGE
        rep = gc_json(env, tmp_path, "--max-size", "1T", "--max-age", "1000d")
        assert removed(rep) == [f"kernels/.{'ab' * 16}.{dead}"]
        assert "which is gone" in rep["removed"][0]["why"]
        assert (cache / "kernels" / f".{'ab' * 16}.{live.pid}").exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("args,says", [
    (["--max-size", "lots"], ("--max-size must be a size such as 50G, 500M, 1.5T or a number "
                              "of bytes, not \"lots\"")),
    (["--max-age", "30"], ("--max-age must be an age such as 30d, 12h, 2w (s, m, h, d, w), "
                           "not \"30\"")),
    (["--keep-nights", "0"], "--keep-nights must be a positive whole number, not 0"),
    (["--max-size"], "expected one argument"),
])
def test_bad_values_are_one_line_exit_2(env, tmp_path, args, says):
    r = cache_cmd(env, tmp_path, "gc", *args)
    assert r.returncode == 2, r.stderr
    assert says in one_error_line(r.stderr)
    assert not (tmp_path / "cache").exists()


def test_a_cache_that_is_not_a_directory_is_one_line_exit_2(env, tmp_path):
    (tmp_path / "file").write_text("x")
    for action in ("du", "gc"):
        r = cache_cmd(env, tmp_path, action, "--cache", str(tmp_path / "file"))
        assert r.returncode == 2, r.stderr
        assert one_error_line(r.stderr) == f"orch: error: --cache {tmp_path / 'file'}: " \
            "not a directory"


def test_the_config_file_sets_the_defaults(env, tmp_path, filled):
    _cache, ages = filled
    conf = tmp_path / "config.toml"
    conf.write_text('cache_max_size = "1T"\ncache_max_age = "50d"\nkeep_nights = 3\n')
    env = {**env, "ORCH_CONFIG": str(conf)}
    r = orch(env, tmp_path, "test", "--print-config")
    assert r.returncode == 0, r.stderr
    assert 'cache_max_size = "1T"' in r.stdout and f"# {conf}" in r.stdout
    assert 'cache_max_age = "50d"' in r.stdout and "keep_nights = 3" in r.stdout
    rep = gc_json(env, tmp_path)
    assert (rep["max_size"], rep["max_age"], rep["keep_nights"]) == (1 << 40, 50 * DAY, 3)
    assert sorted(removed(rep)) == sorted(n for n in ages if ages[n] > 50 * DAY)
    # A flag wins over the file.
    rep = gc_json(env, tmp_path, "--max-age", "40d")
    assert sorted(removed(rep)) == sorted(n for n in ages if 40 * DAY < ages[n] <= 50 * DAY)
    conf.write_text('cache_max_size = "huge"\n')
    r = cache_cmd(env, tmp_path, "gc")
    assert r.returncode == 2
    assert f"{conf}: cache_max_size must be a size such as 50G" in one_error_line(r.stderr)


def test_without_an_age_or_over_the_cap_nothing_is_said_removed(env, tmp_path, filled):
    _cache, ages = filled
    r = cache_cmd(env, tmp_path, "gc", "--max-age", "1000d", "--max-size", "1T")
    assert r.returncode == 0, r.stderr
    assert f"kept    {len(ages)} more entries" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("freed 0: the cache ")
    assert kept(gc_json(env, tmp_path, "--max-age", "1000d", "--max-size", "1T")) == {}


def test_a_check_record_is_used_while_it_runs_and_trimmed_after(env, tmp_path, mini):
    r = orch(env, mini, "check", "--build", "--config", "base")
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    (name,) = entries(cache)["checks"]
    assert (cache / "locks" / "checks" / name).is_file()       # used: its last use stamped
    r = cache_cmd(env, tmp_path, "du", "--json")
    assert json.loads(r.stdout)["kinds"]["checks"]["entries"] == 1
    stamp(cache, "checks", name, 40 * DAY)
    rep = gc_json(env, tmp_path, "--max-age", "30d", "--max-size", "1T")
    assert f"checks/{name}" in removed(rep)
    assert entries(cache)["checks"] == []


def test_cache_without_an_action_is_one_line_exit_2(env, tmp_path):
    r = cache_cmd(env, tmp_path)
    assert r.returncode == 2
    assert "the following arguments are required: ACTION" in one_error_line(r.stderr)
