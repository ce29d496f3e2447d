"""--cpus N and --memory SIZE: the guest's machine (issue 28). Refused in one
line when out of range, handed to vng, recorded, part of the kept results'
key only when not the default (so every key kept before the flags still
answers), carried by the command lines orch prints and by a bisect's steps.
Real `orch` subprocesses on the stand-in tree (tests/standin_guest.py)."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TESTS_DIR, one_error_line, orch, run_json, series

from orchestrator import __version__
from orchestrator.core.models import Kernel
from orchestrator.guest import result_cache, vm
from orchestrator.run import boots, options
from orchestrator.run.options import Options

# -- refused in one line ---------------------------------------------------------------

BAD = [("--cpus", "0"), ("--cpus", "65"), ("--cpus", "-1"), ("--cpus", "two"),
       ("--cpus", "1.5"), ("--memory", "255M"), ("--memory", "0G"), ("--memory", "2g"),
       ("--memory", "2048"), ("--memory", "1.5G"), ("--memory", "02G"), ("--memory", "2T")]


@pytest.mark.parametrize("command,status", [("test", 2), ("bisect", 2), ("check", 128)])
@pytest.mark.parametrize("flag,value", BAD)
def test_a_bad_machine_is_one_line_and_its_status(env, tmp_path, command, status, flag,
                                                  value):
    r = orch(env, tmp_path, command, f"{flag}={value}")
    assert r.returncode == status, r.stderr
    line = one_error_line(r.stderr)
    assert f"argument {flag}: '{value}'" in line, line


@pytest.mark.parametrize("given,normal", [("2048M", "2G"), ("256M", "256M"), ("1G", "1G"),
                                          ("1536M", "1536M"), ("64G", "64G")])
def test_a_size_is_written_one_way(given, normal):
    from orchestrator.commands import common
    assert common.memory_size(given) == normal


@pytest.mark.parametrize("command", ["test", "bisect", "check"])
def test_help_shows_the_defaults(env, tmp_path, command):
    r = orch(env, tmp_path, command, "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert f"--cpus N the guest's vCPUs, 1..64 (default: {vm.CPUS})" in text
    assert f"(default: {vm.MEMORY})" in text.split("--memory SIZE", 2)[2]


# -- the results key -------------------------------------------------------------------

def _kernel(tmp_path: Path) -> Kernel:
    image = tmp_path / "bzImage"
    image.write_bytes(b"a kernel")
    return Kernel("base", image, tmp_path / ".config", False, 1.0, None)


def test_the_default_machine_keeps_every_earlier_key(tmp_path):
    """The key as orch computed it before --cpus/--memory, from the fixed
    2 vCPUs and 2G: the CI's kept baseline results must still answer."""
    k = _kernel(tmp_path)
    image = result_cache.image_digest(k.image)
    tests = ["guest_tests/test_dontcache.py"]
    before = [__version__, image, tests, result_cache.suite_digest(tuple(tests)), 300, "tcg",
              1, 2, "2G", ["null_blk.nr_devices=0"], 256, "guest view 3"]
    golden = hashlib.sha256(json.dumps(before).encode()).hexdigest()[:32]
    assert boots.results_key(k, boots.BootSettings(tests, test_timeout=300)) == golden
    opts = Options(guest_tests=tests, test_timeout=300)
    assert boots.results_key(k, options.boot_settings(opts, [])) == golden


def test_another_machine_is_another_key(tmp_path):
    k = _kernel(tmp_path)
    keys = {boots.results_key(k, options.boot_settings(Options(cpus=c, memory=m), []))
            for c, m in [(2, "2G"), (4, "2G"), (2, "4G"), (4, "4G"), (1, "512M")]}
    assert len(keys) == 5


# -- handed to vng ---------------------------------------------------------------------

def test_vng_is_given_the_machine(tmp_path, monkeypatch):
    """The real run_tests, unconfined, with a vng that writes down its
    command line: the boot asks QEMU for the machine."""
    said = tmp_path / "vng-argv"
    fake = tmp_path / "vng"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(vm, "vng_command", lambda: [str(fake)])
    monkeypatch.setattr(vm, "probe_kvm", lambda image=None: (False, "no KVM here"))
    k = _kernel(tmp_path)
    for cpus, memory in [(4, "1G"), (vm.CPUS, vm.MEMORY)]:
        s = boots.BootSettings(["guest_tests/test_dontcache.py"], confined=False, cpus=cpus,
                               memory=memory)
        boots.boot(boots.BootJob(k, tmp_path / "results", tmp_path / "console.log",
                                 "baseline", reuse=False), s, 60)
        argv = said.read_text().splitlines()
        i = argv.index("--cpus")
        assert argv[i:i + 4] == ["--cpus", str(cpus), "--memory", memory]


# -- orch test: recorded, kept, booted again for another machine -----------------------

