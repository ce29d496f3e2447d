"""The nightly's discovery (orchestrator/nightly/discover.py): the real b4 against the
loopback lore (tests/lore_server.py), real git repositories, and real apt
against a small signed file:// repository (tests/fake_apt.py). Fast: no
kernel is downloaded, built or booted.

Each check has its control next to it: the same call with the one fact it
depends on changed (a revision hidden or shown, a date range moved, a
remote removed, a version added) gives the other answer.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from datetime import datetime, timezone
from urllib.parse import quote_plus

import pytest
from fake_apt import make_repo
from helpers import REPO, V3_COVER, git, orch, series
from lore_mails import day, post
from lore_server import LORE_DATA_DIR, LoreServer

from orchestrator.core.errors import Exit, OrchError
from orchestrator.nightly import discover
from orchestrator.nightly.night import SeriesRev
from orchestrator.source import debsrc

V1_PATCH = "20260218-blk-dontcache-v1-1-fad6675ef71f@columbia.edu"   # no cover letter
V2_COVER = "20260225-blk-dontcache-v2-0-70e7ac4f7108@columbia.edu"
CID = "20260218-blk-dontcache-338133dd045e"
KEY = f"change-id:{CID}"
TITLE = "block: enable RWF_DONTCACHE for block devices"
V1_IDS = ["eee8b86e19d48cf83d14838402b72213fe69f85d"]
V2_IDS = ["d17b13f7954133ed0599cc1e92202b287c4ccb01", "eee8b86e19d48cf83d14838402b72213fe69f85d"]
V3_IDS = ["6eaa7f7fb2a00d5379335cec4b3149681395a1cb", "83596022b45d8b99c226f53df50aabd4bbcdf2e5"]
JAN_RB = b"Reviewed-by: Jan Kara <jack@suse.cz>"


@pytest.fixture
def isolated(b4_env, monkeypatch):
    """b4 (started by discover) with no user config or cache."""
    for k, v in b4_env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def lore():
    """A loopback lore of its own (tests hide and show mails), "now" fixed
    a day after the last mail of the series."""
    with LoreServer(LORE_DATA_DIR, now=datetime(2026, 3, 3, 12, tzinfo=timezone.utc)) as srv:
        yield srv


def patch_ids(mbx) -> list[str]:
    out = subprocess.run(["git", "patch-id", "--stable"], input=mbx.read_bytes(),
                         capture_output=True, check=True).stdout.decode()
    return [line.split()[0] for line in out.splitlines()]


def lookup(tmp_path, lore, name: str, msgid: str) -> discover.Found:
    night = tmp_path / name
    night.mkdir()
    return discover.newest_revision(msgid, lore.url, night, night / "b4.log", 120)


# -- newest_revision: b4 am -c -------------------------------------------------

def test_v3_is_found_from_v2_once_it_is_posted(tmp_path, lore, isolated):
    v3_thread = lore.archive.hide_thread(V3_COVER)       # night 1: v3 not posted yet
    one = lookup(tmp_path, lore, "night1", V2_COVER)
    assert (one.key, one.msgid, one.version, one.change_id, one.title) == \
        (KEY, V2_COVER, 2, CID, TITLE)
    assert one.mbox.parent == tmp_path / "night1" and patch_ids(one.mbox) == V2_IDS
    # What b4 asked: the thread, then revisions by change-id since v2's day,
    # then code-review trailers by patch-id.
    asked = [(r.method, r.path, r.query) for r in lore.requests]
    assert asked[0] == ("GET", f"/all/{quote_plus(V2_COVER)}/t.mbox.gz", {})
    assert asked[1] == ("POST", "/all/", {"x": "m", "t": "1",
                                          "q": f'(nq:"change-id: {CID}") AND d:20260225..'})
    assert asked[2][2]["q"] == " OR ".join(f"patchid:{p}" for p in V2_IDS)

    lore.archive.show(*v3_thread)                        # night 2: v3 is on lore
    two = lookup(tmp_path, lore, "night2", V2_COVER)
    assert (two.key, two.msgid, two.version, two.change_id) == (KEY, V3_COVER, 3, CID)
    assert patch_ids(two.mbox) == V3_IDS
    assert JAN_RB in two.mbox.read_bytes()               # b4 collected the reply's R-b
    assert patch_ids(one.mbox) == V2_IDS                 # night 1's pin is its own file
    # b4's work directory is gone: the pinned mbox is all that stays.
    assert {p.name for p in (tmp_path / "night2").iterdir()} == {"b4.log", two.mbox.name}
    assert discover.series_rev(two, "tracked", tmp_path) == SeriesRev(
        KEY, TITLE, V3_COVER, 3, CID, "tracked", f"night2/{two.mbox.name}")


def test_a_series_without_cover_letter_moves_on_too(tmp_path, lore, isolated):
    v2_thread = lore.archive.hide_thread(V2_COVER)
    v3_thread = lore.archive.hide_thread(V3_COVER)
    one = lookup(tmp_path, lore, "a", V1_PATCH)
    # v1 is one patch and no cover: its msgid, and its change-id from the footer.
    assert (one.key, one.msgid, one.version) == (KEY, V1_PATCH, 1)
    assert patch_ids(one.mbox) == V1_IDS
    lore.archive.show(*v2_thread)                        # control: v2 appears, v3 not yet
    two = lookup(tmp_path, lore, "b", V1_PATCH)
    assert (two.key, two.msgid, two.version) == (KEY, V2_COVER, 2)
    assert patch_ids(two.mbox) == V2_IDS
    assert v3_thread


def test_unknown_msgid_is_an_error_not_a_series(tmp_path, lore, isolated):
    with pytest.raises(OrchError, match="unknown Message-ID"):
        lookup(tmp_path, lore, "x", "nobody@example.org")


# -- a series without change-id: b4 follows subject and sender -----------------

NO_CID_TITLE = "mini: counter"


@pytest.fixture
def counter(tmp_path, mini):
    """A series posted without b4 (no change-id): v1 and v2 by one sender,
    a "v3" with the same subject by someone else, and a v3 by the sender,
    each in its own thread; the two v3s start hidden."""
    data = tmp_path / "lore"
    data.mkdir()
    ids = {}
    for n, when in ((1, "2026-03-01"), (2, "2026-03-05"), (3, "2026-03-09")):
        mbox = series(mini, tmp_path, f"c{n}", [(NO_CID_TITLE, {"counter.c": f"int c = {n};\n"})])
        ids[n] = post(mbox, data / f"v{n}.mbox", name="counter", title=NO_CID_TITLE,
                      version=n, change_id=None, base=None, date=day(when))
    # The other sender's v3: same subject line, other From, a day earlier.
    other = tmp_path / "other"
    other.mkdir()
    mbox = series(mini, tmp_path, "o3", [(NO_CID_TITLE, {"counter.c": "int c = 99;\n"})])
    ids["other"] = post(mbox, other / "o.mbox", name="other", title=NO_CID_TITLE, version=3,
                        change_id=None, base=None, date=day("2026-03-08"))
    text = (other / "o.mbox").read_bytes().replace(
        b"From: Orch Tests <orch-tests@localhost>", b"From: Someone Else <else@example.org>")
    (data / "other.mbox").write_bytes(text)
    with LoreServer(data, now=day("2026-03-10")) as srv:
        hidden = srv.archive.hide_thread(ids[3]) + srv.archive.hide_thread(ids["other"])
        yield srv, ids, hidden


def test_without_change_id_revisions_are_found_by_subject_and_sender(tmp_path, counter,
                                                                     isolated):
    srv, ids, hidden = counter
    f = lookup(tmp_path, srv, "a", ids[1])
    assert (f.key, f.msgid, f.version, f.change_id) == (f"msgid:{ids[1]}", ids[2], 2, None)
    q = [r.q for r in srv.requests if r.q and "s:" in r.q]
    assert q == [f'((s:"{NO_CID_TITLE}" AND f:"orch-tests@localhost")) AND d:20260301..']
    # Someone else's "v3" of the same subject is not this series' revision...
    other = [m for m in hidden if m.startswith("other-")]
    srv.archive.show(*other)
    f = lookup(tmp_path, srv, "b", ids[1])
    assert (f.msgid, f.version) == (ids[2], 2)
    # ... the sender's own v3 is (the control: a v3 is followed when it is one).
    srv.archive.show(*hidden)
    f = lookup(tmp_path, srv, "c", ids[1])
    assert (f.key, f.msgid, f.version) == (f"msgid:{ids[1]}", ids[3], 3)


def test_search_groups_revisions_without_change_id(counter):
    srv, ids, hidden = counter
    found = discover.search(f's:"{NO_CID_TITLE}"', srv.url)
    # v1 and v2 are two threads but one series (same subject, same sender).
    assert [(f.key, f.msgid, f.version, f.change_id) for f in found] == \
        [(f"msgid:{ids[2]}", ids[2], 2, None)]
    srv.archive.show(*hidden)
    found = discover.search(f's:"{NO_CID_TITLE}"', srv.url)
    # The other sender's is a series of its own; the sender's v3 replaces v2.
    assert sorted((f.msgid, f.version) for f in found) == \
        sorted([(ids[3], 3), (ids["other"], 3)])


# -- search: lore's search endpoint --------------------------------------------

def test_search_finds_the_series_at_its_newest_revision(lore):
    q = f's:"{TITLE}"'
    found = discover.search(q, lore.url)
    assert found == [discover.Found(KEY, V3_COVER, 3, CID, TITLE)]
    # The request b4 itself sends (liblore's get_mbox_by_query, full threads).
    r = lore.requests[-1]
    assert (r.method, r.path, r.query) == ("POST", "/all/", {"x": "m", "t": "1", "q": q})
    hidden = lore.archive.hide_thread(V3_COVER)          # control: before v3 was posted
    assert discover.search(q, lore.url) == [discover.Found(KEY, V2_COVER, 2, CID, TITLE)]
    lore.archive.hide(*lore.archive.hide_thread(V2_COVER), *lore.archive.hide_thread(V1_PATCH))
    assert discover.search(q, lore.url) == []            # nothing posted: nothing found
    assert hidden


def test_search_that_matches_nothing_is_empty(lore):
    assert discover.search("s:nosuchword", lore.url) == []
    assert discover.search(f'nq:"change-id: {CID}x"', lore.url) == []
    assert discover.search(f'nq:"change-id: {CID}"', lore.url)      # control: the real one
    assert discover.search("dfn:nosuch/file.c", lore.url) == []
    assert discover.search("dfn:mm/filemap.c", lore.url)            # control
    with pytest.raises(OrchError) as e:
        discover.search("s:x", "http://127.0.0.1:9")                 # lore down: an error
    assert e.value.exit == Exit.INFRA


def hits(lore, q: str) -> list[tuple[int, str]]:
    return [(f.version, f.msgid) for f in discover.search(q, lore.url)]


def test_search_relative_dates_follow_the_servers_now(lore):
    # now: 2026-03-03 12:00 UTC. Replies to v3 1/2 ("dropbehind") came on
    # 03-02 17:37 and 03-03 10:39; Jan's reply to v3 2/2 (RWF_DONTCACHE) on
    # 03-02 09:13, v2's thread ended 02-27 00:44 (all UTC).
    assert hits(lore, "s:dropbehind AND d:1.day.ago..") == [(3, V3_COVER)]
    # N.days.ago is an instant (git's approxidate), not a day boundary:
    assert hits(lore, "s:RWF_DONTCACHE AND d:1.day.ago..") == []
    assert hits(lore, "s:RWF_DONTCACHE AND d:2.days.ago..") == [(3, V3_COVER)]
    lore.archive.now = datetime(2026, 4, 1, tzinfo=timezone.utc)     # a month on: nothing new
    assert hits(lore, "s:RWF_DONTCACHE AND d:2.days.ago..") == []
    assert hits(lore, "s:RWF_DONTCACHE AND d:5.weeks.ago..") == [(3, V3_COVER)]


def test_search_absolute_dates_and_boolean_operators(lore):
    assert hits(lore, "s:RWF_DONTCACHE AND d:20260218..20260219") == [(1, V1_PATCH)]
    assert hits(lore, 's:"v2 0/2" AND d:20260225..20260225') == [(2, V2_COVER)]
    assert hits(lore, 's:"v2 0/2" AND d:20260226..20260226') == []        # a day off
    assert hits(lore, f'nq:"change-id: {CID}" AND d:..20260220') == [(1, V1_PATCH)]
    assert hits(lore, "dfn:mm/filemap.c AND d:..20260226") == [(2, V2_COVER)]


@pytest.fixture
def two_series(lore, tmp_path, mini):
    """The archive with a second, unrelated series (its own change-id)."""
    mbox = series(mini, tmp_path, "ctr", [("mini: counter", {"counter.c": "int c;\n"})])
    data = tmp_path / "more"
    data.mkdir()
    post(mbox, data / "c.mbox", name="counter", title="mini: counter", version=1,
         change_id="20260301-counter-0123", base=None, date=day("2026-03-01"))
    from lore_server import split_mboxrd
    for raw in split_mboxrd((data / "c.mbox").read_bytes()):
        lore.archive.add(raw)
    return lore


def test_search_and_or(two_series):
    lore = two_series
    both = discover.search('s:RWF_DONTCACHE OR s:"mini: counter"', lore.url)
    assert [(f.key, f.version) for f in both] == [("change-id:20260218-blk-dontcache-338133dd045e",
                                                  3), ("change-id:20260301-counter-0123", 1)]
    assert discover.search('s:RWF_DONTCACHE AND s:"mini: counter"', lore.url) == []
    assert [f.key for f in discover.search('s:"mini: counter" AND NOT s:RWF_DONTCACHE',
                                           lore.url)] == ["change-id:20260301-counter-0123"]


# -- git trees ----------------------------------------------------------------

def commit(repo, name: str) -> str:
    (repo / f"{name}.c").write_text(f"int {name};\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", name)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_tree_moves_with_its_remote_and_is_stale_when_it_is_gone(tmp_path, mini):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    first = subprocess.run(["git", "-C", str(mini), "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert discover.git_tree_head(clone, "origin/main") == (first, None)
    moved = commit(mini, "moves")
    assert discover.git_tree_head(clone, "origin/main") == (moved, None)   # fetched
    moved = commit(mini, "again")
    assert discover.git_tree_head(clone, "refs/remotes/origin/main") == (moved, None)
    shutil.rmtree(mini)                                   # the remote is gone
    again, stale = discover.git_tree_head(clone, "origin/main")
    assert again == moved                                 # its last known commit...
    assert stale.startswith("git fetch origin failed: fatal: ") and str(mini) in stale
    assert "\n" not in stale                              # ... and one line saying why
    assert discover.git_tree_head(clone, "main") == (first, None)   # a local branch: no fetch
    with pytest.raises(OrchError) as e:
        discover.git_tree_head(clone, "origin/nosuch")
    assert e.value.exit == Exit.BAD_INPUT


def test_an_unreachable_remote_by_url(tmp_path, mini):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(mini), str(clone)], check=True)
    head = commit(clone, "local")
    git(clone, "remote", "add", "far", "http://127.0.0.1:9/linux.git")
    git(clone, "update-ref", "refs/remotes/far/master", head)
    commit_, stale = discover.git_tree_head(clone, "far/master", timeout=60)
    assert commit_ == head and stale.startswith("git fetch far failed: fatal: unable to access")


def test_the_remote_a_ref_names():
    remotes = ["origin", "team", "team/mirror"]
    assert discover._remote_of("origin/main", remotes) == "origin"
    assert discover._remote_of("refs/remotes/origin/main", remotes) == "origin"
    assert discover._remote_of("team/mirror/for-next", remotes) == "team/mirror"
    assert discover._remote_of("team/for-next", remotes) == "team"
    assert discover._remote_of("origin", remotes) == "origin"
    assert discover._remote_of("main", remotes) is None
    assert discover._remote_of("v7.2", remotes) is None
    assert discover._remote_of("originals/x", remotes) is None


# -- Debian versions ----------------------------------------------------------

def test_highest_version_is_dpkgs_order_not_texts():
    tricky = ["7.2.13-1", "7.2.13-1+b1", "7.2.9-2", "7.2.13~rc1-1"]
    for order in itertools.permutations(tricky):
        assert discover.highest_version(list(order)) == "7.2.13-1+b1"
    assert discover.highest_version(["7.2.9-2", "7.2.13~rc1-1"]) == "7.2.13~rc1-1"
    assert discover.highest_version(["7.2.13~rc1-1", "7.2.13-1"]) == "7.2.13-1"
    assert discover.highest_version(["7.2.12-1~bpo13+1", "7.2.12-1"]) == "7.2.12-1"
    assert discover.highest_version(["7.2.13-1", "1:6.1.1-1"]) == "1:6.1.1-1"   # epoch
    assert max(tricky) == "7.2.9-2"                       # what text order would say
    with pytest.raises(ValueError):
        discover.highest_version([])
    with pytest.raises(ValueError):
        discover.highest_version(["7.2.13-1", "7.2 13"])


PKG = "linux-source-7.2"


@pytest.fixture
def debian(tmp_path, monkeypatch):
    """Point debsrc at a fake signed mirror; returns a function that
    (re)creates it with the given suites."""
    n = itertools.count()

    def mirror(suites, sources=None):
        url, keyring = make_repo(tmp_path / f"mirror{next(n)}", PKG, suites, sources)
        monkeypatch.setenv("ORCH_DEBIAN_MIRROR", url)
        monkeypatch.setattr(debsrc, "KEYRING", str(keyring))
        return keyring
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    return mirror


def test_newest_debian_version_across_the_configured_suites(tmp_path, debian):
    debian({"sid": ["7.2.13~rc1-1", "7.2.9-2"], "trixie-backports": ["7.2.13-1", "7.2.13-1+b1"],
            "experimental": ["7.3.1-1"]})
    cache = tmp_path / "cache"
    assert discover.newest_debian_version(PKG, ("sid", "trixie-backports"), cache) == \
        "7.2.13-1+b1"
    assert discover.newest_debian_version(PKG, ("sid",), cache) == "7.2.13~rc1-1"
    # experimental has a higher one, and counts only when configured:
    assert discover.newest_debian_version(PKG, ("sid", "experimental"), cache) == "7.3.1-1"
    with pytest.raises(OrchError) as e:
        discover.newest_debian_version("linux-source-6.1", ("sid",), cache)
    assert e.value.exit == Exit.BAD_INPUT and "offers no linux-source-6.1" in str(e.value)
    # The next night the suite has moved on: the same private apt state sees it.
    debian({"sid": ["7.2.14-1"]})
    assert discover.newest_debian_version(PKG, ("sid",), cache) == "7.2.14-1"
    # ORCH_CACHE is where it keeps apt's lists when no cache is given.
    assert discover.newest_debian_version(PKG, ("sid",)) == "7.2.14-1"
    assert list((tmp_path / "cache" / "trees").glob(".apt-*"))


def test_apt_checks_the_mirrors_signature(tmp_path, debian, monkeypatch):
    debian({"sid": ["7.2.13-1"]})
    wrong = make_repo(tmp_path / "other-key", "unrelated", {"sid": ["1.0-1"]})[1]
    monkeypatch.setattr(debsrc, "KEYRING", str(wrong))
    with pytest.raises(OrchError, match="apt-get update"):
        discover.newest_debian_version(PKG, ("sid",), tmp_path / "c")


def test_each_debian_version_is_a_tree_of_its_own(tmp_path, debian, monkeypatch):
    source = {v: {"Makefile": f"VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = {v[4:6]}\n"}
              for v in ("7.2.13-1", "7.2.14-1")}
    debian({"sid": ["7.2.13-1"]}, source)
    cache = tmp_path / "cache"
    # What `orch test` does: the default tree, the version the suite has now.
    first = debsrc.import_tree(PKG, ("sid",), cache=cache)
    assert (first.path, first.version) == (cache / "trees" / PKG, "7.2.13-1")
    debian({"sid": ["7.2.13-1", "7.2.14-1"]}, source)
    newest = discover.newest_debian_version(PKG, ("sid",), cache)
    assert newest == "7.2.14-1"
    second = debsrc.import_tree(PKG, ("sid",), cache=cache, version=newest)
    assert second.path == cache / "trees" / f"{PKG}@7.2.14-1" and second.version == newest
    assert "SUBLEVEL = 14" in (second.path / "Makefile").read_text()
    assert "SUBLEVEL = 13" in (first.path / "Makefile").read_text()   # untouched

    def no_download(*a, **k):
        raise AssertionError("downloaded again")
    monkeypatch.setattr(debsrc, "download_deb", no_download)
    # Each is imported once: asked again, by version or not, nothing is fetched.
    assert debsrc.import_tree(PKG, ("sid",), cache=cache, version="7.2.13-1").path == first.path
    assert debsrc.import_tree(PKG, ("sid",), cache=cache, version=newest).path == second.path
    assert debsrc.import_tree(PKG, ("sid",), cache=cache).path == first.path
    with pytest.raises(AssertionError, match="downloaded again"):   # control: a new one is
        debsrc.import_tree(PKG, ("sid",), cache=cache, version="7.2.15-1")


def test_a_search_answer_that_inflates_without_end_is_refused():
    """A lore (or a mirror) whose search answers with a gzip bomb: refused
    in one error once past the cap, never inflated whole (the old code
    held all of it). The control: the same server's small answer is read."""
    import gzip
    import http.server
    import threading
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join([c.compress(b"\0" * (1 << 20)) for _ in range(discover.MAX_SEARCH >> 19)]
                    + [c.flush()])
    assert len(bomb) < 1 << 20
    small = gzip.compress(b"From x\nSubject: [PATCH] a\nMessage-ID: <a@b>\n\nbody\n")
    answer = {"body": bomb}

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(OrchError) as e:
            discover.search("s:anything", url)
        assert e.value.exit == Exit.INFRA
        assert "more than 64 MiB once decompressed" in str(e.value)
        answer["body"] = small
        (found,) = discover.search("s:anything", url)      # read: its one patch
        assert found.msgid == "a@b"
    finally:
        srv.shutdown()


