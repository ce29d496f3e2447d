"""Every command reads --lore-url, config.toml's and NIGHTLY.toml's lore_url
and a pasted Message-ID the one way lore.py does: real `orch test` runs
against the loopback lore (which records every request), on a tiny tree the
series does not apply to (exit 3: b4 fetched it, nothing was built).

Before: `--lore-url URL/all/` made b4 ask for /all/all/<id> first, a
thread URL (`.../<id>/T/#t`) was "not a Message-ID", and a URL without a
scheme ran until b4 failed ("lore unreachable", exit 5).
"""

from __future__ import annotations

import pytest
from helpers import git, one_error_line, orch, run_json

from orchestrator.core.errors import BadInput
from orchestrator.nightly import config_file

V3_PATCH2 = "20260227-blk-dontcache-v3-2-cd309ccd5868@columbia.edu"


@pytest.fixture
def env(b4_orch_env):
    return b4_orch_env


@pytest.fixture
def tiny(tmp_path):
    """A git tree that has none of the files the series patches."""
    repo = tmp_path / "tree"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "hello.c").write_text("int main(void) { return 0; }\n")
    git(repo, "add", "hello.c")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def _fetched(env, tmp_path, tiny, lore_server, lore_url: str, msgid: str):
    """`orch test` up to the apply; (its run.json, the paths lore was asked)."""
    asked = len(lore_server.requests)
    rd = tmp_path / "run"
    r = orch(env, tmp_path, "test", "--lore-url", lore_url, "--tree", str(tiny),
             "--run-dir", str(rd), msgid)
    assert r.returncode == 3, r.stderr            # fetched, and it does not apply here
    assert "does not apply" in one_error_line(r.stderr)
    return run_json(rd), [q.path for q in lore_server.requests[asked:]]


def test_lore_url_with_all_asks_no_all_all(env, tmp_path, tiny, lore_server):
    rec, asked = _fetched(env, tmp_path, tiny, lore_server, f"{lore_server.url}/all/",
                          V3_PATCH2)
    assert rec["series"]["version"] == 3
    assert asked and not [p for p in asked if p.startswith("/all/all/")], asked
    b4_log = (tmp_path / "run" / "logs" / "b4.log").read_text()
    assert f"b4.midmask={lore_server.url}/all/%s " in b4_log


def test_a_thread_url_is_its_message_id(env, tmp_path, tiny, lore_server):
    # Copied from the browser on lore.kernel.org: --lore-url still says
    # where to ask (the loopback lore), whatever host the page was on.
    url = f"https://lore.kernel.org/linux-block/{V3_PATCH2}/T/#t"
    rec, asked = _fetched(env, tmp_path, tiny, lore_server, lore_server.url, url)
    assert rec["series"]["msgid"] == V3_PATCH2 and rec["series"]["version"] == 3
    assert any(V3_PATCH2.replace("@", "%40") in p for p in asked), asked


def test_a_lore_url_without_scheme_is_bad_input_at_once(env, tmp_path, lore_server):
    asked = len(lore_server.requests)
    r = orch(env, tmp_path, "test", "--lore-url", "lore.kernel.org", V3_PATCH2)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr) == (
        "orch: error: --lore-url 'lore.kernel.org': no scheme: give https://lore.kernel.org "
        "(or http:// for a mirror without TLS)")
    assert not (tmp_path / "orch-runs").exists()
    assert len(lore_server.requests) == asked


def test_config_file_lore_url_takes_the_same_form(env, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('lore_url = "https://lore.example.org/all/"\n')
    r = orch({**env, "ORCH_CONFIG": str(cfg)}, tmp_path, "test", "--print-config")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("lore_url = "))
    assert line.startswith('lore_url = "https://lore.example.org"  ') and str(cfg) in line
    cfg.write_text('lore_url = "lore.example.org"\n')
    r = orch({**env, "ORCH_CONFIG": str(cfg)}, tmp_path, "test", "--print-config")
    assert r.returncode == 2
    assert one_error_line(r.stderr).startswith(
        f"orch: error: {cfg}: lore_url 'lore.example.org': no scheme: give https://")


@pytest.mark.parametrize("given, base", [
    ("https://lore.kernel.org/all/", "https://lore.kernel.org"),
    ("http://127.0.0.1:8080/all", "http://127.0.0.1:8080"),
])
def test_nightly_toml_lore_url(tmp_path, given, base):
    f = tmp_path / "nightly.toml"
    f.write_text(f'lore_url = "{given}"\n[[series]]\nmsgid = "a@b"\n')
    assert config_file.load(f).lore_url == base


def test_nightly_toml_lore_url_without_scheme(tmp_path):
    f = tmp_path / "nightly.toml"
    f.write_text('lore_url = "lore.kernel.org/all"\n[[series]]\nmsgid = "a@b"\n')
    with pytest.raises(BadInput) as e:
        config_file.load(f)
    assert str(e.value) == (f"{f}: lore_url 'lore.kernel.org/all': no scheme: give "
                            "https://lore.kernel.org/all (or http:// for a mirror without TLS)")
