"""The nightly's discovery: series revisions, lore searches, tree heads.

- newest_revision(): b4's own lookup (`b4 am -c`: change-id aware, it asks
  lore for newer revisions), and the revision pinned as the mbox b4 wrote.
- search(): lore's search endpoint, the request b4 sends (POST
  /all/?x=m&t=1&q=, body x=m), results grouped into series: one per
  change-id, else per subject and sender (b4's own test for "a revision of
  the same series"), the newest revision of each.
- git_tree_head(): fetch, then the ref's commit; a failed fetch is the last
  known commit and a reason (the night reports the tree stale, not failed).
- newest_debian_version(): the highest version of a package across suites,
  by `dpkg --compare-versions`.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import functools
import hashlib
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import names, proc
from orchestrator.core.errors import Exit, OrchError
from orchestrator.core.sanitize import clean
from orchestrator.nightly.night import SeriesRev
from orchestrator.source import intake, lore


@dataclass
class Found:
    key: str                 # "change-id:<id>", else "msgid:<msgid>"
    msgid: str               # this revision's cover letter (else first patch)
    version: int
    change_id: str | None
    title: str
    mbox: Path | None = None  # the pinned, am-ready mbox (newest_revision only)


def _key(change_id: str | None, msgid: str) -> str:
    return f"change-id:{change_id}" if change_id else f"msgid:{msgid}"


def newest_revision(msgid: str, lore_url: str, workdir: Path, log: Path,
                    timeout: float) -> Found:
    """The newest revision of the series `msgid` belongs to, pinned: its
    mbox, as b4 wrote it, copied into workdir under a name of its own."""
    out = workdir / f".b4-{hashlib.sha1(msgid.encode()).hexdigest()[:12]}"
    shutil.rmtree(out, ignore_errors=True)
    s = intake.fetch(msgid, mbox=None, outdir=out, log=log, lore_url=lore_url,
                     timeout=timeout, latest=True, b4_cache=out / "b4-cache")
    own = _revision_msgid(out) or s.msgid   # b4 -c may have moved to a newer revision
    key = _key(s.change_id, msgid)
    name = names.slug(key.split(":", 1)[1], 60, strip=False, empty="")
    pinned = workdir / f"{name}-v{s.version}.mbx"
    shutil.copyfile(s.mbx, pinned)
    shutil.rmtree(out, ignore_errors=True)
    return Found(key, own, s.version, s.change_id, clean(s.subject, 200), pinned)


def _revision_msgid(out: Path) -> str | None:
    """The Message-ID of the revision b4 chose: its cover letter's, else its
    first patch's (b4 -c may have moved on from the msgid it was given)."""
    cover = out / "series.cover"
    if cover.exists():
        m = email.message_from_bytes(cover.read_bytes())
        if m.get("Message-ID"):
            return m["Message-ID"].strip().strip("<>")
    mbx = out / "series.mbx"
    if mbx.exists():
        import mailbox
        for m in mailbox.mbox(str(mbx), create=False):
            if m.get("Message-ID"):
                return m["Message-ID"].strip().strip("<>")
            break
    return None


def series_rev(found: Found, source: str, night_dir: Path) -> SeriesRev:
    """The night record's form of `found`; its mbox relative to night_dir."""
    return SeriesRev(found.key, found.title, found.msgid, found.version, found.change_id,
                     source, str(found.mbox.relative_to(night_dir)) if found.mbox else "")


_PATCH_SUBJECT = re.compile(r"\[[^\]]*PATCH[^\]]*\]", re.I)
_NUMBERED = re.compile(r"\b(\d+)/(\d+)\]")


