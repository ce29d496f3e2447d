"""A reply for the mailing list: `orch report RUN --mail` (docs/mail.md).

An RFC 822 reply to the tested revision's cover letter (else its first
patch), as run.json's series.reply keeps that mail's headers (intake reads
them when it fetches the series): In-Reply-To that Message-ID, References
its References and it, To its From, Cc its To and Cc (the sender left out),
`Re: <its subject>`, a fresh Message-ID and Date, From the sender. The body
is plain text, every line at most WIDTH columns: what was tested, the
transitions that matter (regressions, fixed, still failing; never every
pass), the new splats with their first lines, the command that reproduces
the run, and a `Tested-by:` line only when everything the series targets
passed (tested_by()). orch never sends it: `git send-email reply.eml`, or
any mail client, does.

Everything in it that came from a mail, a guest or a run directory is
untrusted: headers are made with the email package (email.header,
email.utils.formataddr) from checked parts, with no CR or LF left in any,
and read back before the reply is returned (_check), so a CR/LF in a
subject or a name cannot add a header; body text loses
control and invisible characters; and no body line but the Tested-by one
reads as a trailer to b4 (`Word: value` at the start of a line), so a
test message saying "Reviewed-by: ..." or "Link: ..." adds nothing to the
patches when the maintainer runs `b4 am`.
"""

from __future__ import annotations

import datetime as dt
import email.charset
import email.policy
import email.utils
import os
import re
import shlex
import unicodedata
from dataclasses import dataclass
from email.charset import Charset
from email.header import Header
from email.headerregistry import Address
from pathlib import Path

from orchestrator import __version__
from orchestrator.core import sanitize
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Status
from orchestrator.run import options, summary
from orchestrator.run.record import ConfigRecord, RunRecord, RunState, RunVerdict, SideRecord

REPLY_FILE = "reply.eml"
WIDTH = 76                # every body line, in columns (under 80, as the lists want)
MAX_REFERENCES = 10       # the thread's root, the nearest ancestors, the mail itself
MAX_ITEMS = 30            # tests listed per section; the rest counted
MAX_FRAMES = 5            # a splat's first lines after its title
# From, when neither the mail_from setting nor git's user.email names anyone:
# a domain that cannot receive mail (RFC 2606), so an unedited reply fails
# to send rather than going out from nobody; no Tested-by is written for it.
PLACEHOLDER = Address("Your Name", "your.name", "example.invalid")
# What a reply is about: a run that tested the series (or found that it
# does not apply or build). An infrastructure error says nothing about it.
REPLYABLE = {RunVerdict.PASS, RunVerdict.FAIL, RunVerdict.NO_APPLY,
             RunVerdict.PATCHED_BUILD_FAILED, RunVerdict.BUILT}
# The flags of the run's command a reproduce line leaves out: where that run
# wrote (--run-dir, --json), how fast (--jobs), and kept results (--rerun*).
LOCAL_FLAGS = {flag for name, flag in options.FLAGS if name in options.NOT_REPRODUCED} | {"-j"}
LOCAL_SWITCHES = {"--rerun", "--rerun-baseline"}   # the ones without a value

