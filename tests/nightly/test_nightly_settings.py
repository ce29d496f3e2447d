"""`orch nightly` reads the machine's config.toml as `orch test` does, under
NIGHTLY.toml's own keys: a real `orch nightly` subprocess on the stand-in
tree (test_nightly's world) against the loopback lore, whose stand-in guest
notes the limits each boot was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TESTS_DIR
from lore_mails import day
from test_nightly import world  # noqa: F401 (the fixture)

NIGHT = "2026-11-27"

# `orch` with the stand-in guest (standin_guest.py), each boot's limits
# appended to $ORCH_TEST_BOOTS as one JSON line.
RECORDING = """\
import json, os, sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
from orchestrator.guest import vm
standin_guest.install_globally()

def run_tests(kernel, results, console, **kw):
    with open(os.environ["ORCH_TEST_BOOTS"], "a") as f:
        f.write(json.dumps({{"key": kernel.key, "timeout": kw["timeout"],
                            "test_timeout": kw["test_timeout"]}}) + "\\n")
    return standin_guest.run_tests(kernel, results, console, **kw)

vm.run_tests = run_tests
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def orch_recording(tmp_path: Path, config: str, *args) -> tuple[subprocess.CompletedProcess,
                                                                 list[dict], Path]:
    """`orch ARGS` with a config.toml holding `config` (ORCH_CONFIG) and no
    ORCH_CACHE: (the process, each boot's limits, the XDG cache orch would
    use without one)."""
    script = tmp_path / "orch_recording.py"
    script.write_text(RECORDING.format(tests=str(TESTS_DIR), repo=str(REPO)))
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    boots = tmp_path / "boots.jsonl"
    boots.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "ORCH_CACHE"}
    env.update(ORCH_CONFIG=str(cfg), ORCH_TEST_BOOTS=str(boots), PYTHONPATH=str(REPO),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    r = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    seen = [json.loads(line) for line in boots.read_text().splitlines()] if boots.exists() \
        else []
    return r, seen, tmp_path / "xdg-cache" / "orch"


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


@pytest.mark.parametrize("night_says", [None, 99])
def test_a_nightly_takes_config_toml_under_its_own_timeouts(world, tmp_path, night_says):
    """config.toml's cache and timeouts, unless NIGHTLY.toml sets its own."""
    world["srv"].archive.now = day(NIGHT)
    toml = world["toml"]
    if night_says:
        toml.write_text(f"test_timeout = {night_says}\n" + toml.read_text())
    test_timeout = night_says or 77
    cache = tmp_path / "cfg-cache"
    r, seen, xdg = orch_recording(
        tmp_path, f'cache = "{cache}"\nguest_timeout = 1234\ntest_timeout = 77\n',
        "nightly", toml, "--out", tmp_path / "out", "--night", NIGHT)
    assert r.returncode in (0, 1), r.stderr
    ndir = tmp_path / "out" / "nights" / NIGHT
    night = json.loads((ndir / "night.json").read_text())
    assert [c["status"] for c in night["cells"]] == ["FAIL", "PASS"], night["cells"]
    # Every boot: config.toml's guest timeout, NIGHTLY.toml's test timeout.
    assert len(seen) == 3
    assert {(b["timeout"], b["test_timeout"]) for b in seen} == {(1234, test_timeout)}
    # config.toml's cache, not the one orch uses without it.
    assert {p.name for p in (cache / "kernels").iterdir()} == {b["key"] for b in seen}
    assert not (xdg / "kernels").exists()
    for c in night["cells"]:
        rec = json.loads((ndir / c["run_dir"] / "run.json").read_text())
        assert rec["configs"][0]["patched"]["build"]["image"].startswith(str(cache))
        assert (_flag(rec["command"], "--guest-timeout"),
                _flag(rec["command"], "--test-timeout")) == ("1234", str(test_timeout))
    # The plan keeps what the night's file said (only that), for the machines
    # that run its cells.
    plan = json.loads((ndir / "plan.json").read_text())
    assert (plan.get("test_timeout"), plan.get("guest_timeout")) == (night_says, None)
