"""orch nightly on the real kernel (TCG here): one night, two series on the
default tree (Debian's 7.2.13 import), config base, the short selection.

The two series are the RFC v3 port and the marks-cached-folios mutant,
posted on the loopback lore as a v3 and a v1 with change-ids. Their kernels
are the ones test_kernel_e2e.py and test_mutants_e2e.py build, so what is new
here is the night's three boots: the baseline once (a nightly never takes it
from an earlier run: it watches the environment too) and each series' patched
kernel once. The second series costs only its own build and one boot; a rerun
of the same night builds and boots nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import CACHED_TEST, PATCHES, PORT, REPO, SHORT_SELECTION, run_json
from lore_mails import day, post
from lore_server import LoreServer

from orchestrator.source import debsrc

pytestmark = pytest.mark.slow


def _nightly(tmp_path, toml, out, night):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "nightly", str(toml),
                           "--out", str(out), "--night", night], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=3600)


def test_one_night_two_series_shares_the_baseline_and_a_rerun_does_nothing(tmp_path):
    tree = debsrc.import_tree()
    head = subprocess.run(["git", "-C", str(tree.path), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lore = tmp_path / "lore"
    lore.mkdir()
    port = post(PORT, lore / "port.mbox", name="port", title="block: enable RWF_DONTCACHE "
                "for block devices (7.2.13 port)", version=3, change_id="20261127-orch-port",
                base=head, date=day("2026-11-27"))
    mutant = post(PATCHES / "mutant-marks-cached-folios.mbox", lore / "mutant.mbox",
                  name="mutant", title="mm: DONTCACHE lookups mark cached folios (mutant)",
                  version=1, change_id="20261127-orch-mutant", base=head,
                  date=day("2026-11-27"))
    out = tmp_path / "out"
    with LoreServer(lore) as srv:
        toml = tmp_path / "nightly.toml"
        toml.write_text(f'lore_url = "{srv.url}/all"\nconfigs = ["base"]\n'
                        f"guest_tests = {json.dumps(SHORT_SELECTION)}\n"
                        f'[[series]]\nmsgid = "<{port}>"\n[[series]]\nmsgid = "<{mutant}>"\n'
                        f'[[tree]]\npath = "{tree.path}"\nref = "HEAD"\nlabel = "debian-7.2.13"\n')
        r = _nightly(tmp_path, toml, out, "2026-11-28")
        # The mutant is a new series that fails: status 1, and it says so.
        assert r.returncode == 1, r.stderr[-3000:]
        ndir = out / "nights" / "2026-11-28"
        n = json.loads((ndir / "night.json").read_text())
        assert n["state"] == "done" and n["exit_code"] == 1
        cells = {c["series"]: c for c in n["cells"]}
        first, second = (cells["change-id:20261127-orch-port"],
                         cells["change-id:20261127-orch-mutant"])
        assert first["status"] == "PASS", first
        assert second["status"] == "FAIL", second
        failed = {t["name"]: t["patched"] for t in second["tests"]}
        assert failed[CACHED_TEST] == "FAIL", failed
        assert any(c["kind"] == "new-series-failing" and c["regression"] and
                   "--on" in c["reproduce"] for c in n["changes"]), n["changes"]
        # One baseline boot for the night, by the first cell; the second
        # reuses it, and each series boots its own kernel once.
        assert first["booted"] == {"baseline": True, "patched": True}, first
        assert second["booted"] == {"baseline": False, "patched": True}, second
        # The second series' cost: no baseline build, and an incremental
        # build of its own (kept, or a handful of objects: never a full one).
        rec = run_json(ndir / second["run_dir"])
        (cfg,) = rec["configs"]
        assert cfg["baseline"]["build"]["cached"] is True
        assert cfg["patched"]["build"]["cached"] or cfg["patched"]["build"]["compiled"] < 100
        for f in ("index.html", "junit.xml", "kcidb.json", "summary.txt"):
            assert (ndir / f).stat().st_size > 0, f
        assert "new series" in r.stdout and "--on" in r.stdout

        # A rerun of the same night follows the plan and runs nothing.
        stamps = {c["run_dir"]: (ndir / c["run_dir"] / "run.json").stat().st_mtime_ns
                  for c in n["cells"]}
        before = len(srv.requests)
        r2 = _nightly(tmp_path, toml, out, "2026-11-28")
        assert r2.returncode == 1, r2.stderr[-3000:]
        assert "following its stored plan" in r2.stderr
        assert len(srv.requests) == before          # no discovery: lore not asked
        assert {d: (ndir / d / "run.json").stat().st_mtime_ns for d in stamps} == stamps
        n2 = json.loads((ndir / "night.json").read_text())
        assert [c["status"] for c in n2["cells"]] == [c["status"] for c in n["cells"]]


def test_a_debian_tree_is_its_newest_version_and_a_bump_is_reported(tmp_path):
    """The Debian tree of a NIGHTLY.toml: the highest version the suites
    offer (dpkg's order, asked of the archive with apt), imported once (the
    suite's import when it is that version), and "moved" from the version
    the history last tested."""
    from orchestrator.core.progress import Progress
    from orchestrator.nightly import config_file, discover, history, planner
    from orchestrator.nightly.night import Night, Plan, TreeState
    newest = discover.newest_debian_version(debsrc.DEFAULT_PACKAGE, debsrc.DEFAULT_SUITES)
    imported = debsrc.import_tree()
    toml = tmp_path / "nightly.toml"
    toml.write_text('[[series]]\nmsgid = "x@y"\n[[tree]]\ndebian_source = "linux-source-7.2"\n')
    cfg = config_file.load(toml)
    cfg.series = []          # plan the tree alone
    h = history.History(tmp_path / "h.sqlite")
    old = TreeState("debian:linux-source-7.2", "debian", "/old", "0" * 40, "7.2.9-1~bpo13+1")
    h.record_night(Night("2026-11-27", "s", Plan("2026-11-27", "u", ["base"], [], [old])))
    plan = planner.make(cfg, "2026-11-28", h, tmp_path / "night", Progress())
    (t,) = plan.trees
    assert t.version == newest and t.moved_from == "7.2.9-1~bpo13+1", t
    if newest == imported.version:
        assert t.path == str(imported.path)      # imported once: the suite's own import
    assert len(t.commit) == 40 and plan.problems == []
