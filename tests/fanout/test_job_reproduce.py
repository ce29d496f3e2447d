"""A CI series job's cells are reproduced by what they record: the cell's
run.json command and its reproduce line, run as `orch` on the runner, say
what the cell said and build and boot nothing (the job's --no-sandbox
included: it is part of the results key).

On the stand-in tree against the loopback lore (test_nightly's world, cut
into jobs by test_fanout's `planned`).
"""

from __future__ import annotations

import json
import os
import shlex
import types

from helpers import orch_standin, run_json
from test_fanout import planned  # noqa: F401 (the fixture)
from test_nightly import _results, world  # noqa: F401 (the fixture)
from test_reproduce import as_reproduced, differences

from orchestrator.fanout import job_run as job_cmd
from orchestrator.run import series_run
from orchestrator.run.options import NOT_REPRODUCED


def test_a_jobs_cells_are_reproduced_by_their_recorded_commands(planned, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    pdir, shards = planned["pdir"], tmp_path / "shards"
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner"))
    ran = {}
    real = series_run.test

    def kept_options(opts, progress=None):
        ran[opts.run_dir] = opts
        return real(opts, progress)
    monkeypatch.setattr(series_run, "test", kept_options)
    assert job_cmd.run_job(pdir, "b-mini-base", shards / "b-mini-base", sandbox=False) == 0
    assert job_cmd.run_job(pdir, "s-mini-base-1", shards / "s-mini-base-1",
                           [shards / "b-mini-base"], sandbox=False) == 0
    shard = shards / "s-mini-base-1"
    n = json.loads((shard / "night.json").read_text())
    (c,) = n["cells"]
    assert c["status"] == "FAIL", c          # v3 of "mini: feature" fails its test
    rec = run_json(shard / c["run_dir"])
    opts = ran[shard / c["run_dir"]]
    assert not opts.sandbox and "--no-sandbox" in rec["command"]
    assert differences(opts, rec["command"]) == {}
    t = types.SimpleNamespace(**n["plan"]["trees"][0])
    assert differences(as_reproduced(opts, c["msgid"], t), c["reproduce"], NOT_REPRODUCED) == {}
    for kind, argv in (("command", rec["command"]), ("reproduce", shlex.split(c["reproduce"]))):
        rd = tmp_path / f"again-{kind}"
        r = orch_standin(tmp_path, dict(os.environ), *argv[1:], "--run-dir", str(rd),
                         harness=False)
        again = run_json(rd)
        assert (r.returncode, again["verdict"]) == (rec["exit_code"], rec["verdict"]), \
            (kind, r.stderr)
        assert _results(again) == _results(rec), kind
        for side in ("baseline", "patched"):     # the baseline job's boot answers, kept
            a = again["configs"][0][side]
            assert a["build"]["cached"] and a["boot"]["cached"], (kind, side)
