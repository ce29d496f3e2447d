"""Intake: a lore Message-ID or a local mbox -> Series, through b4.

b4 does the hard parts (thread retrieval, picking the revision, collecting
trailers from replies); orch reads back the am-ready mbox b4 writes.
"""

from __future__ import annotations

import email
import email.errors
import email.parser
import email.policy
import email.utils
import hashlib
import mailbox
import re
import shutil
import sys
from email.header import decode_header, make_header
from email.utils import parseaddr
from pathlib import Path

from orchestrator.core import proc, sanitize
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Patch, Series
from orchestrator.core.sanitize import clean
from orchestrator.source import hermetic, lore

DEFAULT_LORE = lore.DEFAULT
B4_TIMEOUT = 300

# The Message-ID forms people paste are lore's to read (lore.message_id);
# the commands and NIGHTLY.toml call it by this older name.
normalize_msgid = lore.message_id


def b4_command() -> list[str]:
    exe = Path(sys.executable).parent / "b4"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("b4")
    if not found:
        raise OrchError("b4 is not installed (pip install b4)", Exit.INFRA)
    return [found]


def _hdr(msg, name: str) -> str:
    """A header as text for reports: mail is untrusted, so no control
    characters or terminal escapes survive, and the length is bounded."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        text = str(value)
    return clean(re.sub(r"\s+", " ", text).strip(), 300)


def _body(msg) -> str:
    payload = msg.get_payload(decode=True)
    if payload is None:
        payload = str(msg.get_payload()).encode()
    return payload.decode(msg.get_content_charset() or "utf-8", errors="replace")


_SUBJ_TAG = re.compile(r"^\s*\[([^\]]*)\]\s*(.*)$")


def parse_subject(subject: str) -> tuple[int, str]:
    """'[PATCH RFC v3 1/2] foo' -> (3, 'foo')."""
    version, rest = 1, subject
    while True:
        m = _SUBJ_TAG.match(rest)
        if not m:
            break
        for tok in m.group(1).split():
            v = re.fullmatch(r"[vV](\d+)", tok)
            if v:
                version = int(v.group(1))
        rest = m.group(2)
    return version, rest.strip()


def patch_id(diff: str) -> str | None:
    r = proc.run(["git", "patch-id", "--stable"], input=diff.encode(), timeout=60,
                 env=hermetic.git_env())
    out = r.output.split()
    return out[0] if r.ok and out else None


_TRAILER = re.compile(r"^([A-Z][A-Za-z-]*-by|Fixes|Link|Closes|Cc): (.+)$")


def _trailers(body: str) -> list[str]:
    msg = body.split("\n---\n", 1)[0]
    return [clean(f"{m.group(1)}: {m.group(2).strip()}", 300) for line in msg.splitlines()
            if (m := _TRAILER.match(line))]


def _collected(b4_output: str) -> dict[int, list[str]]:
    """Trailers b4 reports having picked up from replies, per patch number."""
    out: dict[int, list[str]] = {}
    current = None
    for line in b4_output.splitlines():
        m = re.search(r"\[[^\]]*?(\d+)/(\d+)\]", line)
        if m and "+" not in line.split("[")[0]:
            current = int(m.group(1))
            continue
        m = re.match(r"^\s+\+ (\S[^:]*: .+)$", line)
        if m and current is not None:
            out.setdefault(current, []).append(clean(m.group(1).strip(), 300))
    return out


def check_mbox(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise BadInput(f"cannot read mbox {path}: {e.strerror}")
    if not head.startswith(b"From ") and not re.match(rb"^[A-Za-z-]+: ", head):
        raise BadInput(f"{path} is not an mbox (no 'From ' line or mail headers)")


def prepare_mbox(mbox: Path, outdir: Path) -> Path:
    """b4 silently ignores mails without a Message-ID, as plain
    `git format-patch` output is: give such mails one (threaded on the
    first) in a copy, and leave a proper mbox as it is."""
    box = mailbox.mbox(str(mbox), create=False)
    msgs = list(box)
    if not msgs:
        raise BadInput(f"no mail in {mbox}")
    if all(m.get("Message-ID") for m in msgs):
        return mbox
    digest = hashlib.sha1(mbox.read_bytes()).hexdigest()[:12]
    first = None
    out = mailbox.mbox(str(outdir / "input.mbox"), create=True)
    for i, m in enumerate(msgs):
        if not m.get("Message-ID"):
            m["Message-ID"] = f"<orch-{digest}-{i}@localhost>"
        if first and not m.get("In-Reply-To"):
            m["In-Reply-To"] = first
            m["References"] = first
        first = first or m["Message-ID"]
        out.add(m)
    out.flush()
    return outdir / "input.mbox"


def fetch(msgid: str | None, *, mbox: Path | None, outdir: Path, log: Path,
          lore_url: str = DEFAULT_LORE, offline: bool = False, timeout: float = B4_TIMEOUT,
          latest: bool = False, b4_cache: Path | None = None) -> Series:
    """Run b4 am and read back what it wrote into `outdir`. `b4_cache`: b4's
    cache directory (the nightly's discovery gives each night a fresh one:
    b4 keeps lore's answers for 10 minutes, and a newer revision must be
    seen when it appears)."""
    if msgid is None and mbox is None:
        raise BadInput("give a Message-ID or --mbox FILE")
    if mbox is not None:
        mbox = mbox.resolve()
        check_mbox(mbox)
    # b4 runs with its cwd in outdir and `-o outdir`: a relative outdir
    # would land under itself, and `orch plan --out plan` found no series.
    outdir = outdir.absolute()
    outdir.mkdir(parents=True, exist_ok=True)
    base = lore.base_url(lore_url)
    argv = [*b4_command(), "--no-stdin", *hermetic.b4_args(),
            "-c", f"b4.midmask={base}/all/%s", "-c", f"b4.linkmask={base}/r/%s"]
    if offline:
        argv.append("--offline-mode")
    b4 = list(argv)   # b4 and its settings, for original_headers()
    argv += ["am", "-o", str(outdir), "-n", "series"]
    if latest:
        argv.append("-c")
    given = prepare_mbox(mbox, outdir) if mbox is not None else None
    if given is not None:
        argv += ["-m", str(given)]
    if msgid is not None:
        argv.append(msgid)
    env = hermetic.b4_env(outdir)
    if b4_cache is not None:
        env["XDG_CACHE_HOME"] = str(b4_cache)
    r = proc.run(argv, log=log, cwd=outdir, timeout=timeout, env=env)
    where = f"{mbox}" if mbox else base
    if r.timed_out:
        raise OrchError(f"b4 timed out after {timeout:.0f}s talking to {where} (see {log})",
                        Exit.INFRA)
    mbx = outdir / "series.mbx"
    if not r.ok or not mbx.exists():
        raise _failed(r.output, msgid, mbox, where, base, log)
    series = read_series(mbx, outdir / "series.cover", r.output, msgid,
                         "mbox" if mbox else "lore")
    # An mbox orch had to give Message-IDs to was never mailed: no reply.
    if given is None or given == mbox:
        series.reply = original_headers(outdir, b4, env, log, mbox=given, msgid=msgid)
    return series


def _failed(text: str, msgid: str | None, mbox: Path | None, where: str, base: str,
            log: Path) -> OrchError:
    """b4 got no series: the input's fault (exit 2) only when lore answered
    that it has no such message, or the mails hold no patches; lore not
    answering, or answering with an error, is the infrastructure's (exit 5)."""
    low = text.lower()
    if ("no patches found" in low or "could not find any patches" in low
            or ("no messages" in low and mbox)):
        return BadInput(f"no patches in {where}" + (f" for {msgid}" if msgid else ""))
    f = lore.failure(text)
    if f.trouble is lore.Trouble.UNKNOWN and msgid:
        return BadInput(f"unknown Message-ID {msgid} at {where}")
    if f.trouble in (lore.Trouble.NETWORK, lore.Trouble.SERVER, lore.Trouble.UNKNOWN):
        return lore.unreachable(base, f.reason, log)
    return BadInput(f"b4 could not get a series from {where}: {_last_line(text)} (see {log})")


