"""One lore handling (orchestrator/source/lore.py): the base URL every command
hands to b4, the Message-ID forms people paste, and what b4's words mean
when it got no thread (the real b4 against real sockets: test_lore_failures.py).
"""

from __future__ import annotations

import pytest

from orchestrator.core.errors import BadInput
from orchestrator.source import intake, lore


# -- base_url -----------------------------------------------------------------

@pytest.mark.parametrize("given, base", [
    ("https://lore.kernel.org", "https://lore.kernel.org"),
    ("https://lore.kernel.org/", "https://lore.kernel.org"),
    # examples/nightly.toml's form: b4 would ask /all/all/<id> first.
    ("https://lore.kernel.org/all", "https://lore.kernel.org"),
    ("https://lore.kernel.org/all/", "https://lore.kernel.org"),
    ("  http://127.0.0.1:8080/all//  ", "http://127.0.0.1:8080"),
    # A mirror under a path keeps it: only the /all inbox is orch's to add.
    ("https://mirror.example.org/lore/", "https://mirror.example.org/lore"),
])
def test_base_url_forms(given, base):
    assert lore.base_url(given) == base
    assert lore.base_url(base) == base          # and it is a fixed point


@pytest.mark.parametrize("given, why", [
    ("lore.kernel.org", "no scheme: give https://lore.kernel.org (or http:// for a mirror"),
    ("127.0.0.1:8080", "no scheme: give https://127.0.0.1:8080"),
    ("ftp://lore.kernel.org", "not an http(s) URL (scheme 'ftp')"),
    ("https://", "no host"),
    ("https:///all", "no host"),
    ("https://user:secret@lore.example.org", "credentials in a lore URL"),
    ("https://lore.kernel.org/all/?q=s:foo", "no ?query or #fragment"),
    ("https://lore.kernel.org/#top", "no ?query or #fragment"),
    ("https://lore.kernel.org:99999", "not a URL"),
    ("https://lore kernel.org", "not a URL"),
    ("https://lore.kernel.org/\x1b[2J", "not a URL"),
    ("", "not a URL"),
])
def test_base_url_refuses(given, why):
    with pytest.raises(BadInput) as e:
        lore.base_url(given, "--lore-url")
    assert str(e.value).startswith("--lore-url ") and why in str(e.value)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


# -- message_id ---------------------------------------------------------------

ID = "20260227-blk-dontcache-v3-2-cd309ccd5868@columbia.edu"


@pytest.mark.parametrize("given", [
    ID, f"<{ID}>", f"  <{ID}>\n", f"id:{ID}", f"mid:{ID}", f"rfc822msgid:{ID}",
    ID.replace("@", "%40"), f"<{ID.replace('@', '%40')}>",
    f"https://lore.kernel.org/linux-mm/{ID}/",
    f"https://lore.kernel.org/linux-mm/{ID}",
    f"https://lore.kernel.org/linux-mm/{ID}/T/#t",
    f"https://lore.kernel.org/linux-block/{ID}/T/#m3c1e8b5d3a2c",
    f"https://lore.kernel.org/all/{ID}/t.mbox.gz",
    f"https://lore.kernel.org/all/{ID}/raw",
    f"https://lore.kernel.org/all/{ID}/",
    f"https://lore.kernel.org/r/{ID}",
    f"https://lore.kernel.org/all/{ID.replace('@', '%40')}/",
    f"http://127.0.0.1:8080/all/{ID}/",
    f"https://patch.msgid.link/{ID}",
])
def test_message_id_forms(given):
    assert lore.message_id(given) == ID
    assert intake.normalize_msgid(given) == ID   # the commands' older name


def test_a_quoted_plus_in_a_url_is_a_plus():
    assert lore.message_id("https://lore.kernel.org/all/a%2Bx@b/") == "a+x@b"


@pytest.mark.parametrize("given", [
    "../../etc/passwd", "a/b@c", "no-at-sign", "a b@c", "-oProxyCommand=x@y", "$(reboot)",
    "a@b\nX-Evil: 1", "", "<>", "https://lore.kernel.org/all/", "https://lore.kernel.org/",
    "ftp://lore.kernel.org/all/a@b/", "https://lore.kernel.org/all/a%2Fb@c/",
    "https://lore.kernel.org/all/-x@y/", "https://lore.kernel.org/all/%0a@b/",
])
def test_message_id_refuses(given):
    with pytest.raises(BadInput, match="not a Message-ID"):
        lore.message_id(given)


# -- what b4 said --------------------------------------------------------------

# What b4 0.16 printed for a server that accepts and never answers, copied
# from a real run: liblore waits 30 s for it, too long for a test to wait.
READ_TIMEOUT = (
    "Looking up nobody@example.org\n"
    "Request to http://127.0.0.1:33611 failed (HTTPConnectionPool(host='127.0.0.1', "
    "port=33611): Read timed out. (read timeout=30.0)), trying next host\n"
    "Could not retrieve thread: All hosts failed for http://127.0.0.1:33611/all/"
    "nobody%40example.org/t.mbox.gz: HTTPConnectionPool(host='127.0.0.1', port=33611): "
    "Read timed out. (read timeout=30.0)\n")


def test_failure_of_a_read_timeout():
    assert lore.failure(READ_TIMEOUT) == lore.Failure(lore.Trouble.NETWORK, "Read timed out")


def test_failure_without_a_lore_line_is_not_lore_s():
    assert lore.failure("No patches found.\n").trouble is lore.Trouble.OTHER