# -- one lore handling: the base URL, and what no lore is ----------------------

def test_search_takes_the_lore_url_in_every_form(lore):
    """`/all/` is the inbox orch adds: a base that names it already must not
    send the search to /all/all/ (the loopback lore, like lore, finds
    nothing there; a NIGHTLY.toml's URL was stripped, a caller's was not)."""
    q = f's:"{TITLE}"'
    want = [discover.Found(KEY, V3_COVER, 3, CID, TITLE)]
    for url in (lore.url, f"{lore.url}/", f"{lore.url}/all", f"{lore.url}/all/"):
        assert discover.search(q, url) == want, url
        assert lore.requests[-1].path == "/all/"


def test_search_against_no_lore_says_why(lore):
    with pytest.raises(OrchError) as e:
        discover.search("s:x", "http://lore.invalid/all/")
    assert e.value.exit == Exit.INFRA
    assert str(e.value).startswith("lore unreachable at http://lore.invalid: ")


@pytest.fixture
def no_lore(tmp_path, mini, b4_env):
    """NIGHTLY.toml whose lore cannot be resolved (RFC 6761: .invalid never
    is), one tracked series, the stand-in tree; orch's environment."""
    toml = tmp_path / "nightly.toml"
    toml.write_text('lore_url = "http://lore.invalid/all/"\nconfigs = ["base"]\n'
                    f'[[series]]\nmsgid = "{V3_COVER}"\n'
                    f'[[tree]]\npath = "{mini}"\nref = "main"\nlabel = "mini"\n')
    env = {**b4_env, "PYTHONPATH": str(REPO), "ORCH_CACHE": str(tmp_path / "cache")}
    return toml, env


