"""The CI examples orch ships in examples/: each validated by the tool its
platform's own schema or verifier comes in (check-jsonschema's bundled
GitHub Actions and GitLab CI schemas, offline; systemd-analyze verify), each
validation shown to fail on a broken copy, and the settings the docs promise
(schedule only, artifacts even on failure, the history cached) checked by
reading the files."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from orchestrator import cli
from orchestrator.nightly import config_file

REPO = Path(__file__).resolve().parent.parent.parent
EX = REPO / "examples"
WORKFLOW = EX / "github" / "orch-nightly.yml"
GITLAB = EX / "gitlab" / "orch-nightly.gitlab-ci.yml"
SERVICE = EX / "systemd" / "orch-nightly.service"
TIMER = EX / "systemd" / "orch-nightly.timer"
NIGHTLY = EX / "nightly.toml"

# check-jsonschema is installed beside this Python (the venv's bin/).
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


def broken_copy(src: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = src.read_text()
    # Once, outside comments: a control that edits a comment tests nothing.
    assert any(line.lstrip().startswith(old.splitlines()[0].lstrip())
               for line in text.splitlines()
               if not line.lstrip().startswith("#")), f"{old!r} is not a line of {src.name}"
    assert text.count(old) == 1, f"{old!r} is in {src.name} more than once"
    out = tmp_path / src.name
    out.write_text(text.replace(old, new, 1))
    return out


def load_yaml(path: Path) -> dict:
    # YAML 1.2 (ruamel's default): GitHub's `on:` stays the string "on".
    return YAML(typ="safe").load(path.read_text())


# ---------------------------------------------------------------- GitHub Actions

# Each file validates with check-jsonschema's bundled schema; a broken copy
# (a typo'd key, a wrong value) must not.
BROKEN = [
    ("vendor.github-workflows", WORKFLOW, "    runs-on: ubuntu-latest",
     "    runs_on: ubuntu-latest"),
    ("vendor.github-workflows", WORKFLOW, "  workflow_dispatch:", "  workflow_dispatched:"),
    ("vendor.github-workflows", WORKFLOW, "timeout-minutes: 360", "timeout-minutes: six hours"),
    ("vendor.gitlab-ci", GITLAB, "  script:", "  scripts:"),
    ("vendor.gitlab-ci", GITLAB, "  rules:", "  rulez:"),
    ("vendor.gitlab-ci", GITLAB, "      junit:", "      junitt:"),
    ("vendor.gitlab-ci", GITLAB, "    when: always\n  script:", "    when: sometimes\n  script:"),
]


@pytest.mark.parametrize("schema, path", [("vendor.github-workflows", WORKFLOW),
                                          ("vendor.gitlab-ci", GITLAB)])
def test_ci_file_validates(schema, path):
    r = check_jsonschema(schema, path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("schema, path, old, new", BROKEN)
def test_ci_file_broken_copy_fails(tmp_path, schema, path, old, new):
    r = check_jsonschema(schema, broken_copy(path, tmp_path, old, new))
    assert r.returncode != 0, f"{old} -> {new} passed validation"


def test_github_workflow_content():
    wf = load_yaml(WORKFLOW)
    assert wf["on"]["schedule"][0]["cron"] and "workflow_dispatch" in wf["on"]
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert uses[0].startswith("actions/checkout@")
    assert "scripts/setup.sh" in runs
    assert '.venv/bin/orch nightly "$NIGHTLY" --out "$OUT"' in runs
    # The reports are uploaded even when the night fails (exit 1: a regression).
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and "nights/" in upload["with"]["path"]
    # The history survives a failed night: restored, then saved with always().
    (restore,) = [s for s in steps if s.get("uses", "").startswith("actions/cache/restore@")]
    (save,) = [s for s in steps if s.get("uses", "").startswith("actions/cache/save@")]
    assert save["if"] == "always()"
    for s in (restore, save):
        assert "history.sqlite" in s["with"]["path"] and "ccache" in s["with"]["path"]
    assert restore["with"]["restore-keys"] and restore["with"]["key"] == save["with"]["key"]
    assert uses.index(save["uses"]) > uses.index(upload["uses"]) > uses.index(restore["uses"])
    # A dispatch input reaches the script through the environment only.
    assert "${{ inputs" not in runs


# ---------------------------------------------------------------- GitLab CI

def test_gitlab_ci_content():
    (job,) = load_yaml(GITLAB).values()
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert "scripts/setup.sh" in job["script"]
    assert '.venv/bin/orch nightly "$NIGHTLY" --out "$OUT"' in job["script"]
    art = job["artifacts"]
    assert art["when"] == "always" and "orch-nightly/nights/" in art["paths"]
    assert art["reports"]["junit"] == "orch-nightly/nights/*/junit.xml"
    assert job["variables"]["OUT"] == "orch-nightly"
    assert job["cache"]["when"] == "always"
    assert "orch-nightly/history.sqlite" in job["cache"]["paths"]
    # GitLab caches only inside the project: orch's cache is put there.
    assert job["variables"]["ORCH_CACHE"].startswith("$CI_PROJECT_DIR/")
    assert any("ccache" in p for p in job["cache"]["paths"])


# ---------------------------------------------------------------- systemd

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze missing (Debian package systemd)")


def verify_units(tmp_path: Path, service: str, timer: str) -> tuple[int, str]:
    """systemd-analyze verify on copies of the units in tmp_path, so that the
    timer finds its service beside it. verify fails on an ExecStart binary
    that does not exist, and /opt/orch/.venv/bin/orch (the example's path)
    does not exist here: the copy runs a real executable instead, with the
    same arguments. Unknown keys are only warnings (exit 0), so any output
    about the units counts as a failure too."""
    d = tmp_path / "units"
    d.mkdir(exist_ok=True)
    (d / SERVICE.name).write_text(service)
    (d / TIMER.name).write_text(timer)
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(d / SERVICE.name), str(d / TIMER.name)],
                       capture_output=True, text=True, timeout=120)
    out = "\n".join(line for line in (r.stdout + r.stderr).splitlines()
                    if "orch-nightly" in line)
    return r.returncode, out


def runnable(service: str) -> str:
    return re.sub(r"^ExecStart=\S+", f"ExecStart={shutil.which('true')}", service, flags=re.M)


@needs_systemd
def test_systemd_units_verify(tmp_path):
    rc, out = verify_units(tmp_path, runnable(SERVICE.read_text()), TIMER.read_text())
    assert rc == 0 and out == "", out


@needs_systemd
@pytest.mark.parametrize("unit, old, new", [
    ("timer", "OnCalendar=*-*-* 01:30:00", "OnCalendar=*-*-* 25:99:00"),   # a bad time
    ("timer", "Persistent=true", "Persistant=true"),                       # a typo'd key
    ("service", "Type=oneshot", "Type=oneshoot"),
    ("service", "[Service]", "[Servce]"),
    ("service", "ExecStart=/bin/true", "ExecStart=/nonexistent/orch"),     # why runnable()
])
def test_systemd_broken_copy_fails(tmp_path, unit, old, new):
    service, timer = runnable(SERVICE.read_text()), TIMER.read_text()
    old = old.replace("/bin/true", shutil.which("true"))
    if unit == "timer":
        assert old in timer
        timer = timer.replace(old, new)
    else:
        assert old in service
        service = service.replace(old, new)
    rc, out = verify_units(tmp_path, service, timer)
    assert rc != 0 or out, f"{old} -> {new} passed systemd-analyze verify"


def _unit_values(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            k, v = line.split("=", 1)
            values.setdefault(k.strip(), []).append(v.strip())
    return values


def test_systemd_unit_content():
    svc = _unit_values(SERVICE)
    assert svc["Type"] == ["oneshot"]
    (exec_start,) = svc["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "orch"
    assert argv[1:] == ["nightly", "/etc/orch/nightly.toml", "--out", "/var/lib/orch-nightly"]
    # The same words are a command orch's own parser takes.
    args = cli.parser().parse_args(argv[1:])
    assert args.cmd == "nightly" and str(args.out) == "/var/lib/orch-nightly"
    timer = _unit_values(TIMER)
    assert timer["Persistent"] == ["true"] and timer["OnCalendar"]
    assert timer["WantedBy"] == ["timers.target"]


# ---------------------------------------------------------------- nightly.toml

# Keys the example can only show commented out: kconfig is refused beside
# configs, and kconfig_add and suites would change what the example tests
# (they name files and make other configs): test_nightly_toml_commented_keys_load.
COMMENTED = {"kconfig", "kconfig_add", "suites"}


def test_nightly_toml_has_every_key():
    text = NIGHTLY.read_text()
    data = tomllib.loads(text)
    # Every key `orch nightly` reads, so the example documents them all.
    commented = set(re.findall(r"(?m)^# (\w+) = ", text))
    assert set(data) == set(config_file.TOP) - COMMENTED
    assert commented == COMMENTED
    for table, keys in config_file.TABLES.items():
        seen = {k for t in data[table] for k in t}
        assert seen == set(keys), table
    assert data["configs"] == ["base", "debug"]
    kinds = [("debian_source" in t, "path" in t) for t in data["tree"]]
    assert kinds == [(True, False), (False, True)]
    assert data["tree"][1]["ref"] == "origin/master"


def test_nightly_toml_loads(monkeypatch):
    """orch's own reader takes the example as it is (exit 2 otherwise)."""
    monkeypatch.setenv("HOME", "/nonexistent-home")   # "~/linux" need not exist
    cfg = config_file.load(NIGHTLY)
    assert cfg.configs == ["base", "debug"] and len(cfg.trees) == 2
    assert cfg.series and cfg.queries
    assert cfg.kselftests == ["cachestat"]
    assert list(cfg.series_kselftests.values()) == [["mincore"]]


def test_nightly_toml_commented_keys_load(monkeypatch, tmp_path):
    """The keys shown commented out load as written, uncommented (kconfig
    in place of configs, as it says), beside the directory `suites` names."""
    monkeypatch.setenv("HOME", "/nonexistent-home")
    text = NIGHTLY.read_text()
    for key in ("kconfig_add", "suites"):
        text = text.replace(f"\n# {key} = ", f"\n{key} = ")
    (tmp_path / "my-tests").mkdir()
    toml = tmp_path / "nightly.toml"
    toml.write_text(text)
    cfg = config_file.load(toml)
    assert cfg.suites == [(tmp_path / "my-tests").resolve()]
    assert [c.split("+")[0] for c in cfg.configs] == ["base", "debug"]
    assert cfg.kconfig_add == ["CONFIG_DEBUG_VM=y", "kvm_guest.config"]
    toml.write_text(re.sub(r'(?m)^configs = .*$', "", text.replace("\n# kconfig = ",
                                                                   "\nkconfig = ")))
    cfg = config_file.load(toml)
    assert cfg.kconfig == "defconfig" and [c[:8] for c in cfg.configs] == ["kconfig-"]
