"""What the guest leaves in its results directory is untrusted: read
defensively, never followed, never read past a cap, never a crash."""

from __future__ import annotations

import json
import os
import time

from orchestrator.core import untrusted
from orchestrator.core.models import Kernel
from orchestrator.guest import result_cache, vm
from orchestrator.run import boots


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
