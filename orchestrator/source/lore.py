"""Lore as every command sees it: its base URL, a Message-ID as people paste
it, and what b4's failure to get a thread means.

One place, so that `orch test`, `orch bisect`, the nightly and `orch plan`
read the same text the same way: `--lore-url https://lore.kernel.org/all`
(examples/nightly.toml's form) must not make b4 ask for /all/all/<id>, and
"no network" must never read as "no such message".
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.sanitize import clean

DEFAULT = "https://lore.kernel.org"


def base_url(text: str, what: str = "lore URL") -> str:
    """The lore base orch hands to b4 and to its own searches: http(s), a
    host, no last `/` and no last `/all` (orch adds `/all/<id>` itself).

    A URL without a scheme is refused, not completed: a mirror may speak
    http or https, and a wrong guess would surface minutes later as "lore
    unreachable" (a nightly's exit 5) for what is a typo; the URL also goes
    into run.json and every reproduce line, so it stays what the user wrote.
    Credentials in the URL are refused for the same record's sake."""
    s = text.strip()
    why = _broken(s)
    if why:
        raise BadInput(f"{what} {clean(text, 100)!r}: {why}")
    s = s.rstrip("/")
    while s.endswith("/all"):
        s = s.removesuffix("/all").rstrip("/")
    return s


def _broken(s: str) -> str | None:
    if not s or not s.isprintable() or any(c.isspace() for c in s):
        return "not a URL"
    if "://" not in s:
        return f"no scheme: give https://{s} (or http:// for a mirror without TLS)"
    try:
        u = urlsplit(s)
        _ = u.port   # an out-of-range or non-numeric port raises here
    except ValueError as e:
        return f"not a URL ({e})"
    if u.scheme.lower() not in ("http", "https"):
        return f"not an http(s) URL (scheme {u.scheme!r})"
    if not u.hostname:
        return "no host"
    if "@" in u.netloc:
        return "credentials in a lore URL would be recorded in run.json: use a mirror without them"
    if u.query or u.fragment or s.endswith(("?", "#")):
        return "a lore base URL has no ?query or #fragment"
    return None


# What `b4 am` and public-inbox accept as a Message-ID, and nothing that
# could act as an option, a path or a header once handed on.
_MSGID = re.compile(r"[\x21-\x7e]+@[\x21-\x7e]+")
_PREFIXES = ("id:", "mid:", "rfc822msgid:")


def message_id(text: str) -> str:
    """The bare Message-ID in any form people paste: `id@host`, `<id@host>`,
    `id:...` (notmuch, lei), `mid:...` (RFC 2392), `id%40host`, and the URL
    of a message on lore or any public-inbox (`.../linux-mm/<id>/`,
    `.../all/<id>/`, `.../r/<id>`, a thread `.../<id>/T/#t`, `.../<id>/raw`,
    `.../<id>/t.mbox.gz`; the first path part holding an `@` is the id).
    A URL's host is not kept: --lore-url says where to look, whatever page
    the id was copied from."""
    s = text.strip()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s):
        s = _from_url(s, text)
    else:
        for prefix in _PREFIXES:
            if s.lower().startswith(prefix):
                s = s[len(prefix):].strip()
                break
        s = s.removeprefix("<").removesuffix(">")
        if "@" not in s and "%40" in s.lower():
            s = unquote(s)
    if not _MSGID.fullmatch(s) or "/" in s or s.startswith("-") or "<" in s or ">" in s:
        raise BadInput(f"not a Message-ID: {clean(text, 200)!r}")
    return s


def _from_url(s: str, text: str) -> str:
    try:
        u = urlsplit(s)
    except ValueError:
        raise BadInput(f"not a Message-ID: {clean(text, 200)!r}")
    if u.scheme.lower() not in ("http", "https"):
        raise BadInput(f"not a Message-ID: {clean(text, 200)!r} (not an http(s) URL)")
    for part in u.path.split("/"):
        part = unquote(part)
        if "@" in part:
            return part
    raise BadInput(f"not a Message-ID: {clean(text, 200)!r} (no <id>@<host> in its path)")


class Trouble(enum.Enum):
    """Why b4 got no thread from lore."""
    UNKNOWN = "unknown"          # a 404 for the message: lore has no such Message-ID
    NETWORK = "network"          # no answer: DNS, refused, reset, TLS, a timeout
    SERVER = "server"            # an answer that is an error: 5xx, 403, 429, ...
    OTHER = "other"              # not a lore failure that b4 names


@dataclass(frozen=True)
class Failure:
    trouble: Trouble
    reason: str                  # short, for the error line: "HTTP 503", "Connection refused"


# b4 0.16 (liblore) ends a thread it could not get with one line,
#   Could not retrieve thread: Server returned an error: 404
#   Could not retrieve thread: All hosts failed for URL: <requests' exception>
# (a 5xx is the first form with its status; a partial mirror's "... is not on
# the local mirror (M), and U could not be reached: <either>" ends the same).
_GAVE_UP = re.compile(r"^Could not retrieve thread: (.*)$", re.M)
_STATUS = re.compile(r"Server returned an error: (\d{3})$")
# The innermost reason in requests' exception text, most specific first.
_REASONS = (
    re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)"),               # Name or service not known
    re.compile(r"(\[SSL: [A-Z_]+\][^(\"']*?)\s*\("),           # [SSL: ...] wrong version number
    re.compile(r"\w+Error\(\d+, '([^']+)'\)"),                 # Connection reset by peer
    re.compile(r"(Read timed out|Connect(?:ion)? timed out|timed out)"),
)


def failure(b4_output: str) -> Failure:
    """What b4's output says went wrong between it and lore: only a 404 for
    the message itself is an unknown Message-ID."""
    last = _GAVE_UP.findall(b4_output)
    if not last:
        return Failure(Trouble.OTHER, "")
    said = last[-1].strip()
    m = _STATUS.search(said)
    if m:
        code = int(m.group(1))
        return Failure(Trouble.UNKNOWN if code == 404 else Trouble.SERVER, f"HTTP {code}")
    return Failure(Trouble.NETWORK, _reason(said))


def _reason(text: str) -> str:
    for pattern in _REASONS:
        m = pattern.search(text)
        if m:
            return clean(m.group(1).strip().rstrip("."), 120)
    return clean(text, 120)


def unreachable(url: str, reason: str, log: object = None) -> OrchError:
    """The error every lore client of orch raises when lore did not answer
    usefully: the infrastructure's fault (exit 5), never the input's."""
    where = f" (see {log})" if log else ""
    return OrchError(f"lore unreachable at {url}: {reason}{where}", Exit.INFRA)