def _last_line(text: str) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else "no output"


def read_series(mbx: Path, cover_path: Path, b4_output: str, msgid: str | None,
                source: str) -> Series:
    box = mailbox.mbox(str(mbx), create=False)
    collected = _collected(b4_output)
    patches: list[Patch] = []
    bodies: list[str] = []
    version = 1
    for i, msg in enumerate(box, start=1):
        subject = _hdr(msg, "Subject")
        version, title = parse_subject(subject)
        body = _body(msg)
        bodies.append(body)
        name, addr = parseaddr(_hdr(msg, "From"))
        trailers = _trailers(body)
        patches.append(Patch(index=i, subject=title, author=f"{name} <{addr}>",
                             patch_id=patch_id(body), trailers=trailers,
                             collected=collected.get(i, [])))
    if not patches:
        raise BadInput(f"no patches in {mbx}")
    cover = None
    cover_subject = None
    cover_msgid = None
    if cover_path.exists():
        # b4 writes the cover as a single message, not an mbox.
        msg = email.message_from_bytes(cover_path.read_bytes())
        cover = _body(msg)
        cover_subject = parse_subject(_hdr(msg, "Subject"))[1]
        cover_msgid = _hdr(msg, "Message-ID").strip("<>") or None
    texts = ([cover] if cover else []) + bodies
    base = change = None
    for t in texts:
        base = base or _search(r"^base-commit: ([0-9a-f]{7,40})\s*$", t)
        change = change or _search(r"^change-id: (\S+)\s*$", t)
    first_msgid = _hdr(box[0], "Message-ID").strip("<>") if len(box) else None
    return Series(msgid=msgid or cover_msgid or first_msgid or "",
                  version=version,
                  subject=cover_subject or patches[0].subject,
                  patches=patches, mbx=mbx, cover=cover,
                  base_commit=base, change_id=change, source=source)


