"""Loopback stand-in for lore.kernel.org, good enough for the real `b4` CLI.

Serves the mails found under a data directory (`*.eml`, one message each, and
`*.mbox` in mboxrd format; duplicates by Message-ID are dropped) with the few
public-inbox endpoints b4 0.16 (via liblore) uses:

- GET  /all/<quote_plus(msgid)>/t.mbox.gz        whole thread, gzip'd mboxrd
- POST /all/?x=m[&t=1]&q=<query>                  search (public-inbox's
                                                  language, the part b4 and
                                                  orch nightly use): `s:`,
                                                  `f:`, `b:`, `nq:`, `dfn:`,
                                                  `patchid:`, `d:`/`dt:A..B`
                                                  (YYYYMMDD[HHMMSS],
                                                  YYYY-MM-DD, N.days.ago,
                                                  yesterday), AND/OR/NOT,
                                                  parentheses
- HEAD/GET /[all/]<msgid>/ and /[all/]<msgid>/raw  existence probes

Everything else is a 404, which b4 reads as "not found". A test can change
what is archived while it runs (`archive.add()`, `hide()`, `hide_thread()`,
`show()`) and fix the server's "now" for relative dates (`LoreServer(dir,
now=...)` or `archive.now`).  The `/all` prefix is
optional because liblore retries a missing msgid against the bare origin.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import gzip
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The checked-in mails (see its README.md); tests may serve other directories.
LORE_DATA_DIR = Path(__file__).resolve().parent / "data" / "lore"
MBOXRD_FROM = b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_FROM_ESCAPED_RE = re.compile(rb"^>(>*From )", re.M)
_FROM_RE = re.compile(rb"^(>*From )", re.M)


@dataclass(frozen=True)
class LoreRequest:
    """One request as the server saw it, for assertions."""

    method: str
    path: str  # raw URL path, still percent-encoded, without the query string
    query: dict[str, str]  # decoded URL query parameters (last value wins)

    @property
    def q(self) -> str | None:
        return self.query.get("q")


@dataclass
class Mail:
    msgid: str
    raw: bytes  # exactly as on disk (.eml) or after undoing mboxrd escaping
    date: datetime  # UTC
    refs: list[str]  # In-Reply-To + References
    body: str  # decoded text/plain parts, for search
    patch_id: str | None = field(default=None)
    subject: str = ""
    sender: str = ""


def _msgids(value: str | None) -> list[str]:
    return _MSGID_RE.findall(value or "")


def _parse_mail(raw: bytes) -> Mail | None:
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    ids = _msgids(msg.get("Message-ID"))
    if not ids:
        return None
    try:
        when = email.utils.parsedate_to_datetime(msg.get("Date", ""))
    except (TypeError, ValueError):
        when = datetime.fromtimestamp(0, timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    body = []
    for part in msg.walk():
        if part.get_content_type() != "text/plain":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            body.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    refs = _msgids(msg.get("In-Reply-To")) + _msgids(msg.get("References"))
    subject = " ".join(str(msg.get("Subject", "")).split())
    return Mail(ids[0], raw, when.astimezone(timezone.utc), refs, "\n".join(body),
                subject=subject, sender=str(msg.get("From", "")))


def split_mboxrd(data: bytes) -> list[bytes]:
    """Split an mboxrd file back into raw messages (inverse of `to_mboxrd`)."""
    out: list[bytes] = []
    for chunk in re.split(rb"^From [^\n]*\n", data, flags=re.M)[1:]:
        # mboxrd appends one empty line after each message
        if chunk.endswith(b"\n\n"):
            chunk = chunk[:-1]
        out.append(_FROM_ESCAPED_RE.sub(rb"\1", chunk))
    return out


def to_mboxrd(raws: list[bytes]) -> bytes:
    parts: list[bytes] = []
    for raw in raws:
        if not raw.endswith(b"\n"):
            raw += b"\n"
        parts += [MBOXRD_FROM, _FROM_RE.sub(rb">\1", raw), b"\n"]
    return b"".join(parts)


def git_patch_id(text: str) -> str | None:
    """`git patch-id --stable` of a mail body, as b4 and public-inbox compute it."""
    res = subprocess.run(
        ["git", "patch-id", "--stable"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    out = res.stdout.split()
    return out[0].decode() if res.returncode == 0 and out else None


class LoreArchive:
    """The mails and the thread/search logic, independent of HTTP."""

    def __init__(self, data_dir: Path) -> None:
        self.mails: dict[str, Mail] = {}
        for path in sorted(data_dir.rglob("*")):
            if path.suffix == ".eml":
                raws = [path.read_bytes()]
            elif path.suffix == ".mbox":
                raws = split_mboxrd(path.read_bytes())
            else:
                continue
            for raw in raws:
                mail = _parse_mail(raw)
                if mail is not None:
                    self.mails.setdefault(mail.msgid, mail)
        self._thread_of = self._build_threads()
        self._patch_ids_done = False
        self._lock = threading.Lock()
        self.hidden: set[str] = set()
        self.now: datetime | None = None   # for d:N.days.ago; None: the real now

    def add(self, raw: bytes) -> str:
        """Archive one more mail (as if it arrived now); its Message-ID."""
        mail = _parse_mail(raw)
        if mail is None:
            raise ValueError("a mail without a Message-ID")
        with self._lock:
            self.mails[mail.msgid] = mail
            self._thread_of = self._build_threads()
            self._patch_ids_done = False
        self.hidden.discard(mail.msgid)
        return mail.msgid

    def hide(self, *msgids: str) -> None:
        """Not archived (yet): lookups, threads and searches miss them."""
        self.hidden.update(msgids)

    def show(self, *msgids: str) -> None:
        self.hidden.difference_update(msgids)

    def hide_thread(self, msgid: str) -> list[str]:
        """Hide every mail of `msgid`'s thread (a whole revision not posted
        yet); returns their Message-IDs, for show()."""
        root = self._thread_of[msgid]
        ids = [m for m in self.mails if self._thread_of[m] == root]
        self.hide(*ids)
        return ids

    def visible(self) -> list[Mail]:
        return [m for m in self.mails.values() if m.msgid not in self.hidden]

    def _build_threads(self) -> dict[str, str]:
        # Union-find over every msgid mentioned, so replies to a message we
        # lack still land in one thread (public-inbox does the same with ghosts).
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for mail in self.mails.values():
            for ref in mail.refs:
                parent[find(ref)] = find(mail.msgid)
            find(mail.msgid)
        return {msgid: find(msgid) for msgid in self.mails}

    def lookup(self, msgid: str) -> Mail | None:
        mail = self.mails.get(msgid.strip().removeprefix("<").removesuffix(">"))
        return None if mail is None or mail.msgid in self.hidden else mail

    def thread(self, msgid: str) -> list[Mail]:
        root = self._thread_of[msgid]
        return [m for m in self.visible() if self._thread_of[m.msgid] == root]

    def patch_ids(self) -> dict[str, str]:
        """msgid -> patch-id for every mail that carries a diff (computed once)."""
        with self._lock:
            if not self._patch_ids_done:
                for mail in self.mails.values():
                    mail.patch_id = git_patch_id(mail.body)
                self._patch_ids_done = True
        return {m.msgid: m.patch_id for m in self.mails.values() if m.patch_id}

    def search(self, query: str, full_threads: bool) -> list[Mail] | None:
        """Messages matching `query`, or None when the query form is unknown."""
        try:
            match = _Query(query, self).parse()
        except ValueError:
            return None
        hits = [m for m in self.visible() if match(m)]
        if full_threads:
            roots = {self._thread_of[m.msgid] for m in hits}
            hits = [m for m in self.visible() if self._thread_of[m.msgid] in roots]
        return hits

    @staticmethod
    def mbox_gz(mails: list[Mail]) -> bytes:
        ordered = sorted(mails, key=lambda m: m.date)
        return gzip.compress(to_mboxrd([m.raw for m in ordered]), mtime=0)


_TOKEN_RE = re.compile(r'\s*(\(|\)|[a-z]+:"[^"]*"|[^\s()]+)')
_AGO_RE = re.compile(r"(\d+)\.(day|week|month|year)s?\.ago")
_DIFF_FILE_RE = re.compile(r"^diff --git a/(\S+) b/(\S+)", re.M)


class _Query:
    """public-inbox's search language, the part b4 and orch nightly use:
    terms `prefix:word` or `prefix:"a phrase"`, implicit or explicit AND,
    OR, NOT, parentheses (AND binds tighter than OR, as in Xapian)."""

    def __init__(self, text: str, archive: LoreArchive) -> None:
        self.tokens = _TOKEN_RE.findall(text.strip())
        if "".join("".join(t.split()) for t in self.tokens) != "".join(text.split()):
            raise ValueError(text)
        self.pos = 0
        self.archive = archive

    def parse(self):
        if not self.tokens:
            raise ValueError("empty query")
        f = self._or()
        if self.pos != len(self.tokens):
            raise ValueError("trailing tokens")
        return f

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self):
        parts = [self._and()]
        while self._peek() == "OR":
            self.pos += 1
            parts.append(self._and())
        return lambda m: any(p(m) for p in parts)

    def _and(self):
        parts = [self._not()]
        while self._peek() not in (None, "OR", ")"):
            if self._peek() == "AND":
                self.pos += 1
            parts.append(self._not())
        return lambda m: all(p(m) for p in parts)

    def _not(self):
        if self._peek() == "NOT":
            self.pos += 1
            inner = self._not()
            return lambda m: not inner(m)
        return self._atom()

    def _atom(self):
        tok = self._peek()
        if tok is None or tok in (")", "AND", "OR"):
            raise ValueError("term expected")
        self.pos += 1
        if tok == "(":
            inner = self._or()
            if self._peek() != ")":
                raise ValueError("unbalanced")
            self.pos += 1
            return inner
        prefix, sep, value = tok.partition(":")
        if not sep:
            raise ValueError(f"bare word {tok!r}")   # lore's full-text terms: not needed here
        value = value[1:-1] if value.startswith('"') and value.endswith('"') else value
        return self._term(prefix, value)

    def _term(self, prefix: str, value: str):
        low = " ".join(value.lower().split())
        if prefix == "s":
            return lambda m: low in " ".join(m.subject.lower().split())
        if prefix == "f":
            return lambda m: low in m.sender.lower()
        if prefix in ("b", "bs"):
            return lambda m: low in m.body.lower() or (prefix == "bs" and low in m.subject.lower())
        if prefix == "nq":
            cid = re.fullmatch(r"change-id:\s*(\S+)", value.strip())
            if cid:   # nq: searches unquoted text only: "> change-id:" in replies misses
                pat = re.compile(rf"^change-id:\s*{re.escape(cid.group(1))}\s*$", re.M | re.I)
                return lambda m: bool(pat.search(m.body))
            return lambda m: low in " ".join(
                l for l in m.body.lower().splitlines() if not l.startswith(">"))
        if prefix == "dfn":
            return lambda m: any(low in f.lower() for pair in _DIFF_FILE_RE.findall(m.body)
                                 for f in pair)
        if prefix == "patchid":
            if not re.fullmatch(r"[0-9a-f]{40}", value):
                raise ValueError(value)
            archive = self.archive
            return lambda m: archive.patch_ids().get(m.msgid) == value
        if prefix in ("d", "dt", "rt"):
            lo, sep, hi = value.partition("..")
            if not sep:
                lo = hi = value
            since, until = self._when(lo, end=False), self._when(hi, end=True)
            return lambda m: ((since is None or m.date >= since)
                              and (until is None or m.date <= until))
        raise ValueError(f"unknown prefix {prefix!r}")

    def _when(self, text: str, end: bool) -> datetime | None:
        """One end of a date range, as public-inbox reads it: a day (UTC) is
        inclusive at either end (YYYYMMDD upper ends mean 23:59:59); a
        relative form is git's approxidate, an instant exactly N units
        before now, not a day boundary."""
        if not text:
            return None
        day = None
        if re.fullmatch(r"\d{8}", text):
            day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
        elif re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            day = date.fromisoformat(text)
        if day is not None:
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            return start + timedelta(days=1, microseconds=-1) if end else start
        if re.fullmatch(r"\d{14}", text):
            return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        ago = _AGO_RE.fullmatch({"yesterday": "1.day.ago"}.get(text, text))
        if ago:
            now = self.archive.now or datetime.now(timezone.utc)
            if now.tzinfo is None:
                now = now.replace(tzinfo=timezone.utc)
            n = int(ago.group(1)) * {"day": 1, "week": 7, "month": 30, "year": 365}[ago.group(2)]
            return now - timedelta(days=n)
        raise ValueError(f"date {text!r}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean; requests are recorded instead

    def _record(self) -> tuple[list[str], dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        with self.server.lock:
            self.server.requests.append(LoreRequest(self.command, url.path, query))
        parts = url.path.split("/")[1:]
        if parts and parts[0] == "all":
            parts = parts[1:]
        return parts, query

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _mail(self, quoted: str) -> Mail | None:
        # quote_plus'd is what b4 sends; plain unquote covers a literal '+'
        archive = self.server.archive
        return archive.lookup(urllib.parse.unquote_plus(quoted)) or archive.lookup(
            urllib.parse.unquote(quoted)
        )

    def do_GET(self) -> None:
        parts, _query = self._record()
        if len(parts) != 2 or not parts[0]:
            return self._send(404, b"not found\n")
        mail = self._mail(parts[0])
        if mail is None:
            return self._send(404, b"not found\n")
        archive = self.server.archive
        if parts[1] == "t.mbox.gz":
            # Raw gzip bytes, no Content-Encoding: b4 gunzips the body itself
            # and requests would otherwise inflate it first (BadGzipFile).
            return self._send(200, archive.mbox_gz(archive.thread(mail.msgid)), "application/gzip")
        if parts[1] == "raw":
            return self._send(200, mail.raw, "text/plain; charset=utf-8")
        if parts[1] == "":
            return self._send(200, f"<html><body>{mail.msgid}</body></html>\n".encode(), "text/html")
        return self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)  # body is always "x=m"; drain it for the socket's sake
        parts, query = self._record()
        if parts != [""] or query.get("x") != "m" or not query.get("q"):
            return self._send(404, b"not found\n")
        hits = self.server.archive.search(query["q"], full_threads=query.get("t") == "1")
        if not hits:
            return self._send(404, b"no results\n")
        return self._send(200, LoreArchive.mbox_gz(hits), "application/gzip")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    archive: LoreArchive
    requests: list[LoreRequest]
    lock: threading.Lock


class LoreServer:
    """`with LoreServer(data_dir) as srv:` -> `srv.url`, `srv.requests`."""

    def __init__(self, data_dir: Path, now: datetime | None = None) -> None:
        self.archive = LoreArchive(Path(data_dir))
        self.archive.now = now   # "now" for relative dates; None: the real now
        self.requests: list[LoreRequest] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.archive = self.archive
        self._httpd.requests = self.requests
        self._httpd.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="lore-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def midmask(self) -> str:
        """Value for b4's `-c b4.midmask=...`."""
        return f"{self.url}/all/%s"

    def start(self) -> LoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoreServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