def _no_lore_problem(problems: list[str]) -> None:
    """The reason a night records for a series lore could not be asked about."""
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"tracked: {V3_COVER}: lore unreachable at "
                                  "http://lore.invalid: "), problems
    assert "unknown Message-ID" not in problems[0]


def test_orch_plan_records_no_lore_as_unreachable(tmp_path, no_lore):
    toml, env = no_lore
    r = orch(env, tmp_path, "plan", str(toml), "--out", str(tmp_path / "plan"))
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    _no_lore_problem(plan["problems"])
    assert plan["lore_url"] == "http://lore.invalid" and plan["series"] == []


def test_orch_nightly_records_no_lore_as_unreachable(tmp_path, no_lore):
    toml, env = no_lore
    out = tmp_path / "out"
    r = orch(env, tmp_path, "nightly", str(toml), "--out", str(out), "--night", "2026-11-27")
    assert r.returncode == 5, r.stderr           # the night produced no result
    night = json.loads((out / "nights" / "2026-11-27" / "night.json").read_text())
    _no_lore_problem(night["plan"]["problems"])
    errors = [c["text"] for c in night["changes"] if c["kind"] == "error"]
    _no_lore_problem(errors)
    assert "lore unreachable at http://lore.invalid" in " ".join(r.stdout.split())
