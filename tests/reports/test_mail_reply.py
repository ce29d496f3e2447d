"""`orch report RUN --mail`: the reply for the list (reports/mail_reply.py)
and what intake keeps of the original mail for it (source/intake.py).

The reply is parsed back with Python's email package (policy.default) and
every header and body rule checked; b4 reads it as a maintainer's b4 would:
the real `b4 am` on a loopback lore thread that holds the real RFC v3 mails
and the reply (the Tested-by line reaches both patches; without it nothing
does; a reply whose In-Reply-To and References point nowhere is not in the
thread). One test makes the reply from a real run on the stand-in tree,
from the mailed thread `git format-patch --thread` writes.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import standin_guest
from helpers import IRQ_TEST, V3_COVER, git, one_error_line, orch, run_json
from lore_server import LORE_DATA_DIR, LoreServer
from test_intake import fetch, isolated  # noqa: F401 (isolated: the fixture)

from orchestrator import cli
from orchestrator.core.errors import BadInput
from orchestrator.core.models import Patch, PatchStatus, Series, Status
from orchestrator.reports import mail_reply
from orchestrator.run import record, recording, settings
from orchestrator.run.record import (
    Accel,
    ApplyRecord,
    BisectRecord,
    BootRecord,
    BootStatus,
    BuildRecord,
    BuildStatus,
    Comparison,
    ConfigRecord,
    Problems,
    Rejection,
    RunRecord,
    RunState,
    SideRecord,
    TargetsRecord,
    TestRecord,
    TreeRecord,
)
from orchestrator.run.targets import Rule
from orchestrator.source import intake

V3_PATCH1 = "20260227-blk-dontcache-v3-1-cd309ccd5868@columbia.edu"
V3_PATCH2 = "20260227-blk-dontcache-v3-2-cd309ccd5868@columbia.edu"
V1_PATCH = "20260218-blk-dontcache-v1-1-fad6675ef71f@columbia.edu"
V2_COVER = "20260225-blk-dontcache-v2-0-70e7ac4f7108@columbia.edu"
V3_MBOX = LORE_DATA_DIR / "blk-dontcache-v3.mbox"
V3_SUBJECT = "[PATCH RFC v3 0/2] block: enable RWF_DONTCACHE for block devices"
AUTHOR = "Tal Zussman <tz2294@columbia.edu>"
ME = "Tess Ter <tess@example.org>"
JAN_RB = "Reviewed-by: Jan Kara <jack@suse.cz>"
B4 = str(Path(sys.executable).parent / "b4")

IRQ = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts"
TASK = "guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts"
MANY = "guest_tests/test_many_folios.py::test_many_folios_all_evicted"
MIX = "guest_tests/test_mixing.py::test_cached_then_dontcache_stays_cached"
SIZE = "guest_tests/test_sizes.py::test_odd_sizes"

# Text a mail or a guest could hold: a header injection, trailers b4 would
# take, a diff b4 would take for a patch, terminal escapes, C1 and bidi
# controls, a NUL, wide characters and a line far over 80 columns.
INJECT = "x\r\nBcc: evil@attacker.example\r\nX-Evil: 1"
TRAILERS = ("Reviewed-by: Evil <evil@attacker.example>\nLink: https://attacker.example/x\n"
            "Fixes: 0123456789ab (\"x\")\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n")
NASTY = "\x1b[31mred\x00\x07\x9b2J\u202eevil\u200b " + "\u5168" * 50 + " " + "y" * 150


def cover_headers() -> dict:
    """What intake keeps of the real RFC v3 cover letter."""
    return intake.reply_headers((LORE_DATA_DIR / "messages" / f"{V3_COVER}.eml").read_bytes())


def v3_series(reply: dict | None = None) -> dict:
    s = Series(V3_COVER, 3, "block: enable RWF_DONTCACHE for block devices",
               [Patch(1, "filemap: defer dropbehind invalidation from IRQ context", AUTHOR,
                      "6eaa7f7fb2a00d5379335cec4b3149681395a1cb",
                      status=PatchStatus.APPLIED),
                Patch(2, "block: enable RWF_DONTCACHE for block devices", AUTHOR,
                      "83596022b45d8b99c226f53df50aabd4bbcdf2e5",
                      status=PatchStatus.APPLIED)],
               Path("/runs/r/series/series.mbx"), cover="...",
               base_commit="05f7e89ab9731565d8a62e3b5d1ec206485eeb0b",
               reply=cover_headers() if reply is None else reply)
    return recording.series(s)


def side(tests: dict[str, str], banner: str = "7.2.13", splats=None) -> SideRecord:
    return SideRecord(
        BuildRecord(status=BuildStatus.OK, seconds=643.2, cached=False, image="/k/bzImage",
                    log="/l/build.log", key="k", compiled=10, banner=f"Linux version {banner} "
                    "(root@h) (gcc 12) #1 SMP PREEMPT_DYNAMIC"),
        BootRecord(status=BootStatus.OK, accel="tcg", cached=False, seconds=133.0,
                   console="/l/console", banner=f"Linux version {banner} (root@h)"),
        tests=[TestRecord(n, Status(st), "", 1.0, {}) for n, st in tests.items()],
        splats=splats or [])


# (test, baseline, patched, transition, reason, known)
PASSING = [(IRQ, "FAIL", "PASS", "fixed", "", False),
           (TASK, "PASS", "PASS", "passing", "", False),
           (MANY, "FAIL", "FAIL", "still failing", "AssertionError: 7 folios still cached",
            True)]
SPLAT = {"kind": "warning", "title": "WARNING: CPU: 0 PID: 1 at mm/filemap.c:1234 "
         "folio_end_dropbehind+0x3c/0x80", "frames": [
             "folio_end_dropbehind+0x3c/0x80", "folio_end_writeback+0x50/0x90",
             "end_buffer_async_write+0x7c/0x130", "end_bio_bh_io_sync+0x30/0x50",
             "blk_update_request+0x12c/0x470", "blk_mq_end_request+0x1c/0x40"],
         "line": 321, "fingerprint": "a1b2c3d4e5f6"}


def config(name: str, rows, verdict: str = "PASS", new_splats=(), kconfig=None) -> ConfigRecord:
    c = ConfigRecord(name, side({r[0]: r[1] for r in rows}, "7.2.13"),
                     side({r[0]: r[2] for r in rows}, "7.2.13-00002-gdeadbeef",
                          list(new_splats)), kconfig=kconfig)
    c.comparison = [Comparison(t, Status(b), Status(p), tr, why, True if known else None)
                    for t, b, p, tr, why, known in rows]
    c.new_splats, c.preexisting_splats = list(new_splats), []
    c.verdict = verdict
    regress = [f"config {name}: {r[0]} {r[3]}" for r in rows if r[3] == "regressed"]
    fails = [f"config {name}: {r[0]} {r[3]}" for r in rows
             if r[2] in ("FAIL", "ERROR") and r[3] != "regressed" and not r[5]]
    known = [f"config {name}: {r[0]} {r[3]}" for r in rows if r[5]]
    c.regressions = len(regress) + len(new_splats)
    c.problems = Problems(regress, fails, [], known or None)
    return c


def run_record(verdict: str = "PASS", exit_code: int = 0, configs=None, series=None,
               targets=(IRQ,), command=None, error=None) -> RunRecord:
    configs = [config("base", PASSING)] if configs is None else configs
    rec = RunRecord("0.1.0", command or ["orch", "test", V3_COVER, "--config", "base"],
                    "/runs/r", "2026-11-28T01:00:00+00:00", state=RunState.DONE,
                    verdict=verdict, exit_code=exit_code, error=error,
                    series=v3_series() if series is None else series,
                    tree=TreeRecord("/t", "debian:linux-source-7.2 7.2.13",
                                    "a" * 40, "the tree's HEAD"),
                    configs=configs, expected_tests=[IRQ, TASK, MANY],
                    accel=Accel("tcg", "no /dev/kvm"))
    rec.targets = TargetsRecord(Rule.EXPECT_FIXED, list(targets), list(targets))
    return rec


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def addrs(msg, name: str) -> list[str]:
    return [a.addr_spec for a in msg[name].addresses] if msg[name] else []


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


# b4's own reading of a reply's body, in a process of its own: importing b4
# changes the email package's charset registry for the whole process.
B4_READS = """
import json, sys, b4
body = sys.stdin.read()
trailers, _ = b4.LoreMessage.find_trailers(body, followup=True)
print(json.dumps([[t.as_string() for t in trailers],
                  bool(b4.DIFF_RE.search(body) or b4.DIFFSTAT_RE.search(body))]))
