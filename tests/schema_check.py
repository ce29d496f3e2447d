"""Every run.json the test suite writes is validated against the committed
JSON Schema (orchestrator/data/run.schema.json), whichever test or fixture
wrote it: after each test, the run.json files under pytest's base temporary
directory that are new or changed since the last check. A record of another
schema version (a test's fixture for `orch report`) is that version's."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jsonschema
import pytest

from orchestrator.run.record import SCHEMA_FILE, SCHEMA_VERSION

_seen: dict[Path, int] = {}


def schema_errors(data: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    out = []
    for e in validator.iter_errors(data):
        # Under anyOf (an optional field) the useful words are the branch's.
        why = "; ".join(c.message for c in e.context if c.validator != "type") or e.message
        out.append(f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {why}")
    return out


@pytest.fixture(autouse=True)
def run_json_matches_the_schema(request, tmp_path_factory):
    yield
    base = tmp_path_factory.getbasetemp()
    bad = []
    for f in base.rglob("run.json"):
        try:
            st = f.lstat()
        except OSError:
            continue
        # A test's hostile run.json (a FIFO, a link to /dev/zero, a huge or
        # deeply nested file) is its test's business, not the schema's: a
        # plain read would hang or recurse here.
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
            continue
        if _seen.get(f) == st.st_mtime_ns:
            continue
        _seen[f] = st.st_mtime_ns
        try:
            data = json.loads(f.read_text())
        except RecursionError:
            continue
        except ValueError as e:
            bad.append(f"{f}: not JSON: {e}")
            continue
        if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
            continue   # another version's record, written by a test on purpose
        bad += [f"{f}: {err}" for err in schema_errors(data)]
    assert not bad, "run.json does not match the schema:\n" + "\n".join(bad[:20])
