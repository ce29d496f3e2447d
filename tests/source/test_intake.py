"""Intake through the real b4 against the loopback lore (tests/lore_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import V3_COVER
from lore_server import LORE_DATA_DIR

from orchestrator.core.errors import BadInput, Exit
from orchestrator.source import intake

V2_COVER = "20260225-blk-dontcache-v2-0-70e7ac4f7108@columbia.edu"
V3_PATCH2 = "20260227-blk-dontcache-v3-2-cd309ccd5868@columbia.edu"
BASE = "05f7e89ab9731565d8a62e3b5d1ec206485eeb0b"
CHANGE_ID = "20260218-blk-dontcache-338133dd045e"
JAN_RB = "Reviewed-by: Jan Kara <jack@suse.cz>"


@pytest.fixture
def isolated(b4_env, monkeypatch):
    for k, v in b4_env.items():
        monkeypatch.setenv(k, v)


def fetch(tmp_path, msgid=None, **kw):
    return intake.fetch(msgid, mbox=kw.pop("mbox", None), outdir=tmp_path / "out",
                        log=tmp_path / "b4.log", **kw)


def test_v3_by_msgid_from_lore(tmp_path, lore_server, isolated):
    s = fetch(tmp_path, V3_PATCH2, lore_url=lore_server.url)
    assert s.version == 3
    assert s.msgid == V3_PATCH2
    assert s.subject == "block: enable RWF_DONTCACHE for block devices"
    assert [p.subject for p in s.patches] == [
        "filemap: defer dropbehind invalidation from IRQ context",
        "block: enable RWF_DONTCACHE for block devices"]
    assert [p.patch_id for p in s.patches] == ["6eaa7f7fb2a00d5379335cec4b3149681395a1cb",
                                               "83596022b45d8b99c226f53df50aabd4bbcdf2e5"]
    assert all(p.author == "Tal Zussman <tz2294@columbia.edu>" for p in s.patches)
    assert s.base_commit == BASE and s.change_id == CHANGE_ID
    assert s.cover and "RWF_DONTCACHE" in s.cover
    # Jan Kara's R-b came from a reply, not from the patch mail.
    assert s.patches[1].collected == [JAN_RB] and JAN_RB in s.patches[1].trailers
    assert s.patches[0].collected == []


def test_v2_stays_v2_unless_latest(tmp_path, lore_server, isolated):
    s = fetch(tmp_path / "a", V2_COVER, lore_url=lore_server.url)
    assert s.version == 2 and len(s.patches) == 2
    assert s.patches[0].patch_id == "d17b13f7954133ed0599cc1e92202b287c4ccb01"
    n = len(lore_server.requests)
    s = fetch(tmp_path / "b", V2_COVER, lore_url=lore_server.url, latest=True)
    assert s.version == 3
    assert any("change-id" in (r.q or "") for r in lore_server.requests[n:])


def test_a_relative_outdir_is_where_the_series_lands(tmp_path, lore_server, isolated,
                                                     monkeypatch):
    """b4 runs with its cwd in outdir and `-o outdir`: given relative, it
    wrote under outdir/outdir and orch read no series (`orch plan --out
    plan` planned none)."""
    monkeypatch.chdir(tmp_path)
    s = intake.fetch(V3_PATCH2, mbox=None, outdir=Path("plan/series"), log=tmp_path / "b4.log",
                     lore_url=lore_server.url)
    assert s.version == 3 and len(s.patches) == 2
    assert (tmp_path / "plan" / "series" / "series.mbx").is_file()
    assert not (tmp_path / "plan" / "series" / "plan").exists()


def test_unknown_msgid_is_bad_input(tmp_path, lore_server, isolated):
    with pytest.raises(BadInput, match="unknown Message-ID nobody@example.org") as e:
        fetch(tmp_path, "nobody@example.org", lore_url=lore_server.url)
    assert e.value.exit == Exit.BAD_INPUT
    assert "404" in (tmp_path / "b4.log").read_text()


def test_offline_mbox_picks_latest_and_asks_nobody(tmp_path, lore_server, isolated):
    n = len(lore_server.requests)
    s = fetch(tmp_path, mbox=LORE_DATA_DIR / "all.mbox", lore_url=lore_server.url, offline=True)
    assert s.version == 3 and s.source == "mbox" and s.msgid == V3_COVER
    assert lore_server.requests[n:] == []


def test_mbox_with_only_a_cover_letter(tmp_path, isolated):
    cover = (LORE_DATA_DIR / "messages" / f"{V3_COVER}.eml").read_bytes()
    mbox = tmp_path / "cover.mbox"
    mbox.write_bytes(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + cover + b"\n")
    with pytest.raises(BadInput, match="no patches"):
        fetch(tmp_path, mbox=mbox, offline=True)


def test_unreadable_and_non_mbox(tmp_path):
    with pytest.raises(BadInput, match="cannot read mbox"):
        fetch(tmp_path, mbox=tmp_path / "missing.mbox", offline=True)
    junk = tmp_path / "junk.mbox"
    junk.write_bytes(b"\x00\x01 this is not mail\n")
    with pytest.raises(BadInput, match="not an mbox"):
        fetch(tmp_path, mbox=junk, offline=True)


@pytest.mark.parametrize("raw,want", [
    ("<a@b>", "a@b"), ("a@b", "a@b"), ("id:a@b", "a@b"),
    ("https://lore.kernel.org/all/a%2Bx@b/", "a+x@b"),
    ("https://lore.kernel.org/r/a@b", "a@b")])
def test_msgid_forms(raw, want):
    assert intake.normalize_msgid(raw) == want


@pytest.mark.parametrize("raw", ["../../etc/passwd", "a/b@c", "no-at-sign", "a b@c",
                                 "-oProxyCommand=x@y", "$(reboot)", "a@b\nX-Evil: 1"])
def test_hostile_msgids_are_refused(raw):
    with pytest.raises(BadInput):
        intake.normalize_msgid(raw)


def test_hostile_subject_is_cleaned(tmp_path, isolated):
    mbox = tmp_path / "evil.mbox"
    mbox.write_text(
        "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
        "From: Mallory <m@example.org>\n"
        "Subject: [PATCH] =?utf-8?q?evil=1B=5B2J=07title?=\n"
        "Message-ID: <evil-1@example.org>\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\n\n"
        "Body.\n\nSigned-off-by: Mallory <m@example.org>\n---\n"
        " a.c | 1 +\n\ndiff --git a/a.c b/a.c\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/a.c\n@@ -0,0 +1 @@\n+int x;\n-- \n2.39.5\n\n")
    s = fetch(tmp_path, mbox=mbox, offline=True)
    assert s.patches[0].subject == "evil?[2J?title"