# The stand-in guest, which writes down the machine each boot was asked for.
SCRIPT = """\
import json, sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
standin_guest.install_globally()
from orchestrator.guest import vm
standin = vm.run_tests

def run_tests(kernel, results, console, **kw):
    with open({log!r}, "a") as f:
        f.write(json.dumps([kw.get("cpus"), kw.get("memory")]) + "\\n")
    return standin(kernel, results, console, **kw)

vm.run_tests = run_tests
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def world(tmp_path, mini, env):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_one.py").write_text("def test_one():\n    pass\n")
    mbox = series(mini, tmp_path, "ok", [("mini: main returns 1", {
        "main.c": "int mini_main(void)\n{\n\treturn 1;\n}\n"})])
    script = tmp_path / "orch_machine.py"
    log = tmp_path / "machines"
    script.write_text(SCRIPT.format(tests=str(TESTS_DIR), repo=str(REPO), log=str(log)))
    return {"tmp": tmp_path, "mini": mini, "env": env, "test": suite / "test_one.py",
            "mbox": mbox, "script": script, "log": log}


def _orch_test(w, name: str, *flags: str):
    """`orch test` of the series on the stand-in: its result, its run
    directory and the (cpus, memory) each boot was asked for."""
    rd = w["tmp"] / name
    r = subprocess.run([sys.executable, str(w["script"]), "test", "--offline-mode", "--mbox",
                        str(w["mbox"]), "--tree", str(w["mini"]), "--config", "base",
                        "--guest-test", str(w["test"]), "--run-dir", str(rd), *flags],
                       cwd=w["tmp"], env=w["env"], capture_output=True, text=True, timeout=600,
                       check=False)
    seen = w["log"].read_text().splitlines() if w["log"].exists() else []
    w["log"].unlink(missing_ok=True)
    return r, rd, [tuple(json.loads(s)) for s in seen]


def _cached(rd: Path) -> list[bool]:
    (cfg,) = run_json(rd)["configs"]
    return [bool(cfg[side]["boot"].get("cached")) for side in ("baseline", "patched")]


def test_a_run_boots_its_machine_keeps_it_and_says_it(world):
    r, rd, booted = _orch_test(world, "r1", "--cpus", "4", "--memory", "1024M")
    assert r.returncode == 0, r.stderr
    assert booted == [(4, "1G"), (4, "1G")]
    rec = run_json(rd)
    assert (rec["cpus"], rec["memory"]) == (4, "1G")
    assert rec["command"][-4:] == ["--cpus", "4", "--memory", "1024M"]
    # The same machine again (another spelling of it): nothing boots.
    r, rd, booted = _orch_test(world, "r2", "--cpus", "4", "--memory", "1G")
    assert r.returncode == 0, r.stderr
    assert booted == [] and _cached(rd) == [True, True]
    # Another machine boots both kernels again; so does the default one.
    for name, flags, machine in [("r3", ["--cpus", "3", "--memory", "1G"], (3, "1G")),
                                 ("r4", ["--cpus", "4", "--memory", "2G"], (4, "2G")),
                                 ("r5", [], (2, "2G"))]:
        r, rd, booted = _orch_test(world, name, *flags)
        assert r.returncode == 0, r.stderr
        assert booted == [machine, machine] and _cached(rd) == [False, False], name
    # A default run's record is as every record before the flags.
    rec = run_json(rd)
    assert "cpus" not in rec and "memory" not in rec


def test_a_check_boots_its_machine_and_records_it(world):
    """orch check (a bisect's step): the step boots with the machine, and
    the record keeps it, where a bisect's --resume takes it from (its step's
    reproduce line: test_reproduce.py)."""
    rd = world["tmp"] / "check"
    argv = [sys.executable, str(world["script"]), "check", "--tree", str(world["mini"]),
            "--config", "base", "--guest-test", str(world["test"]), "--run-dir", str(rd),
            "--cpus", "1", "--memory", "512M"]
    r = subprocess.run(argv, cwd=world["tmp"], env=world["env"], capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert world["log"].read_text().splitlines() == ['[1, "512M"]']
    rec = run_json(rd)
    assert (rec["cpus"], rec["memory"]) == (1, "512M")
    assert (rec["bisect"]["cpus"], rec["bisect"]["memory"]) == (1, "512M")


@pytest.mark.parametrize("argv,status,why", [
    (["test", "--build-only", "--mbox", "x.mbox", "--cpus", "4"], 2, "--build-only boots nothing"),
    (["test", "--build-only", "--mbox", "x.mbox", "--memory", "4G"], 2,
     "--build-only boots nothing"),
    (["bisect", "--build", "--good", "a", "--bad", "b", "--cpus", "4"], 2,
     "--build only builds each commit"),
    (["check", "--build", "--memory", "4G"], 128, "--build only builds each commit"),
    (["bisect", "--resume", ".", "--cpus", "4"], 2, "cannot change it"),
])
def test_a_machine_that_would_be_ignored_is_refused(env, tmp_path, argv, status, why):
    (tmp_path / "x.mbox").write_text("")
    r = orch(env, tmp_path, *argv)
    assert r.returncode == status, r.stderr
    line = one_error_line(r.stderr)
    assert "unrecognized" not in line, line
    assert argv[-2] in line and why in line, line


@pytest.mark.parametrize("machine,back", [((4, "1G"), (4, "1G")), ((None, None), (2, "2G"))])
def test_a_resumed_bisect_boots_the_machine_it_was_started_with(tmp_path, machine, back):
    from orchestrator.bisect import search
    from orchestrator.run import record
    rec = record.RunRecord("0", ["orch", "bisect"], str(tmp_path), record.now())
    rec.bisect = record.BisectRecord(mode="test", terms=["good", "bad"], good="a", bad="b",
                                     config="base", tests=["guest_tests/a.py"], repeat=1,
                                     commits=4, max_steps=3, cpus=machine[0],
                                     memory=machine[1])
    rec.write(tmp_path / "run.json")
    opts = search.Options(resume=tmp_path, cpus=8, memory="8G")
    search._resumable(opts)
    assert (opts.cpus, opts.memory) == back