# b4's follow-up trailer, as it matches one (b4.LoreMessage.find_trailers):
# a body line like this is a trailer b4 may add to the patches.
B4_TRAILER = re.compile(r"^\s*(\w\S+):\s+(\S.*)", re.I)
_RE = re.compile(r"^(\s*(re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.I)


# -- what run.json keeps of the original mail, checked again ---------------------

@dataclass(frozen=True)
class Original:
    msgid: str
    subject: str
    author: Address | None
    to: list[Address]
    cc: list[Address]
    references: list[str]


def text(value: object, limit: int = 300) -> str:
    """Untrusted text as one line: no control or invisible characters."""
    return sanitize.mail_text(value, limit)


_msgid = sanitize.plain_msgid


def _address(value: object) -> Address | None:
    if not isinstance(value, dict):
        return None
    addr = value.get("addr")
    if not isinstance(addr, str) or len(addr) > 254 or not sanitize.MAIL_ADDR.fullmatch(addr):
        return None
    user, domain = addr.rsplit("@", 1)
    try:
        return Address(text(value.get("name"), 100), user, domain)
    except (ValueError, TypeError, IndexError):
        return None


def _addresses(value: object) -> list[Address]:
    found = [_address(v) for v in (value if isinstance(value, list) else [])[:200]]
    return [a for a in found if a is not None]


def original(rec: RunRecord, run_dir: Path) -> Original:
    """The mail to reply to, from run.json (untrusted: another user's run
    directory, a CI artifact), or BadInput saying why there is none."""
    where = run_dir / "run.json"
    s = rec.series or {}
    if rec.bisect is not None:
        raise BadInput(f"{where}: a bisect or check run; a reply for the list is written "
                       "for an orch test run")
    if s.get("source") == "range" or s.get("range"):
        raise BadInput(f"{where}: a --range run: its patches were never mailed, there is "
                       "no thread to reply to")
    reply = s.get("reply")
    if not isinstance(reply, dict):
        raise BadInput(f"{where}: no headers of the series' mail are kept (a run of an "
                       "older orch, an mbox without Message-IDs, or the mail could not be "
                       "read): nothing to reply to")
    msgid = _msgid(reply.get("msgid"))
    if msgid is None:
        raise BadInput(f"{where}: series.reply.msgid is not a Message-ID")
    given = reply.get("references")
    refs = [_msgid(v) for v in (given[:1000] if isinstance(given, list) else [])]
    refs = list(dict.fromkeys(r for r in refs if r and r != msgid))
    return Original(msgid, text(reply.get("subject") or s.get("subject"), 500),
                    _address(reply.get("from")), _addresses(reply.get("to")),
                    _addresses(reply.get("cc")), refs)


# -- headers ----------------------------------------------------------------------

def reply_subject(subject: str) -> str:
    """`Re: ` and the subject, which keeps no `Re:` of its own."""
    return "Re: " + (_RE.sub("", subject).strip() or "(no subject)")


def references(o: Original) -> list[str]:
    """The mail's References and its Message-ID, at most MAX_REFERENCES:
    the root of the thread, the nearest ancestors and the mail itself (as
    RFC 5322 3.6.4 allows trimming in the middle)."""
    chain = [*o.references, o.msgid]
    if len(chain) <= MAX_REFERENCES:
        return chain
    return chain[:1] + chain[-(MAX_REFERENCES - 1):]


def sender(value: str | None) -> Address | None:
    """The configured sender as an Address; None for no sender."""
    if not value:
        return None
    pairs = email.utils.getaddresses([text(value, 300)])
    if len(pairs) != 1 or not sanitize.MAIL_ADDR.fullmatch(pairs[0][1]):
        raise BadInput(f"the sender {text(value, 80)!r} is not one mail address "
                       "(mail_from in the config file, or git's user.email)")
    user, domain = pairs[0][1].rsplit("@", 1)
    return Address(text(pairs[0][0], 100), user, domain)


def _recipients(o: Original, me: Address | None) -> tuple[list[Address], list[Address]]:
    """To the author; Cc everyone the mail went to, once, never the sender."""
    mine = {me.addr_spec.lower()} if me else set()
    to = [o.author] if o.author and o.author.addr_spec.lower() not in mine else []
    seen = mine | {a.addr_spec.lower() for a in to}
    cc = []
    for a in [*o.to, *o.cc]:
        if a.addr_spec.lower() not in seen:
            seen.add(a.addr_spec.lower())
            cc.append(a)
    if not to and cc:          # the sender wrote the series: reply to the list
        to, cc = cc[:1], cc[1:]
    return to, cc


def render(rec: RunRecord, run_dir: Path, sender_: str | None, *,
           now: dt.datetime | None = None) -> bytes:
    """The reply to the series' mail about the run `rec` (an RFC 822
    message, LF line ends, as git send-email and b4 read a file); `sender_`
    the From (None: PLACEHOLDER, and no Tested-by)."""
    o = original(rec, run_dir)
    _replyable(rec, run_dir)
    me = sender(sender_)
    to, cc = _recipients(o, me)
    when = now or dt.datetime.now().astimezone()
    headers = [folded("From", [address(me or PLACEHOLDER)])]
    if to:
        headers.append(folded("To", [address(a) for a in to]))
    if cc:
        headers.append(folded("Cc", [address(a) for a in cc]))
    subject = reply_subject(o.subject)
    headers += [
        "Subject: " + Header(subject, "us-ascii" if subject.isascii() else utf8(),
                             header_name="Subject").encode(maxlinelen=LINE, linesep="\n"),
        f"Date: {email.utils.format_datetime(when)}",
        f"Message-ID: {email.utils.make_msgid('orch', domain=(me or PLACEHOLDER).domain)}",
        f"In-Reply-To: <{o.msgid}>",
        folded("References", [f"<{r}>" for r in references(o)], ""),
        f"X-Mailer: orch {text(__version__, 40)}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit"]
    data = ("\n".join(headers) + "\n\n" + body(rec, me)).encode("utf-8")
    _check(data, len(headers))
    return data


# Header lines at most this long where the parts allow (RFC 5322: 78).
LINE = 78


def address(a: Address) -> str:
    """One address as a header carries it: its name quoted where it needs
    to be, RFC 2047-encoded when it is not ASCII (email.utils.formataddr)."""
    name = a.display_name
    if name.isascii():
        return email.utils.formataddr((name, a.addr_spec))
    # RFC 2047: encoded words of at most 75 characters, folded between them
    return Header(name, utf8()).encode(maxlinelen=LINE, linesep="\n") + f" <{a.addr_spec}>"


def utf8() -> Charset:
    """UTF-8 for headers, RFC 2047-encoded whatever the email package's
    registry says: a library in the same process can change it (b4 does:
    add_charset('utf-8', None) leaves 8-bit text in its headers)."""
    cs = Charset("utf-8")
    cs.header_encoding = email.charset.SHORTEST
    return cs


def folded(name: str, items: list[str], sep: str = ",") -> str:
    """`Name: item, item, ...`, folded between items at LINE columns (an
    item may be folded already: RFC 2047 words)."""
    out, line = [], f"{name}:"
    for i, item in enumerate(items):
        piece = item + (sep if i < len(items) - 1 else "")
        if line != f"{name}:" and len(line) + 1 + len(piece.split("\n")[0]) > LINE:
            out.append(line)
            line = ""
        line += " " + piece
    return "\n".join([*out, line])


def _check(data: bytes, count: int) -> None:
    """The message read back is the headers it was made of, and no more:
    every value was checked or encoded, so more would be orch's own bug."""
    head = data.split(b"\n\n", 1)[0].decode("ascii")
    starts = [line for line in head.split("\n") if not line.startswith(" ")]
    msg = email.message_from_bytes(data, policy=email.policy.default)
    if len(starts) != count or len(msg.keys()) != count or "\r" in head:
        raise OrchError("orch made a reply whose headers do not read back as made "
                        f"({len(msg.keys())} of {count}); this is a bug in orch",
                        Exit.INFRA)


def _replyable(rec: RunRecord, run_dir: Path) -> None:
    where = run_dir / "run.json"
    if rec.state != RunState.DONE or rec.exit_code is None:
        raise BadInput(f"{where}: the run did not finish (its record says {rec.state}): "
                       "there is no result to reply with")
    if rec.verdict not in REPLYABLE:
        raise BadInput(f"{where}: the run ended {rec.verdict}: it says nothing about the "
                       "series to reply with (run it again)")


def write(rec: RunRecord, run_dir: Path, sender_: str | None,
          dest: Path | None = None) -> Path:
    """render() into `dest` (default RUN_DIR/reply.eml), replacing what is
    there without following it: a symlink or FIFO named reply.eml in a run
    directory is not written through."""
    data = render(rec, run_dir, sender_)
    dest = dest or run_dir / REPLY_FILE
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {dest}: {e.strerror}")
    return dest


# -- the body ---------------------------------------------------------------------

def tested_by(rec: RunRecord) -> bool:
    """Everything the series targets passed: the run passed (no regression,
    no new splat, no patched failure, on every config), and every test it
    is expected to fix passes on the patched kernel of every config."""
    if rec.verdict != RunVerdict.PASS or rec.exit_code != 0 or not rec.configs:
        return False
    targets = set(rec.targets.tests) if rec.targets else None
    for c in rec.configs:
        if c.verdict != "PASS" or c.regressions or c.new_splats:
            return False
        if c.problems and (c.problems.regressions or c.problems.failures
                           or c.problems.infra):
            return False
        comps = c.comparison or []
        if not comps:
            return False
        for x in comps:
            if (targets is None or x.name in targets) and x.patched != Status.PASS:
                return False
    return True


def body(rec: RunRecord, me: Address | None) -> str:
    """The reply's text: every line at most WIDTH columns (but the
    Tested-by line, never wrapped), none but the Tested-by line a trailer
    to b4."""
    s = rec.series or {}
    lines: list[str] = []
    author = (s.get("reply") or {}).get("from") if isinstance(s.get("reply"), dict) else None
    first = text(author.get("name") if isinstance(author, dict) else "", 40).split(" ")[0]
    greet = f"Hi {first}," if re.fullmatch(r"[^\W\d_][\w'-]{0,30}", first) else "Hello,"
    patches = s.get("patches") or []
    lines += [greet, ""]
    lines += para(f"orch {text(__version__, 20)} tested v{text(s.get('version', '?'), 5)} of "
                  f"\"{text(s.get('subject'), 200)}\" ({len(patches)} "
                  f"patch{'es' if len(patches) != 1 else ''}). It built the kernel "
                  "without the series (the baseline) and with it, booted both and "
                  "compared the results of the guest tests.")
    lines += [""] + para(_outcome(rec)) + [""]
    lines += _tested(rec)
    lines += _transitions(rec.configs)
    lines += _splats(rec.configs)
    lines += _apply(rec)
    lines += _reproduce(rec)
    out = lines
    while out and not out[-1]:
        out.pop()
    if tested_by(rec):
        if me:
            # One line, however long: a trailer is never wrapped (git
            # interpret-trailers and checkpatch read one line; b4 only
            # guesses at a name and an address split over two).
            out += ["", f"Tested-by: {me}"]
        else:
            out += [""] + para(
                "(No Tested-by line: set mail_from in orch's config file, or git's "
                "user.name and user.email, and run orch report --mail again.)")
    while out and not out[-1]:
        out.pop()
    out += ["", "-- ", *para(f"orch {text(__version__, 20)}, run started "
                             f"{text(rec.started, 40)}")]
    return "\n".join(out).rstrip("\n") + "\n"


def _outcome(rec: RunRecord) -> str:
    err = text(rec.error, 600)
    v = rec.verdict
    if v == RunVerdict.PASS:
        return ("The result is a PASS on every config: no regression, no new splat, and "
                + ("every test the series is expected to fix passes with it."
                   if tested_by(rec) else "no target failure."))
    if v == RunVerdict.FAIL:
        return f"The result is a FAIL (exit {rec.exit_code}). {err}".rstrip(". ") + "."
    if v == RunVerdict.NO_APPLY:
        return f"The series does not apply (exit {rec.exit_code}). {err}".rstrip(". ") + "."
    if v == RunVerdict.PATCHED_BUILD_FAILED:
        return f"The series breaks the build (exit {rec.exit_code}). {err}".rstrip(". ") + "."
    return "The kernels were built only (no boot): the series builds with every config."


def _release(side: SideRecord) -> str:
    for banner in ((side.boot.banner if side.boot else None), side.build.banner):
        m = re.search(r"Linux version (\S+)", banner or "")
        if m:
            return text(m.group(1), 60)
    return ""


def _side(side: SideRecord) -> str:
    b = side.build
    parts = [_release(side) or "kernel"]
    parts.append(f"built in {b.seconds:.0f}s" if b.status == "ok" and b.seconds
                 else f"build {b.status}")
    counts: dict[str, int] = {}
    for t in side.tests or []:
        counts[t.status] = counts.get(t.status, 0) + 1
    if side.boot and side.boot.status != "not run":
        parts.append("tests " + (", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
                                 or "none reported")
                     if side.boot.status == "ok" else f"boot {side.boot.status}")
    return ", ".join(parts)


def _tested(rec: RunRecord) -> list[str]:
    s, t = rec.series or {}, rec.tree
    rows = []
    patches = s.get("patches") or []
    applied = sum(1 for p in patches if isinstance(p, dict) and p.get("status") == "applied")
    rows.append(("series", f"v{text(s.get('version', '?'), 5)}, {applied} of {len(patches)} "
                           "patches applied"))
    if t:
        rows.append(("tree", text(t.label, 200)))
        if t.base:
            rows.append(("base", f"{text(t.base, 40)[:12]} ({text(t.base_reason, 200)})"))
    if rec.accel:
        machine = f"{text(rec.accel.mode, 10)} ({text(rec.accel.reason, 120)})"
        machine += f", {rec.cpus or 2} vCPUs, {text(rec.memory or '2G', 10)} memory"
        rows.append(("guest", machine))
    if rec.targets:
        line = summary.targets_line(rec.targets, len(rec.expected_tests or []))
        rows.append(("targets", text(line.removeprefix("targets: "), 300)))
    out = ["What was tested"]
    for key, value in rows:
        out += wrap(value, "  " + f"{key:<10}", " " * 12)
    for c in rec.configs:
        out += wrap(f"config {text(c.name, 60)}" + (f" (--kconfig {text(c.kconfig, 80)})"
                                                    if c.kconfig else ""), "  ", "    ")
        for name in ("baseline", "patched"):
            out += wrap(_side(c.side(name)), f"    {name:<10}", " " * 14)
    return out + [""]


SECTIONS = (
    ("Regressions (pass without the series, fail with it)",
     lambda x: x.transition in ("regressed", "now skipped")),
    ("Fixed by the series (fail without it, pass with it)",
     lambda x: x.transition == "fixed"),
    ("Failing with the series",
     lambda x: x.patched in (Status.FAIL, Status.ERROR, Status.MISS, Status.FLAKY)
     and x.transition not in ("regressed", "now skipped") and not x.known),
    ("Known failures (failing without the series too, and not one it targets)",
     lambda x: bool(x.known)),
)


def _transitions(configs: list[ConfigRecord]) -> list[str]:
    many = len(configs) > 1
    out: list[str] = []
    for title, keep in SECTIONS:
        items = [(c, x) for c in configs for x in (c.comparison or []) if keep(x)]
        if not items:
            continue
        out.append(title)
        for c, x in items[:MAX_ITEMS]:
            where = f"[{text(c.name, 40)}] " if many else ""
            named = wrap(f"{where}{text(x.name, 300)}", "  - ", "    ")
            how = (f"({text(x.baseline, 10)} -> {text(x.patched, 10)}, "
                   f"{text(x.transition, 40)})")
            # The transition whole: on the id's line when it fits, else below.
            if columns(f"{named[-1]}  {how}") <= WIDTH - 2:
                named[-1] = f"{named[-1]}  {how}"
            else:
                named.append(f"    {how}")
            out += named
            if x.reason and x.patched != Status.PASS:
                out += wrap(text(x.reason.splitlines()[0] if x.reason.strip() else "", 200),
                            "      ", "      ")
        if len(items) > MAX_ITEMS:
            out.append(f"  ... and {len(items) - MAX_ITEMS} more (run.json has them all)")
        out.append("")
    passing = sum(1 for c in configs for x in (c.comparison or [])
                  if x.transition == "passing")
    if passing:
        out += para(f"{passing} other test result{'s' if passing != 1 else ''} passed with "
                    "and without the series.") + [""]
    return out


def _splats(configs: list[ConfigRecord]) -> list[str]:
    many = len(configs) > 1
    out: list[str] = []
    new = [(c, sp) for c in configs for sp in (c.new_splats or []) if isinstance(sp, dict)]
    if new:
        out.append("New splats with the series (not on the kernel without it)")
        for c, sp in new[:MAX_ITEMS]:
            where = f"[{text(c.name, 40)}] " if many else ""
            out += wrap(f"{where}{text(sp.get('kind'), 20)}: {text(sp.get('title'), 300)}",
                        "  - ", "    ")
            frames = sp.get("frames") if isinstance(sp.get("frames"), list) else []
            for f in frames[:MAX_FRAMES]:
                out += wrap(text(f, 200), "      ", "        ")
        out.append("")
    old = sum(len(c.preexisting_splats or []) for c in configs)
    if old:
        out += para(f"{old} splat{'s' if old != 1 else ''} showed on the kernel without the "
                    "series too (not listed).") + [""]
    return out


def _apply(rec: RunRecord) -> list[str]:
    a = rec.apply
    if a is None or a.ok:
        return []
    out = ["Where it does not apply"]
    for r in a.rejections[:MAX_ITEMS]:
        out += wrap(f"{text(r.file, 200)}: " + ", ".join(text(h, 80) for h in r.hunks[:10]),
                    "  - ", "    ")
    return out + [""]


MAX_WORDS = 200           # of a reproduce command
MAX_WORD = 1000


def reproduce_words(rec: RunRecord) -> list[str]:
    """The run's own command without what only mattered where it ran, each
    word without control or invisible characters (run.json is untrusted:
    an escape or a NUL has no place in a mail, nor a line break in a
    command line of it)."""
    words, skip = [], False
    for w in rec.command[:MAX_WORDS]:
        w = sanitize.NOT_TEXT.sub("", str(w))[:MAX_WORD]
        if skip:
            skip = False
            continue
        flag = w.split("=", 1)[0]
        if w in LOCAL_FLAGS or w in LOCAL_SWITCHES:
            skip = w in LOCAL_FLAGS and w not in LOCAL_SWITCHES
            continue
        if flag in LOCAL_FLAGS and "=" in w:
            continue
        if re.fullmatch(r"-j\d+", w):
            continue
        words.append(w)
    return words


def _reproduce(rec: RunRecord) -> list[str]:
    words = reproduce_words(rec)
    if not words:
        return []
    return ["To run it again", *shell_lines(words, "  ", "    "), ""]


# -- plain text under WIDTH columns ------------------------------------------------

def columns(s: str) -> int:
    """How many columns a terminal gives `s` (wide East Asian characters: 2)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def wrap(value: str, first: str, rest: str, width: int = WIDTH) -> list[str]:
    """`value` in lines of at most `width` columns, the first starting with
    `first`, the others with `rest`; a word too long for any line (a test
    id, an address) gets a line of its own and is never cut: a reader
    copies it whole into --guest-test or a search. Wrapped 2 columns
    short, so that a line b4 would read as a trailer has room for the "| "
    that keeps it from being one (_defused)."""
    width -= 2
    out, line, prefix = [], "", first
    for word in value.split():
        sep = " " if line else ""
        if columns(prefix + line + sep + word) <= width:
            line += sep + word
            continue
        if line:
            out.append(prefix + line)
            prefix = rest
        if columns(prefix + word) <= width:
            line = word
        else:
            out.append(prefix + word[:MAX_WORD])
            line, prefix = "", rest
    if line or not out:
        out.append(prefix + line)
    return [_defused(o.rstrip()) for o in out]


def para(value: str) -> list[str]:
    return wrap(value, "", "")


def _quote(word: str) -> str:
    """shlex.quote(), and quotes for a word ending in ":" too: at the start
    of a line, "Link: https://..." would be a trailer to b4."""
    q = shlex.quote(word)
    return f"'{word}'" if q == word and word.endswith(":") else q


def _units(words: list[str]) -> list[list[str]]:
    """Words kept on one line when they fit: a flag and the value after it."""
    out: list[list[str]] = []
    i = 0
    while i < len(words):
        take = 2 if (words[i].startswith("-") and i + 1 < len(words)
                     and not words[i + 1].startswith("-")) else 1
        out.append(words[i:i + take])
        i += take
    return out


def shell_lines(words: list[str], first: str, rest: str, width: int = WIDTH) -> list[str]:
    """A command line as shell lines of at most `width` columns, joined by
    backslash-newline: pasted into a POSIX shell, it is `words` again. A flag
    and its value stay on one line when they fit. A word longer than a line
    is cut into quoted pieces joined by a backslash at the end of a line,
    each going on at the start of the next (an indent there would split the
    word)."""
    lines: list[tuple[str, bool]] = []     # (text, ends inside a word)
    cur, prefix = "", first

    def flush(inside: bool = False) -> None:
        nonlocal cur, prefix
        lines.append((prefix + cur, inside))
        cur, prefix = "", rest

    def fits(more: str) -> bool:           # on the current line, and " \"
        return columns(prefix + cur + (" " if cur else "") + more) <= width - 2

    for unit in _units(words):
        q = " ".join(_quote(w) for w in unit)
        if not fits(q) and cur:
            flush()
        if fits(q):
            cur += (" " if cur else "") + q
            continue
        for w in unit:
            q = _quote(w)
            if not fits(q) and cur:
                flush()
            if fits(q):
                cur += (" " if cur else "") + q
                continue
            room, piece = width - 1 - columns(prefix), ""         # and "\"
            for ch in w:
                if piece and columns(_quote(piece + ch)) > room:
                    cur = _quote(piece)
                    flush(inside=True)
                    prefix, room, piece = "", width - 1, ""
                piece += ch
            cur = _quote(piece)
    if cur or not lines:
        flush()
    return [t + ("" if i == len(lines) - 1 else "\\" if inside else " \\")
            for i, (t, inside) in enumerate(lines)]


# What b4 0.16 takes from a follow-up's `Name: value` line: a person's
# trailer (an address in the value), or one of these (find_trailers'
# `nonperson`). A line that could be one, or a -by: trailer of any value,
# or one holding a URL, is defused; "AssertionError: 7 still cached" is not.
B4_NONPERSON = {"link", "buglink", "closes", "fixes", "subject", "date", "obsoleted-by",
                "change-id", "base-commit", "message-id", "cc", "to", "from"}


def _defused(line: str) -> str:
    """A body line b4 would not read as a trailer: one that it could gets
    "| " after its indent (never the Tested-by line: body() adds it after)."""
    m = B4_TRAILER.match(line)
    if m and ("@" in m.group(2) or "://" in m.group(2) or m.group(1).lower().endswith("-by")
              or m.group(1).lower() in B4_NONPERSON):
        indent = line[:len(line) - len(line.lstrip())]
        return indent + "| " + line.lstrip()
    return line
