"""The nightly and targets: NIGHTLY.toml's per-series `expect_fixed`, and a
night's reports taking a cell's verdict when it has only known failures.

Two nights of two tracked series on the stand-in tree, against the loopback
lore; the guest is the stand-in (tests/standin_guest.py). On night 2 the
tree compiles `ORCH-GUEST:FAIL` in, so the IRQ test fails on the baseline
and on every patched kernel, as the DONTCACHE tests do on 7.2.13:

  "mini: feature" says `expect_fixed = [IRQ_TEST]`: a FAIL, a regression;
  "mini: counter" (nothing declared; it touches no path guest_tests/about.toml
    names) is a PASS with a known failure: no "new-failure" regression, and
    its JUnit testcase a skip, not a failure.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest
import standin_guest
from helpers import IRQ_TEST, git, series
from lore_mails import day, post
from lore_server import LoreServer

from orchestrator.core.errors import BadInput
from orchestrator.fanout import nightly_run as nightly
from orchestrator.nightly import config_file


def guest(what: str) -> str:
    return f'const char orch_guest_{what.lower()}[] = "ORCH-GUEST:{what}";\n'


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
    feat = series(mini, tmp_path, "feat", [("mini: feature", {"feature.c": "int f(void) "
                                                              "{ return 2; }\n"})])
    ctr = series(mini, tmp_path, "ctr", [("mini: counter", {"counter.c": "int c(void) "
                                                            "{ return 1; }\n"})])
    ids = {"feat": post(feat, lore / "feature.mbox", name="feature", title="mini: feature",
                        version=1, change_id="20261126-feat", base=base,
                        date=day("2026-11-26")),
           "ctr": post(ctr, lore / "counter.mbox", name="counter", title="mini: counter",
                       version=1, change_id="20261126-ctr", base=base, date=day("2026-11-26"))}
    with LoreServer(lore) as srv:
        toml = tmp_path / "nightly.toml"
        toml.write_text(f'lore_url = "{srv.url}"\nconfigs = ["base"]\n'
                        f'guest_tests = ["{IRQ_TEST}"]\n'
                        f'[[series]]\nmsgid = "<{ids["feat"]}>"\n'
                        f'expect_fixed = ["{IRQ_TEST}"]\n'
                        f'[[series]]\nmsgid = "<{ids["ctr"]}>"\n'
                        f'[[tree]]\npath = "{clone}"\nref = "origin/main"\nlabel = "mini"\n')
        yield {"srv": srv, "mini": mini, "toml": toml, "out": tmp_path / "out"}


def _night(world, date: str) -> tuple[int, dict]:
    world["srv"].archive.now = day(date)
    code = nightly.run_night(config_file.load(world["toml"]), world["out"], date)
    return code, json.loads((world["out"] / "nights" / date / "night.json").read_text())


def _run_json(world, date: str, cell: dict) -> dict:
    return json.loads((world["out"] / "nights" / date / cell["run_dir"] / "run.json")
                      .read_text())


def test_expect_fixed_per_series_and_a_known_failure_is_no_regression(world):
    code, n1 = _night(world, "2026-11-27")
    assert code == 0, n1["changes"]
    assert [c["status"] for c in n1["cells"]] == ["PASS", "PASS"]
    # The plan carries each series' expect_fixed (a CI job has only the plan).
    feat, ctr = n1["plan"]["series"]
    assert feat["expect_fixed"] == [IRQ_TEST] and "expect_fixed" not in ctr

    # Night 2: the tree fails the IRQ test on its own.
    (world["mini"] / "known.c").write_text(guest("FAIL"))
    git(world["mini"], "add", "-A")
    git(world["mini"], "commit", "-q", "-m", "mini: the IRQ test fails on the tree itself")
    code, n2 = _night(world, "2026-11-28")
    assert code == 1, n2["changes"]
    cells = {c["series"]: c for c in n2["cells"]}
    f, c = cells["change-id:20261126-feat"], cells["change-id:20261126-ctr"]
    assert (f["status"], c["status"]) == ("FAIL", "PASS")
    rf, rc = _run_json(world, "2026-11-28", f), _run_json(world, "2026-11-28", c)
    assert rf["targets"] == {"rule": "expect-fixed", "tests": [IRQ_TEST],
                             "patterns": [IRQ_TEST]}
    assert rf["configs"][0]["problems"]["failures"] == [f"config base: {IRQ_TEST} still failing"]
    assert rc["targets"]["rule"] == "touched" and rc["targets"]["tests"] == []
    assert rc["targets"]["touched"] == ["counter.c"]
    assert rc["configs"][0]["problems"]["known"] == [f"config base: {IRQ_TEST} still failing"]
    # The changes: the feature's target newly fails (a regression); the
    # counter's known failure is said, and is none.
    kinds = {(ch["series"], ch["kind"], ch["regression"]) for ch in n2["changes"]}
    assert ("change-id:20261126-feat", "new-failure", True) in kinds
    assert ("change-id:20261126-ctr", "known-failure", False) in kinds
    assert not any(ch["regression"] for ch in n2["changes"]
                   if ch["series"] == "change-id:20261126-ctr")
    # The night's JUnit counts the known failure as pytest counts an xfail.
    ndir = world["out"] / "nights" / "2026-11-28"
    suites = {s.find("properties/property[@name='series']").get("value"): s
              for s in ET.parse(ndir / "junit.xml").getroot()}
    ctr_case = suites["change-id:20261126-ctr"].find("testcase")
    assert ctr_case.find("failure") is None
    assert ctr_case.find("skipped").get("message").startswith("known failure")
    assert suites["change-id:20261126-feat"].find("testcase/failure") is not None
    summary = (ndir / "summary.txt").read_text()
    assert "REGRESSION" in summary and "known-failure" in summary


def test_a_new_series_with_only_known_failures_is_a_new_series_that_passes(world, tmp_path):
    (world["mini"] / "known.c").write_text(guest("FAIL"))
    git(world["mini"], "add", "-A")
    git(world["mini"], "commit", "-q", "-m", "mini: the IRQ test fails on the tree itself")
    toml = world["toml"]
    toml.write_text(toml.read_text().replace(f'expect_fixed = ["{IRQ_TEST}"]\n', ""))
    code, n = _night(world, "2026-11-27")
    assert code == 0, n["changes"]
    assert [c["status"] for c in n["cells"]] == ["PASS", "PASS"]
    assert sorted((ch["kind"], ch["regression"]) for ch in n["changes"]) == [
        ("new-series", False), ("new-series", False)]


@pytest.mark.parametrize("value,why", [
    ('["guest_tests/test_no_such.py"]', "series[0].expect_fixed: guest_tests/test_no_such.py: "
                                        "matches none of the 1 selected guest tests"),
    ('["none", "guest_tests/"]', "series[0].expect_fixed: none means no test is expected"),
    ('[]', "series[0].expect_fixed: must be a non-empty array"),
    ('"guest_tests/"', "series[0].expect_fixed: must be a non-empty array"),
])
def test_nightly_toml_expect_fixed_is_checked_when_the_file_is_read(tmp_path, value, why):
    toml = tmp_path / "n.toml"
    toml.write_text(f'guest_tests = ["{IRQ_TEST}"]\n[[series]]\nmsgid = "<a@b>"\n'
                    f"expect_fixed = {value}\n")
    with pytest.raises(BadInput) as e:
        config_file.load(toml)
    assert str(e.value).startswith(f"{toml}: {why}")
    toml.write_text('[[series]]\nmsgid = "<a@b>"\nexpect_fixed = ["none"]\n')
    assert config_file.load(toml).expect_fixed == {"a@b": ["none"]}
