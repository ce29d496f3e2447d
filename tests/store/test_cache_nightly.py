"""The nightly and the cache: each night pins what its last N nights used
(cache/pins/), gc keeps those and drops pins whose --out is gone, and a
night that ends over the cap runs gc itself, after its reports, without
changing its exit status. Real nights on the stand-in tree against a
loopback lore (as tests/nightly/test_nightly.py runs them), three of them,
the tree moving between nights so each builds kernels of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import standin_guest
from cache_world import entries, gc_json, kept, removed
from helpers import IRQ_TEST, REPO, git, series
from lore_mails import day, post
from lore_server import LoreServer

from orchestrator.core import cache_use
from orchestrator.fanout import nightly_run
from orchestrator.nightly import config_file
from orchestrator.run import settings
from orchestrator.store import gc, pins

NIGHTS = ("2026-11-27", "2026-11-28", "2026-11-29")


@pytest.fixture
def world(tmp_path, mini, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    standin_guest.install(monkeypatch)
    clone = tmp_path / "linux"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    base = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    lore = tmp_path / "lore"
    lore.mkdir()
    mbox = series(mini, tmp_path, "feat", [("mini: feature", {"feature.c": "int f(void) "
                                                              "{ return 2; }\n"})])
    mid = post(mbox, lore / "feature.mbox", name="feature", title="mini: feature", version=1,
               change_id="20261126-mini-feature-0a1b2c", base=base, date=day("2026-11-26"))
    with LoreServer(lore) as srv:
        toml = tmp_path / "nightly.toml"
        toml.write_text(f'lore_url = "{srv.url}/all"\nconfigs = ["base"]\n'
                        f'guest_tests = ["{IRQ_TEST}"]\n[[series]]\nmsgid = "<{mid}>"\n'
                        f'[[tree]]\npath = "{clone}"\nref = "origin/main"\nlabel = "mini"\n')
        yield {"srv": srv, "mini": mini, "toml": toml, "out": tmp_path / "out",
               "cache": tmp_path / "cache"}
    cache_use.release_all()


def machine(tmp_path, monkeypatch, text: str) -> settings.Settings:
    conf = tmp_path / "config.toml"
    conf.write_text(text)
    monkeypatch.setenv("ORCH_CONFIG", str(conf))
    return settings.resolve({})


def night(world, date: str, s: settings.Settings) -> tuple[int, dict]:
    world["srv"].archive.now = day(date)
    cfg = config_file.load(world["toml"], base=s)
    code = nightly_run.run_night(cfg, world["out"], date, machine=s)
    return code, json.loads((world["out"] / "nights" / date / "night.json").read_text())


def move_tree(world, n: int) -> None:
    (world["mini"] / "moved.c").write_text(f"int moved(void) {{ return {n}; }}\n")
    git(world["mini"], "add", "-A")
    git(world["mini"], "commit", "-q", "-m", f"mini: move {n}")


def kernels_of(ndir) -> set[str]:
    out = set()
    for cell in json.loads((ndir / "night.json").read_text())["cells"]:
        rec = json.loads((ndir / cell["run_dir"] / "run.json").read_text())
        for cfg in rec["configs"]:
            out |= {cfg[s]["build"]["key"] for s in ("baseline", "patched")}
    return out


def test_the_last_nights_kernels_are_pinned_and_the_rest_may_go(world, tmp_path, monkeypatch):
    s = machine(tmp_path, monkeypatch, 'keep_nights = 2\ncache_max_size = "1T"\n')
    ks = {}
    for i, date in enumerate(NIGHTS):
        if i:
            move_tree(world, i)
        code, n = night(world, date, s)
        assert code == 0, n["changes"]
        ks[date] = kernels_of(world["out"] / "nights" / date)
    assert all(len(k) == 2 for k in ks.values()) and not ks[NIGHTS[0]] & ks[NIGHTS[2]]
    cache, out = world["cache"], world["out"]
    pin = json.loads(pins.pin_path(out.resolve(), cache).read_text())
    assert pin["out"] == str(out.resolve())
    assert sorted(pin["nights"]) == list(NIGHTS[1:])               # keep_nights = 2
    assert set(pin["nights"][NIGHTS[2]]["kernels"]) == ks[NIGHTS[2]]
    assert pin["nights"][NIGHTS[2]]["results"]      # the boots' kept results, from the use()s

    cache_use.release_all()          # the nights are over (they ran in this process)
    env = {**os.environ, "ORCH_CACHE": str(cache), "ORCH_CONFIG": os.devnull,
           "PYTHONPATH": str(REPO)}
    rep = gc_json(env, tmp_path, "--max-size", "0", "--keep-nights", "2")
    why = kept(rep)
    for date in NIGHTS[1:]:
        for k in ks[date]:
            assert why[f"kernels/{k}"].startswith(f"pinned by the nightly at {out.resolve()} "
                                                  "(night "), why
    assert {f"kernels/{k}" for k in ks[NIGHTS[0]]} - {f"kernels/{k}" for k in ks[NIGHTS[1]]} \
        <= set(removed(rep))
    assert any(n.startswith("results/") and "pinned" in w for n, w in why.items())
    assert set(entries(cache)["kernels"]) == ks[NIGHTS[1]] | ks[NIGHTS[2]]

    # One night kept: the night before goes; then --out itself goes: the pin is stale.
    rep = gc_json(env, tmp_path, "--max-size", "0", "--keep-nights", "1")
    assert set(entries(cache)["kernels"]) == ks[NIGHTS[2]]
    shutil.rmtree(out)
    rep = gc_json(env, tmp_path, "--max-size", "0")
    assert rep["pins_dropped"] == [(f"pin {pins.pin_path(out.resolve(), cache).name}: "
                                    f"{out.resolve()} no longer holds its nights")]
    assert entries(cache)["kernels"] == [] and os.listdir(cache / "pins") == []


def test_a_night_over_the_cap_runs_gc_after_its_reports(world, tmp_path, monkeypatch, capsys):
    s = machine(tmp_path, monkeypatch, 'cache_max_size = "1"\ncache_max_age = "30d"\n')
    cache = world["cache"]
    stale = cache / "kernels" / ("e" * 32)
    stale.mkdir(parents=True)
    (stale / "bzImage").write_bytes(b"x" * 50000)
    code, n = night(world, NIGHTS[0], s)
    assert code == 0, n["changes"]
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if l.startswith("orch: cache over its cap"))
    assert "> 1): gc removed" in line and "; freed " in line
    assert not stale.exists()
    ndir = world["out"] / "nights" / NIGHTS[0]
    assert (ndir / "summary.txt").exists() and (ndir / "junit.xml").exists()
    # Tonight's kernels and kept results are pinned: still there.
    assert set(entries(cache)["kernels"]) == kernels_of(ndir)
    assert entries(cache)["results"]


def test_a_failing_gc_is_a_warning_and_the_night_keeps_its_status(world, tmp_path,
                                                                   monkeypatch, capsys):
    s = machine(tmp_path, monkeypatch, 'cache_max_size = "1"\n')

    def broken(*a, **kw):
        raise RuntimeError("the disk caught fire")
    monkeypatch.setattr(gc, "run", broken)
    code, n = night(world, NIGHTS[0], s)
    assert code == 0 and n["exit_code"] == 0
    err = capsys.readouterr().err
    assert "orch: warning: the cache's gc after the night failed: RuntimeError: the disk " \
        "caught fire" in err
    assert pins.pin_path(world["out"].resolve(), world["cache"]).exists()