"""


def b4_reads(body: str) -> tuple[list[str], bool]:
    """(the follow-up trailers b4 finds in `body`, whether b4 sees a diff)."""
    r = subprocess.run([sys.executable, "-c", B4_READS], input=body, capture_output=True,
                       text=True, check=True)
    trailers, diff = json.loads(r.stdout)
    return trailers, diff


def b4_trailers(body: str) -> list[str]:
    trailers, diff = b4_reads(body)
    assert not diff, body                       # never a patch to b4
    return trailers


def assert_plain_body(msg) -> str:
    """The body's rules: text/plain UTF-8 8bit, lines under 80 columns, no
    control or invisible characters, nothing b4 reads as a diff."""
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "8bit" and msg["MIME-Version"] == "1.0"
    body = msg.get_content()
    for line in body.splitlines():
        # Longer only: the Tested-by trailer, or a word that fits no line (a
        # test id), alone on its line and never cut.
        # (after at most its indent and a short label, such as "  tree      ":
        # a path as long as CI's temporary directories is one).
        head, _, last = line.rstrip().rpartition(" ")
        assert columns(line) <= mail_reply.WIDTH or line.startswith("Tested-by: ") or (
            columns(head) <= 16 and columns(last) > mail_reply.WIDTH - 2 - columns(head) - 1
        ), line
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e]",
                             line), repr(line)
    return body


# -- intake keeps the original mail's headers --------------------------------------

def test_intake_keeps_the_cover_letters_headers_and_asks_lore_nothing_more(
        tmp_path, lore_server, isolated):
    asked = len(lore_server.requests)
    s = fetch(tmp_path, V3_PATCH2, lore_url=lore_server.url)
    r = s.reply
    assert r["msgid"] == V3_COVER and r["subject"] == V3_SUBJECT
    assert r["from"] == {"name": "Tal Zussman", "addr": "tz2294@columbia.edu"}
    assert r["date"] == "Fri, 27 Feb 2026 11:41:06 -0500"
    assert r["references"] == []                        # the thread's root
    assert {"name": "Matthew Wilcox (Oracle)", "addr": "willy@infradead.org"} == r["to"][0]
    assert [a["addr"] for a in r["to"]][-1] == "jack@suse.cz" and len(r["to"]) == 16
    assert [a["addr"] for a in r["cc"]] == [
        "hch@infradead.org", "linux-fsdevel@vger.kernel.org", "linux-mm@kvack.org",
        "linux-kernel@vger.kernel.org", "linux-block@vger.kernel.org", "tz2294@columbia.edu"]
    # b4's cache answered: lore saw b4 am's two requests and nothing else.
    seen = [(q.method, q.path) for q in lore_server.requests[asked:]]
    assert seen == [("GET", f"/all/{V3_PATCH2.replace('@', '%40')}/t.mbox.gz"),
                    ("POST", "/all/")], seen
    assert not (tmp_path / "out" / intake.THREAD).exists()
    assert f" mbox -o {tmp_path / 'out'} -n {intake.THREAD} {V3_PATCH2}" in \
        (tmp_path / "b4.log").read_text()


def test_latest_asks_lore_once_more_for_the_newer_revisions_thread(
        tmp_path, lore_server, isolated):
    asked = len(lore_server.requests)
    s = fetch(tmp_path, V2_COVER, lore_url=lore_server.url, latest=True)
    assert s.version == 3 and s.reply == cover_headers()
    gets = [q.path for q in lore_server.requests[asked:] if q.method == "GET"]
    assert gets == [f"/all/{V2_COVER.replace('@', '%40')}/t.mbox.gz",
                    f"/all/{V3_COVER.replace('@', '%40')}/t.mbox.gz"]


def test_an_am_ready_mbox_replies_to_its_first_patch(tmp_path, isolated):
    """What a nightly cell runs from: b4's am-ready mbox, pinned (no cover
    letter, no To, Cc or References are left in it)."""
    first = fetch(tmp_path / "a", mbox=V3_MBOX, offline=True)
    s = fetch(tmp_path / "b", mbox=first.mbx, offline=True)
    assert s.reply["msgid"] == V3_PATCH1 and s.reply["to"] == s.reply["cc"] == []
    assert s.reply["from"] == {"name": "Tal Zussman", "addr": "tz2294@columbia.edu"}


def test_intake_from_an_mbox_reads_the_mail_itself(tmp_path, lore_server, isolated):
    asked = len(lore_server.requests)
    s = fetch(tmp_path, mbox=LORE_DATA_DIR / "all.mbox", lore_url=lore_server.url,
              offline=True)
    assert s.reply == cover_headers() and s.reply["msgid"] == V3_COVER
    assert lore_server.requests[asked:] == []


def test_without_a_cover_letter_the_reply_answers_the_first_patch(tmp_path, isolated):
    s = fetch(tmp_path, mbox=LORE_DATA_DIR / "blk-dontcache-v1.mbox", offline=True)
    assert s.cover is None and s.reply["msgid"] == V1_PATCH
    assert s.reply["subject"] == "[PATCH RFC] block: enable RWF_DONTCACHE for block devices"
    assert "linux-block@vger.kernel.org" in [a["addr"] for a in s.reply["cc"]]


def test_an_mbox_that_was_never_mailed_has_no_reply(tmp_path, isolated):
    # git format-patch output: no Message-ID, so orch gives the mails its own.
    raw = (LORE_DATA_DIR / "messages" / f"{V1_PATCH}.eml").read_bytes()
    raw = re.sub(rb"(?im)^(Message-ID|In-Reply-To|References):.*\n", b"", raw)
    mbox = tmp_path / "p.mbox"
    mbox.write_bytes(b"From 0 Mon Sep 17 00:00:00 2001\n" + raw)
    s = fetch(tmp_path, mbox=mbox, offline=True)
    assert len(s.patches) == 1 and s.reply is None


def test_hostile_headers_are_kept_as_checked_text():
    refs = " ".join(f"<r{i}@x.example>" for i in range(80))
    raw = ("From: =?utf-8?q?Mallory=0D=0ABcc=3A_evil=40x=2Eexample?= <m@x.example>\n"
           "To: ok <ok@x.example>, bad <not an address>, <a@b>, \"E\u0301ve\" <eve@x.example>,"
           " ok <OK@X.example>\n"
           "Cc: =?utf-8?b?" + __import__("base64").b64encode("Jörg \u202e Rödel".encode())
           .decode() + "?= <joerg@x.example>\n"
           f"Subject: =?utf-8?q?Re=3A_=5BPATCH=5D_a=0D=0AX-Evil=3A_1_=1B=5B31m?= {'z' * 900}\n"
           f"Message-ID: <root@x.example>\nReferences: {refs} <bad ref> <r79@x.example>\n"
           "In-Reply-To: <parent@x.example>\n\nbody\n").encode()
    r = intake.reply_headers(raw)
    assert r["msgid"] == "root@x.example"
    assert r["from"] == {"name": "Mallory Bcc: evil@x.example", "addr": "m@x.example"}
    assert [a["addr"] for a in r["to"]] == ["ok@x.example", "eve@x.example"]
    assert r["cc"] == [{"name": "Jörg Rödel", "addr": "joerg@x.example"}]
    assert r["subject"].startswith("Re: [PATCH] a X-Evil: 1 [31m z")
    assert len(r["subject"]) == 500 and r["subject"].endswith("...")
    assert not any(ch in r["subject"] for ch in "\r\n\x1b")
    # The root, then the nearest: 50 in all; the parent (In-Reply-To) last.
    assert len(r["references"]) == intake.MAX_REFERENCES
    assert r["references"][0] == "r0@x.example" and r["references"][-1] == "parent@x.example"
    assert intake.reply_headers(b"Subject: no id\n\n") is None
    assert intake.reply_headers(b"Message-ID: <a b@c>\n\n") is None


# -- the reply, parsed back --------------------------------------------------------

def test_the_reply_to_the_v3_cover_letter_parses_back(tmp_path):
    rec = run_record()
    data = mail_reply.render(rec, tmp_path, ME)
    assert b"\r" not in data
    msg = parse(data)
    assert str(msg["From"]) == ME
    assert addrs(msg, "To") == ["tz2294@columbia.edu"]
    cc = addrs(msg, "Cc")
    original = cover_headers()
    # To and Cc of the cover letter, once each; its author is To.
    assert cc == [a["addr"] for a in original["to"] + original["cc"]
                  if a["addr"] != "tz2294@columbia.edu"]
    assert len(cc) == len(set(a.lower() for a in cc)) == 21
    assert str(msg["Subject"]) == "Re: " + V3_SUBJECT
    assert msg["In-Reply-To"] == f"<{V3_COVER}>"
    assert msg["References"] == f"<{V3_COVER}>"
    mid = msg["Message-ID"]
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", mid) and V3_COVER not in mid
    assert parse(mail_reply.render(rec, tmp_path, ME))["Message-ID"] != mid   # fresh each time
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert {k.lower() for k in msg.keys()} == {
        "from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
        "x-mailer", "content-type", "content-transfer-encoding", "mime-version"}
    assert all(len(line) <= 78 for line in data.decode().split("\n\n", 1)[0].splitlines())
    body = assert_plain_body(msg)
    assert body.startswith("Hi Tal,\n")
    assert b4_trailers(body) == [f"Tested-by: {ME}"]
    assert body.rstrip().endswith("-- \norch 0.1.0, run started 2026-11-28T01:00:00+00:00")


def test_a_long_tested_by_is_one_line(tmp_path):
    """A trailer is never wrapped, however long the sender's name: git
    interpret-trailers and checkpatch read one line."""
    me = ("Maximiliane Konstanze Wilhelmina von Überlingen-Hohenzollern "
          "<maximiliane.von.ueberlingen@kernel-testing.example.org>")
    body = assert_plain_body(parse(mail_reply.render(run_record(), tmp_path, me)))
    line = next(x for x in body.splitlines() if x.startswith("Tested-by: "))
    assert line == f"Tested-by: {me}" and columns(line) > mail_reply.WIDTH
    assert b4_trailers(body) == [f"Tested-by: {me}"]


def test_the_body_says_what_was_tested_and_the_transitions_that_matter(tmp_path):
    rows = [(IRQ, "PASS", "FAIL", "regressed",
             "AssertionError: 16 folios still cached\nassert 16 == 0", False),
            (TASK, "FAIL", "PASS", "fixed", "", False),
            (MANY, "FAIL", "FAIL", "still failing", "AssertionError: 7 still cached", False),
            (MIX, "FAIL", "FAIL", "still failing", "known one", True),
            (SIZE, "PASS", "PASS", "passing", "", False)]
    rec = run_record("FAIL", 1, [config("base", rows, "FAIL", [SPLAT]),
                                 config("debug", rows[:2], "FAIL", kconfig="debug.config")],
                     error="config base: patched kernel warning: WARNING: CPU: 0 PID: 1 at "
                     "mm/filemap.c:1234 folio_end_dropbehind+0x3c/0x80; and 3 more")
    rec.cpus, rec.memory = 4, "4G"
    body = assert_plain_body(parse(mail_reply.render(rec, tmp_path, ME)))
    assert ("The result is a FAIL (exit 1). config base: patched kernel warning:\n"
            "WARNING: CPU: 0 PID: 1 at mm/filemap.c:1234") in body
    sections = {s.split("\n", 1)[0]: s.split("\n", 1)[1].splitlines()
                for s in body.split("\n\n") if "\n" in s}
    assert sections["What was tested"] == [
        "  series    v3, 2 of 2 patches applied",
        "  tree      debian:linux-source-7.2 7.2.13",
        "  base      aaaaaaaaaaaa (the tree's HEAD)",
        "  guest     tcg (no /dev/kvm), 4 vCPUs, 4G memory",
        "  targets   1 of 3 tests (--expect-fixed",
        "            guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts)",
        "  config base",
        "    baseline  7.2.13, built in 643s, tests 3 fail, 2 pass",
        "    patched   7.2.13-00002-gdeadbeef, built in 643s, tests 3 fail, 2 pass",
        "  config debug (--kconfig debug.config)",
        "    baseline  7.2.13, built in 643s, tests 1 fail, 1 pass",
        "    patched   7.2.13-00002-gdeadbeef, built in 643s, tests 1 fail, 1 pass"]
    irq = ["    guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts",
           "    (PASS -> FAIL, regressed)",
           "      AssertionError: 16 folios still cached"]
    assert sections["Regressions (pass without the series, fail with it)"] == [
        "  - [base]", *irq, "  - [debug]", *irq]
    assert "assert 16 == 0" not in body                  # a reason's first line only
    task = ["    guest_tests/test_blockdev_dontcache.py::test_dontcache_write_task_completion_evicts",
            "    (FAIL -> PASS, fixed)"]
    assert sections["Fixed by the series (fail without it, pass with it)"] == [
        "  - [base]", *task, "  - [debug]", *task]
    assert sections["Failing with the series"] == [
        "  - [base] guest_tests/test_many_folios.py::test_many_folios_all_evicted",
        "    (FAIL -> FAIL, still failing)", "      AssertionError: 7 still cached"]
    assert sections["Known failures (failing without the series too, and not one it "
                    "targets)"] == [
        "  - [base]", "    guest_tests/test_mixing.py::test_cached_then_dontcache_stays_cached",
        "    (FAIL -> FAIL, still failing)", "      known one"]
    assert SIZE not in body and "\n1 other test result passed with and without the " \
        "series.\n" in body
    assert sections["New splats with the series (not on the kernel without it)"] == [
        "  - [base] warning: WARNING: CPU: 0 PID: 1 at mm/filemap.c:1234",
        "    folio_end_dropbehind+0x3c/0x80",
        *[f"      {f}" for f in SPLAT["frames"][:mail_reply.MAX_FRAMES]]]
    assert sections["To run it again"] == [f"  orch test {V3_COVER} \\", "    --config base"]
    assert "Tested-by" not in body and b4_trailers(body) == []
    assert "|" not in body                               # nothing here b4 could take


@pytest.mark.parametrize("case, expected", [
    ("pass", True),
    ("pass, a known failure", True),
    ("fail", False),
    ("pass, a target skipped", False),
    ("pass, no test compared", False),
    ("pass, no targets: every test is one", True),
    ("pass, no targets: one still fails", False),
    ("build only", False),
    ("does not apply", False),
])
def test_tested_by_only_when_everything_the_series_targets_passed(tmp_path, case, expected):
    rows = [(IRQ, "FAIL", "PASS", "fixed", "", False), (TASK, "PASS", "PASS", "passing", "",
                                                        False)]
    kw: dict = {}
    if case == "pass, a known failure":
        rows.append((MANY, "FAIL", "FAIL", "still failing", "x", True))
    if case == "fail":
        rows[1] = (TASK, "PASS", "FAIL", "regressed", "x", False)
        kw = {"verdict": "FAIL", "exit_code": 1}
    if case == "pass, a target skipped":
        rows[0] = (IRQ, "SKIP", "SKIP", "skipped", "", False)
    if case.startswith("pass, no targets"):
        kw["targets"] = ()
        rec = run_record(**kw)
        rec.targets = None
        if case.endswith("still fails"):
            rows.append((MANY, "FAIL", "FAIL", "still failing", "x", False))
        rec.configs = [config("base", rows)]
    else:
        rec = run_record(configs=[config("base", [] if case.endswith("compared") else rows)],
                         **kw)
    if case == "build only":
        rec.verdict = "BUILT"
    if case == "does not apply":
        rec.verdict, rec.exit_code, rec.configs = "NO-APPLY", 3, []
        rec.apply = ApplyRecord(False, "b" * 40, 2, [Rejection("block/fops.c", ["#1"])])
    assert mail_reply.tested_by(rec) is expected
    msg = parse(mail_reply.render(rec, tmp_path, ME))
    body = assert_plain_body(msg)
    assert b4_trailers(body) == ([f"Tested-by: {ME}"] if expected else [])
    if case == "does not apply":
        assert "Where it does not apply\n  - block/fops.c: #1\n" in body
    # No sender: the placeholder, which cannot receive mail, and no Tested-by.
    placeholder = parse(mail_reply.render(rec, tmp_path, None))
    assert str(placeholder["From"]) == "Your Name <your.name@example.invalid>"
    plain = assert_plain_body(placeholder)
    assert b4_trailers(plain) == [] and "Tested-by" not in plain.replace(
        "(No Tested-by line", "")
    assert ("(No Tested-by line: set mail_from" in plain) is expected


def test_the_reproduce_lines_are_the_command_again_in_a_shell(tmp_path):
    long = "guest_tests/test_blockdev_dontcache.py::" + "x" * 150
    command = ["orch", "test", "--offline-mode", "--mbox", "/home/me/it's a.mbox",
               "--run-dir", "/runs/r", "-j8", "--jobs=3", "--jobs", "2", "--rerun",
               "--config", "base", "--guest-test", long, "-k", "irq and not 'x y'",
               "--json", "/tmp/run.json", "--rerun-baseline", "--guest-test", "a" * 300,
               "--expect-fixed", "guest_tests/*"]
    want = ["test", "--offline-mode", "--mbox", "/home/me/it's a.mbox", "--config", "base",
            "--guest-test", long, "-k", "irq and not 'x y'", "--guest-test", "a" * 300,
            "--expect-fixed", "guest_tests/*"]
    assert mail_reply.reproduce_words(run_record(command=command)) == ["orch", *want]
    body = assert_plain_body(parse(mail_reply.render(run_record(command=command), tmp_path,
                                                     ME)))
    block = body.split("To run it again\n", 1)[1].split("\n\n", 1)[0]
    assert block.startswith("  orch test --offline-mode --mbox '/home/me/it'\"'\"'s a.mbox' ")
    # Pasted into a shell, the lines are the command's words again.
    script = "orch() { printf '%s\\0' \"$@\"; }\n" + block + "\n"
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == want
    for words in (["orch", "x"], ["orch", "test", "a" * 74], ["orch", "b" * 73, "c"],
                  ["orch", "Link:", "https://x.example/", "y" * 80 + ":", "z"]):
        lines = mail_reply.shell_lines(words, "  ", "    ")
        assert all(columns(line) <= mail_reply.WIDTH for line in lines), lines
        out = subprocess.run(["sh", "-c", "orch() { printf '%s\\0' \"$@\"; }\n"
                              + "\n".join(lines)], capture_output=True, check=True).stdout
        assert out.decode().split("\0")[:-1] == words[1:]


def test_hostile_text_adds_no_header_and_no_trailer(tmp_path):
    reply = cover_headers()
    reply["subject"] = f"Re: RE: re:[PATCH] {INJECT} {NASTY}"
    reply["from"] = {"name": f"Tal {INJECT}", "addr": "tz2294@columbia.edu"}
    reply["to"] = [{"name": NASTY, "addr": "a@x.example"},
                   {"name": "x", "addr": "evil@x.example>\r\nBcc: b@x.example"},
                   {"name": "y", "addr": 5}, "not a dict",
                   {"name": "Tess", "addr": "TESS@example.org"}]          # the sender
    reply["cc"] = [{"name": "A", "addr": "A@X.example"}]                  # To already
    reply["references"] = ["ok@x.example", "bad\r\nX-Evil: 1@x", 7, "<ok2@x.example>"]
    rows = [(f"guest_tests/t.py::test_{NASTY}", "PASS", "FAIL", "regressed",
             f"{TRAILERS}{NASTY}", False),
            (f"Reviewed-by: Evil <evil@x.example> {NASTY}", "PASS", "FAIL", "regressed",
             "Link: https://attacker.example", False)]
    splat = dict(SPLAT, title=f"Acked-by: Evil <evil@x.example> {NASTY}",
                 frames=["Signed-off-by: Evil <evil@x.example>", NASTY, 7])
    rec = run_record("FAIL", 1, [config("base", rows, "FAIL", [splat])],
                     series=v3_series(reply), error=f"Tested-by: Evil <evil@x.example> {NASTY}",
                     command=["orch", "test", "Reviewed-by: Evil <evil@x.example>",
                              "Link:", "https://attacker.example/", NASTY])
    rec.series["subject"] = INJECT
    rec.tree.label = f"Link: https://attacker.example {NASTY}"
    data = mail_reply.render(rec, tmp_path, "Tess <tess@example.org>")
    msg = parse(data)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert not re.search(rb"(?im)^(bcc|x-evil):", data)
    assert len(msg.keys()) == 12 and not msg.defects
    assert addrs(msg, "To") == ["tz2294@columbia.edu"]
    assert addrs(msg, "Cc") == ["a@x.example"]                  # once; not the sender
    assert str(msg["To"]).startswith("\"Tal x Bcc: evil@attacker.example X-Evil: 1\"")
    subject = str(msg["Subject"])
    assert subject.startswith("Re: [PATCH] x Bcc: evil@attacker.example X-Evil: 1 [31mred")
    assert "Re: Re" not in subject and "\x1b" not in subject and "\u202e" not in subject
    assert msg["References"] == f"<ok@x.example> <ok2@x.example> <{V3_COVER}>"
    body = assert_plain_body(msg)
    assert b4_trailers(body) == []
    assert "      | Reviewed-by: Evil <evil@attacker.example>\n" in body
    assert "      | Link: https://attacker.example\n" in body
    assert "      | Signed-off-by: Evil <evil@x.example>\n" in body
    # The commands words, quoted: the shell sees them as the run's own.
    block = body.split("To run it again\n", 1)[1].split("\n\n", 1)[0]
    out = subprocess.run(["sh", "-c", "orch() { printf '%s\\0' \"$@\"; }\n" + block],
                         capture_output=True, check=True).stdout
    clean = [re.sub("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e]", "", w)
             for w in rec.command[1:]]
    assert out.decode().split("\0")[:-1] == clean and clean[-1].startswith("[31mred2Jevil ")


def test_re_re_and_a_long_references_chain(tmp_path):
    reply = cover_headers()
    reply["subject"] = "Re: AW: re:  Re[2]: [PATCH v3 1/2] mm: x"
    reply["references"] = [f"r{i}@x.example" for i in range(40)]
    msg = parse(mail_reply.render(run_record(series=v3_series(reply)), tmp_path, ME))
    assert str(msg["Subject"]) == "Re: [PATCH v3 1/2] mm: x"
    refs = re.findall(r"<([^>]+)>", msg["References"])
    assert refs == ["r0@x.example", *[f"r{i}@x.example" for i in range(32, 40)], V3_COVER]
    assert len(refs) == mail_reply.MAX_REFERENCES
    assert mail_reply.reply_subject("Re:") == "Re: (no subject)"


@pytest.mark.parametrize("change, message", [
    (lambda r: r.series.pop("reply"), "no headers of the series' mail are kept"),
    (lambda r: r.series.update(reply=None), "no headers of the series' mail are kept"),
    (lambda r: setattr(r, "series", None), "no headers of the series' mail are kept"),
    (lambda r: r.series.update(source="range", range="v7.2..fix"), "a --range run"),
    (lambda r: r.series["reply"].update(msgid="a b\r\nX: y@z"),
     "series.reply.msgid is not a Message-ID"),
    (lambda r: r.series["reply"].update(msgid=["x@y"]), "series.reply.msgid is not a Message-ID"),
    (lambda r: r.series["reply"].update(msgid=None, references={"a": 1}, to="x", cc={}),
     "series.reply.msgid is not a Message-ID"),
    (lambda r: setattr(r, "bisect", BisectRecord(
        mode="test", terms=["good", "bad"], good="a", bad="b", config="base", tests=[],
        repeat=1, commits=2, max_steps=2)), "a bisect or check run"),
    (lambda r: (setattr(r, "state", RunState.RUNNING), setattr(r, "exit_code", None)),
     "the run did not finish (its record says running)"),
    (lambda r: setattr(r, "verdict", "INFRA-ERROR"), "the run ended INFRA-ERROR"),
    (lambda r: setattr(r, "verdict", "INTERRUPTED"), "the run ended INTERRUPTED"),
])
def test_what_cannot_be_answered_is_one_line_of_bad_input(tmp_path, change, message):
    rec = run_record()
    change(rec)
    with pytest.raises(BadInput) as e:
        mail_reply.render(rec, tmp_path, ME)
    assert str(e.value).startswith(f"{tmp_path / 'run.json'}: {message}")
    assert "\n" not in str(e.value)


def test_damaged_reply_headers_are_left_out(tmp_path):
    reply = dict(cover_headers(), references={"a": 1}, to="x", cc=[None, 3, {"addr": []}],
                 subject=["not", "text"])
    msg = parse(mail_reply.render(run_record(series=v3_series(reply)), tmp_path, ME))
    assert msg["References"] == f"<{V3_COVER}>" and msg["Cc"] is None
    assert addrs(msg, "To") == ["tz2294@columbia.edu"]
    assert str(msg["Subject"]) == "Re: ['not', 'text']"


def test_the_author_replying_to_their_own_series_writes_to_the_list(tmp_path):
    msg = parse(mail_reply.render(run_record(), tmp_path, AUTHOR))
    assert addrs(msg, "To") == ["willy@infradead.org"]
    assert "tz2294@columbia.edu" not in addrs(msg, "Cc") and len(addrs(msg, "Cc")) == 20
    assert b4_trailers(msg.get_content()) == [f"Tested-by: {AUTHOR}"]


def test_a_bad_sender_is_bad_input():
    for bad in ("nobody", "a@b, c@d.example", "x <y@z>"):
        with pytest.raises(BadInput, match="is not one mail address"):
            mail_reply.sender(bad)
    assert str(mail_reply.sender("Jörg Rödel <j@x.example>")) == "Jörg Rödel <j@x.example>"


def test_write_puts_reply_eml_in_the_run_directory_and_follows_no_link(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("mine\n")
    (rd / "reply.eml").symlink_to(outside)
    path = mail_reply.write(run_record(), rd, ME)
    assert path == rd / "reply.eml" and path.is_file() and not path.is_symlink()
    assert outside.read_text() == "mine\n"
    assert parse(path.read_bytes())["In-Reply-To"] == f"<{V3_COVER}>"
    assert [p.name for p in rd.iterdir()] == ["reply.eml"]
    dest = mail_reply.write(run_record(), rd, ME, tmp_path / "elsewhere.eml")
    assert dest == tmp_path / "elsewhere.eml" and dest.read_bytes().startswith(b"From: ")
    with pytest.raises(BadInput, match="cannot write"):
        mail_reply.write(run_record(), rd, ME, tmp_path / "no" / "such" / "dir.eml")


# -- the sender: mail_from, else git's identity ------------------------------------

def test_the_sender_is_mail_from_else_gits_identity(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "config.toml"
    monkeypatch.setenv("ORCH_CONFIG", str(cfg))
    cfg.write_text("")
    assert settings.mail_sender(settings.resolve({})) is None
    subprocess.run(["git", "config", "--global", "user.name", "Doe, Jane"], check=True)
    subprocess.run(["git", "config", "--global", "user.email", "jane@x.example"], check=True)
    assert settings.mail_sender(settings.resolve({})) == '"Doe, Jane" <jane@x.example>'
    cfg.write_text('mail_from = "Tess Ter <tess@example.org>"\n')
    s = settings.resolve({})
    assert settings.mail_sender(s) == ME and s.effective["mail_from"].source == str(cfg)
    for bad in ('mail_from = "nobody"', 'mail_from = "a@b.example, c@d.example"',
                'mail_from = "A\\n<a@b.example>"', "mail_from = 3"):
        cfg.write_text(bad + "\n")
        with pytest.raises(BadInput) as e:
            settings.resolve({})
        assert str(e.value).startswith(f"{cfg}: mail_from must be one mail address")


# -- as b4 reads it: real `b4 am` on a loopback lore thread --------------------------

def b4_am(env: dict, lore: Path, msgid: str, out: Path) -> tuple[str, str]:
    """`b4 am msgid` against a loopback lore serving `lore`: (b4's output,
    the am-ready mbox)."""
    with LoreServer(lore) as srv:
        r = subprocess.run([B4, "--no-stdin", "-c", f"b4.midmask={srv.midmask}",
                            "-c", "b4.attestation-policy=off", "am", "-o", str(out),
                            "-n", "series", msgid], env=env, capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr, (out / "series.mbx").read_text()


def thread_with(tmp_path: Path, name: str, reply: bytes | None) -> Path:
    lore = tmp_path / name
    lore.mkdir()
    shutil.copy(V3_MBOX, lore)
    if reply is not None:
        (lore / "reply.eml").write_bytes(reply)
    return lore


def picked_up(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("+ ")]


def test_b4_takes_the_tested_by_line_onto_both_patches(tmp_path, b4_env):
    reply = mail_reply.render(run_record(), tmp_path, ME)
    out, mbx = b4_am(b4_env, thread_with(tmp_path, "lore", reply), V3_COVER, tmp_path / "o")
    assert "Analyzing 8 messages in the thread" in out              # the reply is in it
    assert picked_up(out) == [f"+ Tested-by: {ME}", f"+ {JAN_RB}", f"+ Tested-by: {ME}"]
    assert re.search(r"1/2\] filemap: .*\n    \+ Tested-by: ", out)   # on each patch
    assert mbx.count(f"\nTested-by: {ME}\n") == 2 and "trailers ignored" not in out


def test_b4_takes_nothing_from_a_reply_without_tested_by(tmp_path, b4_env):
    rows = [(f"guest_tests/t.py::test_x {TRAILERS}", "PASS", "FAIL", "regressed",
             f"Tested-by: {ME}\n{TRAILERS}", False)]
    rec = run_record("FAIL", 1, [config("base", rows, "FAIL")],
                     error=f"Tested-by: {ME}; Reviewed-by: {ME}")
    reply = mail_reply.render(rec, tmp_path, ME)
    assert b"| Tested-by: " in reply
    out, mbx = b4_am(b4_env, thread_with(tmp_path, "lore", reply), V3_COVER, tmp_path / "o")
    assert "Analyzing 8 messages in the thread" in out              # threaded, and...
    assert picked_up(out) == [f"+ {JAN_RB}"] and "trailers ignored" not in out
    assert "Tested-by" not in mbx and "evil" not in mbx and "attacker" not in mbx
    # Control: the thread without the reply gives the same patches.
    _, alone = b4_am(b4_env, thread_with(tmp_path, "plain", None), V3_COVER, tmp_path / "p")
    assert re.sub(r"(?m)^(Link|Message-Id):.*\n", "", mbx) == \
        re.sub(r"(?m)^(Link|Message-Id):.*\n", "", alone)


def test_a_reply_with_a_broken_in_reply_to_is_not_in_the_thread(tmp_path, b4_env):
    reply = mail_reply.render(run_record(), tmp_path, ME)
    broken = re.sub(rb"<20260227-blk-dontcache-v3-0-", b"<nowhere-", reply)
    assert broken != reply and parse(broken)["In-Reply-To"].startswith("<nowhere-")
    out, mbx = b4_am(b4_env, thread_with(tmp_path, "lore", broken), V3_COVER, tmp_path / "o")
    assert "Analyzing 7 messages in the thread" in out
    assert picked_up(out) == [f"+ {JAN_RB}"] and "Tested-by" not in mbx


# -- a real run on the stand-in tree, from its mailed thread ---------------------------

def mailed_series(repo: Path, tmp_path: Path) -> Path:
    """A thread as `git format-patch --thread --cover-letter` mails it: a
    cover letter and one patch that drops the mark that fails the guest."""
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    (work / "g.c").write_text("const char g[] = \"ok\";\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "mini: stop failing the guest\n\nSigned-off-by: T "
        "<t@example.org>")
    out = subprocess.run(
        ["git", "-C", str(work), "format-patch", "--stdout", "-1", "--thread=shallow",
         "--cover-letter", "--to", "Maint Ainer <maint@example.org>",
         "--cc", "list@vger.example.org", "--cc", "Tess Ter <tess@example.org>"],
        check=True, capture_output=True, env={**os.environ, "GIT_AUTHOR_NAME": "T",
                                              "GIT_AUTHOR_EMAIL": "t@example.org",
                                              "GIT_COMMITTER_NAME": "T",
                                              "GIT_COMMITTER_EMAIL": "t@example.org"}
    ).stdout.replace(b"*** SUBJECT HERE ***", b"mini: a fix")
    mbox = tmp_path / "mailed.mbox"
    mbox.write_bytes(out)
    return mbox


def test_a_real_run_replies_to_its_mailed_thread(tmp_path, env, mini, monkeypatch, b4_env):
    for k in ("ORCH_CACHE", "HOME"):
        monkeypatch.setenv(k, env[k])
    standin_guest.install(monkeypatch)
    (mini / "g.c").write_text('const char g[] = "ORCH-GUEST:FAIL";\n')
    git(mini, "add", "g.c")
    git(mini, "commit", "-q", "-m", "baseline fails the guest test")
    mbox = mailed_series(mini, tmp_path)
    cover = re.search(rb"(?m)^Message-I[dD]: <([^>]+)>", mbox.read_bytes()).group(1).decode()
    rd = tmp_path / "run"
    assert cli.main(["test", "--offline-mode", "--mbox", str(mbox), "--tree", str(mini),
                     "--run-dir", str(rd), "--config", "base", "--guest-test", IRQ_TEST,
                     "--expect-fixed", IRQ_TEST]) == 0
    data = run_json(rd)
    assert data["series"]["reply"]["msgid"] == cover
    assert data["series"]["reply"]["to"] == [{"name": "Maint Ainer",
                                              "addr": "maint@example.org"}]
    rec = record.read(rd / "run.json")
    path = mail_reply.write(rec, rd, ME)
    msg = parse(path.read_bytes())
    assert addrs(msg, "To") == ["t@example.org"]
    assert addrs(msg, "Cc") == ["maint@example.org", "list@vger.example.org"]
    assert str(msg["Subject"]) == "Re: [PATCH 0/1] mini: a fix"
    assert msg["In-Reply-To"] == f"<{cover}>" and msg["References"] == f"<{cover}>"
    body = assert_plain_body(msg)
    assert ("Fixed by the series (fail without it, pass with it)\n"
            "  - guest_tests/test_blockdev_dontcache.py::test_dontcache_write_irq_completion_evicts\n"
            "    (FAIL -> PASS, fixed)\n\n") in body
    assert "    baseline  0.1-mini, built in 0s, tests 1 fail\n" in body
    assert body.endswith(f"\n\nTested-by: {ME}\n\n-- \norch 0.1.0, run started "
                         f"{data['started']}\n")
    assert b4_trailers(body) == [f"Tested-by: {ME}"]
    lore = tmp_path / "lore"
    lore.mkdir()
    shutil.copy(mbox, lore / "mailed.mbox")
    shutil.copy(path, lore / "reply.eml")
    out, mbx = b4_am(b4_env, lore, cover, tmp_path / "o")
    assert f"+ Tested-by: {ME}" in out and f"\nTested-by: {ME}\n" in mbx
    # The reproduce lines run the same test again (the stand-in's "orch").
    block = body.split("To run it again\n", 1)[1].split("\n\n", 1)[0]
    words = subprocess.run(["sh", "-c", "orch() { printf '%s\\0' \"$@\"; }\n" + block],
                           capture_output=True, check=True).stdout.decode().split("\0")[:-1]
    assert words == ["test", "--offline-mode", "--mbox", str(mbox), "--tree", str(mini),
                     "--config", "base", "--guest-test", IRQ_TEST, "--expect-fixed",
                     IRQ_TEST]


# -- `orch report RUN --mail`, once commands/report.py has the flag ------------------
# PENDING, for the lead: rename to test_orch_report_mail once `orch report RUN
# --mail [FILE]` is wired (mail_reply.write, `-`: mail_reply.render to stdout,
# settings.mail_sender for the sender). Not collected until then.

def test_orch_report_mail(tmp_path, env):
    rd = tmp_path / "run"
    rd.mkdir()
    run_record().write(rd / "run.json")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'mail_from = "{ME}"\n')
    e = {**env, "ORCH_CONFIG": str(cfg)}
    r = orch(e, tmp_path, "report", str(rd), "--mail")
    assert r.returncode == 0, r.stderr                    # the run's own exit status
    assert str(rd / "reply.eml") in r.stdout
    msg = parse((rd / "reply.eml").read_bytes())
    assert msg["In-Reply-To"] == f"<{V3_COVER}>" and str(msg["From"]) == ME
    r = orch(e, tmp_path, "report", str(rd), "--mail", "-")
    assert r.returncode == 0, r.stderr
    msg = parse(r.stdout.encode())                        # the reply alone on stdout
    assert msg["In-Reply-To"] == f"<{V3_COVER}>" and b4_trailers(msg.get_content()) == [
        f"Tested-by: {ME}"]
    r = orch(e, tmp_path, "report", str(rd), "--mail", str(tmp_path / "out.eml"))
    assert r.returncode == 0 and parse((tmp_path / "out.eml").read_bytes())["From"]
    data = run_json(rd)
    del data["series"]["reply"]
    (rd / "run.json").write_text(json.dumps(data))
    r = orch(e, tmp_path, "report", str(rd), "--mail")
    assert r.returncode == 2
    assert one_error_line(r.stderr) == (
        f"orch: error: {rd / 'run.json'}: no headers of the series' mail are kept (a run of "
        "an older orch, an mbox without Message-IDs, or the mail could not be read): "
        "nothing to reply to")
