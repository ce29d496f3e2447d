"""What the guest leaves in its results directory is untrusted: read
defensively, never followed, never read past a cap, never a crash."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import time

import pytest
from helpers import REPO

from orchestrator.core import figures, untrusted
from orchestrator.core.models import Kernel
from orchestrator.guest import junit, result_cache, vm
from orchestrator.run import boots

GUEST = REPO / "guest_tests"


def test_guest_json_is_parsed_capped_and_links_ignored(tmp_path):
    (tmp_path / "scale.json").write_text('{"runs": [{"n": 1, "mib_s": 80.5}]}')
    (tmp_path / "broken.json").write_text("{nope")
    (tmp_path / "huge.json").write_text("[" + "1," * boots.MAX_GUEST_JSON + "1]")
    (tmp_path / "link.json").symlink_to("/etc/passwd")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "nan.json").write_text('{"mib_s": NaN, "max": Infinity}')
    (tmp_path / "overflow.json").write_text('{"mib_s": 1e999}')
    os.mkfifo(tmp_path / "fifo.json")
    t0 = time.monotonic()
    data = boots.guest_data(tmp_path)
    assert time.monotonic() - t0 < 5
    assert data["scale.json"] == {"runs": [{"n": 1, "mib_s": 80.5}]}
    assert "not acceptable JSON" in data["broken.json"]["error"]
    assert "larger than" in data["huge.json"]["error"]
    assert "symbolic link" in data["link.json"]["error"]
    assert "symbolic link" in data["zero.json"]["error"]
    assert "nested deeper than 32" in data["deep.json"]["error"]
    assert "NaN is not JSON" in data["nan.json"]["error"]
    assert "out of range" in data["overflow.json"]["error"]
    assert "not a regular file" in data["fifo.json"]["error"]
    assert boots.guest_data(None) == {}
    # What goes into run.json is strict JSON again.
    json.loads(json.dumps(data, allow_nan=False))
    # Strings with brackets do not count as nesting.
    assert untrusted.load_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')


def test_results_kept_only_from_files_not_links(tmp_path, monkeypatch):
    """A baseline's results are kept in orch's cache: a link the guest made
    there (to the user's files) must not be copied in."""
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    res.mkdir()
    (res / "junit.xml").write_text('<testsuite><testcase classname="t" name="test_a"/></testsuite>')
    (res / "harness-rc").write_text("0\n")
    secret = tmp_path / "secret"
    secret.write_text("token")
    (res / "stolen.json").symlink_to(secret)
    console = tmp_path / "console"
    console.write_text("")
    g = vm.outcome(res, console, ["t.py::test_a"])
    assert g.ok and g.harness_rc == 0 and [t.status.value for t in g.tests] == ["PASS"]
    result_cache.store("k1", g)
    kept = tmp_path / "cache" / "results" / "k1"
    assert (kept / "junit.xml").exists() and not (kept / "stolen.json").exists()
    # Loading clears what an earlier boot left in the results directory.
    (res / "scale.json").write_text("{}")
    k = Kernel("base", tmp_path, tmp_path, True, 0, None, banner="")
    result_cache.load("k1", res, console, k, ["t.py::test_a"])
    assert not (res / "scale.json").exists() and not (res / "stolen.json").exists()


# -- figures (orchestrator/core/figures.py, guest_tests/figures.py) ----------------------

def guest_figures():
    """guest_tests/figures.py, the suite's helper (a module of the guest's
    sys.path, not of the host's)."""
    spec = importlib.util.spec_from_file_location("guest_figures", GUEST / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figure_calls(source: str) -> list[tuple[int, str | None, bool]]:
    """Each figure(...) call of a guest test module: line, name, whether at= is given."""
    return [(node.lineno, node.args[0].value if node.args and isinstance(node.args[0],
                                                                         ast.Constant) else None,
             any(k.arg == "at" for k in node.keywords))
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "figure"]


def undeclared_calls(source: str, declared: dict) -> list[str]:
    """The figure(...) calls that their declaration does not allow: a name
    not in DECLARED, a sweep's point without its x (at=), or a point given
    to a figure that is no sweep."""
    bad = []
    for line, name, at in figure_calls(source):
        if name not in declared:
            bad.append(f"line {line}: {name!r} is not declared")
        elif at != ("x" in declared[name]):
            bad.append(f"line {line}: {name!r} " + ("is no sweep" if at else "needs at="))
    return bad


def test_the_suite_declares_every_figure_it_records():
    declared = guest_figures().DECLARED
    names = set()
    for f in sorted(GUEST.glob("test_*.py")):
        assert undeclared_calls(f.read_text(), declared) == [], f
        names |= {name for _, name, _ in figure_calls(f.read_text())}
    assert names == set(declared)      # and every declared figure is recorded somewhere


def test_control_the_declared_check_finds_what_is_not():
    source = ('def test_x(figure):\n    figure("evicted", 1.0, at=2)\n'
              '    figure("mib_per_s", 3.0)\n    figure("made_up", 1.0)\n')
    assert undeclared_calls(source, guest_figures().DECLARED) == [
        "line 2: 'evicted' is no sweep", "line 3: 'mib_per_s' needs at=",
        "line 4: 'made_up' is not declared"]


def agreement(props: dict[str, str], declared: dict) -> list[str]:
    """Where orch reads `props` (the helper's) otherwise than the suite meant."""
    got = figures.parse(props)
    wrong = list(got.notes)
    table = figures._from_table(declared)
    wrong += [f"{n}: {got.declarations.get(n)} != {d}" for n, d in table.items()
              if got.declarations.get(n) != d]
    return wrong


def recorded(declared: dict) -> dict[str, str]:
    props: list[tuple[str, str]] = []
    record = guest_figures().Recorder(props, declared)
    for name, d in declared.items():
        for x in ((1, 2) if "x" in d else (None,)):
            record(name, 0.5, at=x)
    return dict(props)


def test_the_suites_helper_and_orch_agree_on_the_convention():
    """What the helper records for every figure the suite declares, orch
    reads back whole; and orch's own reading of the table (the fallback for
    older nights) is the same declarations."""
    declared = guest_figures().DECLARED
    assert agreement(recorded(declared), declared) == []
    assert figures.suite_declarations() == figures._from_table(declared)
    record = guest_figures().Recorder([], declared)
    with pytest.raises(KeyError):
        record("made_up", 1.0)
    for bad in ({"name": "evicted", "value": float("nan")},
                {"name": "mib_per_s", "value": 1.0}):
        with pytest.raises(ValueError):
            record(**bad)


def test_control_the_agreement_check_sees_a_misspelt_declaration():
    declared = {"x": {"title": "t", "units": "MiB/s", "better": "more"}}
    assert agreement(recorded(declared), declared) != []


def test_a_hostile_guests_junit_is_screened_at_once(tmp_path):
    """Figure properties that break the convention never reach run.json (the
    note says so), and no test case keeps more than MAX_PROPERTIES names."""
    assert screened_count(tmp_path) <= 512 + 2


def screened_count(tmp_path) -> int:
    flood = "".join(f'<property name="figure.f{i}@{j}" value="{i}"/>'
                    for i in range(300) for j in range(300))
    (tmp_path / "junit.xml").write_text(
        '<testsuite><testcase classname="t" name="test_a"><properties>'
        '<property name="kernel" value="7.2"/><property name="figure.a" value="NaN"/>'
        f'<property name="figure.b" value="0.5"/>{flood}</properties></testcase></testsuite>')
    (t,) = junit.parse(tmp_path / "junit.xml")
    assert t.properties["kernel"] == "7.2" and t.properties["figure.b"] == "0.5"
    assert "figure.a" not in t.properties
    assert "figure.a: 'NaN' is not a finite number" in t.properties[figures.NOTES]
    assert figures.parse(t.properties).notes == []      # what is left reads clean
    return len(t.properties)


def test_control_the_screening_check_sees_an_uncapped_junit(tmp_path, monkeypatch):
    monkeypatch.setattr(junit, "MAX_PROPERTIES", 10 ** 6)
    monkeypatch.setattr(figures, "MAX_POINTS", 10 ** 6)
    monkeypatch.setattr(figures, "MAX_NAMES", 10 ** 6)
    assert screened_count(tmp_path) > 512 + 2


def test_a_junit_without_figures_is_read_as_before(tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<testsuite><testcase classname="t" name="test_a"><properties>'
        '<property name="b" value="2"/><property name="a" value="1"/>'
        '<property name="b" value="3"/></properties></testcase></testsuite>')
    (t,) = junit.parse(tmp_path / "junit.xml")
    assert list(t.properties.items()) == [("b", "3"), ("a", "1")]