def search(query: str, lore_url: str, timeout: float = intake.B4_TIMEOUT) -> list[Found]:
    """Series with a mail matching `query` (public-inbox's search language),
    sorted by key: per series its newest revision among the hits, named by
    its cover letter, else its first patch (no mbox: newest_revision() pins
    one). The hits' whole threads are asked for (t=1), so a match in a
    reply still names its series. Nothing matched: []."""
    lore_url = lore.base_url(lore_url)
    url = f"{lore_url}/all/?" + urllib.parse.urlencode({"x": "m", "t": "1", "q": query})
    req = urllib.request.Request(url, data=b"x=m", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read(MAX_SEARCH + 1)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []   # public-inbox: nothing matched
        raise lore.unreachable(lore_url, f"HTTP {e.code}")
    except (urllib.error.URLError, OSError) as e:
        raise lore.unreachable(lore_url, str(getattr(e, "reason", e)))
    if len(data) > MAX_SEARCH:
        raise OrchError(f"lore search at {lore_url} answered more than {MAX_SEARCH >> 20} MiB",
                        Exit.INFRA)
    if data.startswith(b"\x1f\x8b"):
        data = _gunzip(data, lore_url)
    return _series_of(_split_mboxrd(data))


# A search's answer (whole threads of the matching series, gzip'd mboxrd):
# a few MiB for a busy query; a server that sends more, or a stream that
# inflates past it (a bomb), is refused, not held in memory.
MAX_SEARCH = 64 << 20


def _gunzip(data: bytes, lore_url: str) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, MAX_SEARCH + 1)
    except zlib.error as e:
        raise OrchError(f"lore search at {lore_url} sent a broken gzip stream: {e}", Exit.INFRA)
    if len(out) > MAX_SEARCH:
        raise OrchError(f"lore search at {lore_url} answered more than {MAX_SEARCH >> 20} MiB "
                        "once decompressed", Exit.INFRA)
    return out


def _split_mboxrd(data: bytes) -> list[email.message.Message]:
    out = []
    for chunk in re.split(rb"^From [^\n]*\n", data, flags=re.M)[1:]:
        chunk = re.sub(rb"^>(>*From )", rb"\1", chunk, flags=re.M)
        out.append(email.message_from_bytes(chunk, policy=email.policy.compat32))
    return out


def _text(m: email.message.Message) -> str:
    """The text/plain parts (a cover letter may be multipart)."""
    out = []
    for part in m.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(out)


def _series_of(msgs: list[email.message.Message]) -> list[Found]:
    """Patch mails grouped by thread root; per thread the cover letter (0/n)
    or the first patch, and the change-id it carries. Threads that are
    revisions of one series become one: by change-id, else (no change-id) by
    subject and sender, as `b4 am -c` finds revisions; the newest stays."""
    ids = {}
    parent = {}
    for m in msgs:
        mid = (m.get("Message-ID") or "").strip().strip("<>")
        if not mid:
            continue
        ids[mid] = m
        refs = re.findall(r"<([^<>\s]+)>", f"{m.get('In-Reply-To', '')} {m.get('References', '')}")
        parent[mid] = refs[0] if refs else None

    def root(mid: str) -> str:
        seen = set()
        while parent.get(mid) and parent[mid] in ids and mid not in seen:
            seen.add(mid)
            mid = parent[mid]
        return mid

    threads: dict[str, list[tuple[str, email.message.Message]]] = {}
    for mid, m in ids.items():
        subject = " ".join(str(m.get("Subject", "")).split())
        if not _PATCH_SUBJECT.search(subject) or subject.lower().startswith("re:"):
            continue
        threads.setdefault(root(mid), []).append((mid, m))
    newest: dict[tuple, tuple[Found, float]] = {}
    for r, mails in threads.items():
        def order(item):
            n = _NUMBERED.search(str(item[1].get("Subject", "")))
            return int(n.group(1)) if n else 1
        mid, m = min(mails, key=order)
        cid = re.search(r"^change-id:\s*(\S+)\s*$", _text(m), re.M)
        version, title = intake.parse_subject(" ".join(str(m.get("Subject", "")).split()))
        change_id = cid.group(1) if cid else None
        sender = email.utils.parseaddr(str(m.get("From", "")))[1].lower()
        group = ("cid", change_id) if change_id else ("subject", title.lower(), sender)
        f = Found(_key(change_id, mid), mid, version, change_id, clean(title, 200))
        # The newest: the highest version, and of equal versions (a resend)
        # the later mail.
        when = _date(m)
        if group not in newest or (version, when) > (newest[group][0].version,
                                                      newest[group][1]):
            newest[group] = (f, when)
    return sorted((f for f, _ in newest.values()), key=lambda f: f.key)