def _search(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else None


# -- the mail a reply for the list answers (reports/mail_reply.py) -------------
#
# b4's am-ready output keeps From, Subject, Date and Message-Id of each mail,
# not To, Cc or References: those come from the original mail, read from the
# given mbox, or from lore through `b4 mbox`, which b4's cache answers (b4 am
# fetched that very thread a moment ago; only when --latest moved to a newer
# revision does lore see one more request). What is kept is untrusted text
# from a mail: checked here, and again by the reply's writer.

THREAD = ".thread.mbx"         # b4 mbox's copy of the thread, removed once read
THREAD_TIMEOUT = 60
MAX_THREAD = 64 << 20
MAX_HEADERS = 256 << 10        # what a mail's headers may take
MAX_ADDRESSES = 100            # per header
MAX_REFERENCES = 50
_MSGID = re.compile(r"<([^<>\s]+)>")     # each <id> of References, In-Reply-To
# One line of mail text, and a Message-ID a header can carry (core.sanitize,
# which the reply's writer checks them with again).
header_text = sanitize.mail_text
plain_msgid = sanitize.plain_msgid


def _target_msgid(outdir: Path) -> str | None:
    """The Message-ID a reply answers: the cover letter b4 kept, else the
    first patch of its am-ready mbox."""
    try:
        cover = outdir / "series.cover"
        if cover.exists():
            head = email.message_from_bytes(cover.read_bytes()[:MAX_HEADERS])
        else:
            head = next(iter(mailbox.mbox(str(outdir / "series.mbx"), create=False)), None)
        return plain_msgid(str(head.get("Message-ID", ""))) if head is not None else None
    except (OSError, ValueError, email.errors.MessageError):
        return None


def _find(mbox: Path, msgid: str) -> dict | None:
    """reply_headers() of the mail `msgid` in `mbox`, if it is there."""
    try:
        if not mbox.is_file() or mbox.stat().st_size > MAX_THREAD:
            return None
        for m in mailbox.mbox(str(mbox), create=False):
            if plain_msgid(str(m.get("Message-ID", ""))) == msgid:
                return reply_headers(m.as_bytes())
    except (OSError, ValueError, email.errors.MessageError):
        pass
    return None


def original_headers(outdir: Path, b4: list[str], env: dict[str, str], log: Path,
                     mbox: Path | None, msgid: str | None) -> dict | None:
    """Series.reply: the headers of the mail a reply answers, from `mbox`
    (the user's own, as given), else from the thread of `msgid` (what b4 am
    was given) or of that mail itself, through b4; None when that mail
    cannot be read (the run goes on: only `orch report --mail` needs it)."""
    target = _target_msgid(outdir)
    if target is None:
        return None
    if mbox is not None:
        return _find(mbox, target)
    thread = outdir / THREAD
    try:
        for which in dict.fromkeys(m for m in (msgid, target) if m):
            r = proc.run([*b4, "mbox", "-o", str(outdir), "-n", THREAD, which], log=log,
                         append=True, cwd=outdir, env=env, timeout=THREAD_TIMEOUT)
            found = _find(thread, target) if r.ok else None
            if found:
                return found
        return None
    finally:
        thread.unlink(missing_ok=True)


def _addresses(msg, name: str) -> list[dict[str, str]]:
    """The addresses of a header, each name decoded on its own (a name
    whose encoded words hide a "," or "<" stays one name)."""
    out, seen = [], set()
    for display, addr in email.utils.getaddresses([str(v) for v in msg.get_all(name, [])]):
        addr = (addr or "").strip()
        if not sanitize.MAIL_ADDR.fullmatch(addr) or len(addr) > 254 or addr.lower() in seen:
            continue
        try:
            display = str(make_header(decode_header(display)))
        except Exception:    # a broken encoded word: the name as it came
            pass
        seen.add(addr.lower())
        out.append({"name": header_text(display, 100), "addr": addr})
        if len(out) >= MAX_ADDRESSES:
            break
    return out


def _decoded(msg, name: str) -> str:
    value = str(msg.get(name) or "")
    try:
        return str(make_header(decode_header(value)))
    except Exception:    # a broken encoded word: the header as it came
        return value


def reply_headers(raw: bytes) -> dict | None:
    """The headers of one mail, as Series.reply keeps them: checked, every
    value one line of plain text, addresses as {name, addr}."""
    # compat32: every header as the raw text it is (policy.default raises on
    # a name that decodes to a CR or LF); each is decoded and checked here.
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        raw[:MAX_HEADERS], headersonly=True)
    msgid = plain_msgid(str(msg.get("Message-ID", "")))
    if msgid is None:
        return None
    refs: list[str] = []
    for name in ("References", "In-Reply-To"):
        for ref in _MSGID.findall(" ".join(str(v) for v in msg.get_all(name, []))):
            ref = plain_msgid(ref)
            if ref and ref != msgid and ref not in refs:
                refs.append(ref)
    senders = _addresses(msg, "From")
    return {"msgid": msgid,
            "subject": header_text(_decoded(msg, "Subject"), 500),
            "date": header_text(_decoded(msg, "Date"), 100),
            "from": senders[0] if senders else None,
            "to": _addresses(msg, "To"), "cc": _addresses(msg, "Cc"),
            # the thread's root first, then the nearest: a reply keeps both ends
            "references": refs[:1] + refs[1:][-(MAX_REFERENCES - 1):]}