def _date(m: email.message.Message) -> float:
    try:
        return email.utils.parsedate_to_datetime(str(m.get("Date", ""))).timestamp()
    except (TypeError, ValueError):
        return 0.0


def git_tree_head(path: Path, ref: str, timeout: float = 600) -> tuple[str, str | None]:
    """(commit of `ref`, None) after fetching the remote the ref names
    (`origin/main`, `refs/remotes/origin/main`); when that fetch fails,
    (the ref's last known commit, one line saying why): the night tests the
    tree as it was and reports it stale. A ref of no remote (a local branch,
    a tag) is not fetched. A ref that does not resolve is an OrchError."""
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        raise OrchError(f"{path} is not a git repository", Exit.BAD_INPUT)
    stale = None
    remote = _remote_of(ref, _git(path, "remote").split())
    if remote:
        # Never wait for a password: a nightly has nobody to type it (and
        # proc.run's own session has no terminal for ssh to ask on).
        r = proc.run(["git", "-C", str(path), "fetch", "--quiet", remote], timeout=timeout,
                     env={"GIT_TERMINAL_PROMPT": "0"})
        if r.timed_out:
            stale = f"git fetch {remote} timed out after {timeout:.0f}s"
        elif not r.ok:
            stale = clean(f"git fetch {remote} failed: {_fetch_error(r.output, r.returncode)}",
                          200)
    try:
        commit = _git(path, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise OrchError(f"{path}: no such ref {ref}", Exit.BAD_INPUT)
    return commit, stale


def _remote_of(ref: str, remotes: list[str]) -> str | None:
    """The remote a remote-tracking ref names; the longest match, since a
    remote's name may itself hold a slash."""
    name = ref.removeprefix("refs/remotes/").removeprefix("remotes/")
    if name in remotes:          # "origin": its HEAD
        return name
    names = [r for r in remotes if name.startswith(r + "/")]
    return max(names, key=len) if names else None


def _fetch_error(output: str, returncode: int) -> str:
    """git's first fatal/error line says what went wrong; the last one is
    usually advice ("and the repository exists.")."""
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    for l in lines:
        if l.startswith(("fatal:", "error:")):
            return l
    return lines[0] if lines else f"exit status {returncode}"


def head_commit(path: Path) -> str:
    return _git(path, "rev-parse", "HEAD").strip()


def _git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=True, timeout=120).stdout


@functools.cmp_to_key
def _dpkg_order(a: str, b: str) -> int:
    if a == b:
        return 0
    # dpkg's own order (epochs, ~ before anything, +b1 binNMUs), not text's.
    # Status 2 is a version dpkg cannot read: never let one win by accident.
    r = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], capture_output=True,
                       text=True, timeout=60)
    if r.returncode not in (0, 1):
        raise ValueError(f"not a Debian version: {a!r} or {b!r}: {r.stderr.strip()}")
    return -1 if r.returncode == 0 else 1


def highest_version(versions: list[str]) -> str:
    """The highest Debian version, as dpkg orders them (7.2.13~rc1-1 <
    7.2.13-1 < 7.2.13-1+b1)."""
    if not versions:
        raise ValueError("no versions")
    return max(versions, key=_dpkg_order)


def newest_debian_version(package: str, suites: tuple[str, ...],
                          cache: Path | None = None) -> str:
    """The highest version of `package` any of `suites` offers now (apt's
    lists in a private state under orch's cache; nothing is downloaded but
    the indexes). Import it with debsrc.import_tree(..., version=it): each
    version is a tree of its own."""
    from orchestrator.source import debsrc
    return highest_version(debsrc.available_versions(package, suites, cache=cache))
