"""The nightly's discovery: series revisions, lore searches, tree heads.

- newest_revision(): b4's own lookup (`b4 am -c`: change-id aware, it asks
  lore for newer revisions), and the revision pinned as the mbox b4 wrote.
- search(): lore's search endpoint, the one b4 uses (POST /all/?x=m&q=),
  results grouped into series (one per thread, keyed by change-id when the
  series has one).
- git_tree_head(): fetch, then the ref's commit; a failed fetch is the last
  known commit and a reason (the night reports the tree stale, not failed).
- newest_debian_version(): the highest version of a package across suites,
  by `dpkg --compare-versions`.
"""

from __future__ import annotations

import email
import email.policy
import functools
import gzip
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import intake, proc
from .errors import Exit, OrchError
from .night import SeriesRev
from .sanitize import clean


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
    out = workdir / f".b4-{abs(hash(msgid)) % 10**8}"
    shutil.rmtree(out, ignore_errors=True)
    s = intake.fetch(msgid, mbox=None, outdir=out, log=log, lore_url=lore_url,
                     timeout=timeout, latest=True, b4_cache=out / "b4-cache")
    own = _revision_msgid(out) or s.msgid
    key = _key(s.change_id, msgid)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split(":", 1)[1])[:60]
    pinned = workdir / f"{name}-v{s.version}.mbx"
    shutil.copyfile(s.mbx, pinned)
    shutil.rmtree(out, ignore_errors=True)
    return Found(key, own, s.version, s.change_id, clean(s.subject, 200), pinned)


def _revision_msgid(out: Path) -> str | None:
    """The Message-ID of the revision b4 chose: its cover letter's, else its
    first patch's (b4 -c may have moved on from the msgid it was given)."""
    cover = out / "series.cover"
    paths = [cover] if cover.exists() else []
    for p in paths:
        m = email.message_from_bytes(p.read_bytes())
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
    return SeriesRev(found.key, found.title, found.msgid, found.version, found.change_id,
                     source, str(found.mbox.relative_to(night_dir)) if found.mbox else "")


_PATCH_SUBJECT = re.compile(r"\[[^\]]*PATCH[^\]]*\]", re.I)
_NUMBERED = re.compile(r"\b(\d+)/(\d+)\]")


def search(query: str, lore_url: str, timeout: float = intake.B4_TIMEOUT) -> list[Found]:
    """Series with a mail matching `query` (public-inbox's search language),
    one per thread: its cover letter, else its first patch."""
    url = f"{lore_url.rstrip('/')}/all/?" + urllib.parse.urlencode({"x": "m", "t": "1",
                                                                   "q": query})
    req = urllib.request.Request(url, data=b"x=m", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []   # public-inbox: nothing matched
        raise OrchError(f"lore search failed at {lore_url}: HTTP {e.code}", Exit.INFRA)
    except (urllib.error.URLError, OSError) as e:
        raise OrchError(f"lore unreachable at {lore_url}: {getattr(e, 'reason', e)}",
                        Exit.INFRA)
    try:
        data = gzip.decompress(data)
    except OSError:
        pass   # a server that sent it plain
    return _series_of(_split_mboxrd(data))


def _split_mboxrd(data: bytes) -> list[email.message.Message]:
    out = []
    for chunk in re.split(rb"^From [^\n]*\n", data, flags=re.M)[1:]:
        chunk = re.sub(rb"^>(>*From )", rb"\1", chunk, flags=re.M)
        out.append(email.message_from_bytes(chunk, policy=email.policy.compat32))
    return out


def _series_of(msgs: list[email.message.Message]) -> list[Found]:
    """Patch mails grouped by thread root; per thread the cover letter (0/n)
    or the first patch, and the change-id a cover carries."""
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
    found = []
    for r, mails in threads.items():
        def order(item):
            n = _NUMBERED.search(str(item[1].get("Subject", "")))
            return int(n.group(1)) if n else 1
        mid, m = min(mails, key=order)
        body = m.get_payload(decode=True) if not m.is_multipart() else b""
        text = (body or b"").decode(errors="replace")
        cid = re.search(r"^change-id:\s*(\S+)\s*$", text, re.M)
        version, title = intake.parse_subject(" ".join(str(m.get("Subject", "")).split()))
        change_id = cid.group(1) if cid else None
        found.append(Found(_key(change_id, mid), mid, version, change_id, clean(title, 200)))
    # Revisions of one series (one change-id) in several threads: the newest.
    newest: dict[str, Found] = {}
    for f in found:
        if f.key not in newest or f.version > newest[f.key].version:
            newest[f.key] = f
    return sorted(newest.values(), key=lambda f: f.key)


def git_tree_head(path: Path, ref: str, timeout: float = 600) -> tuple[str, str | None]:
    """(commit of `ref`, None) after fetching its remote; when the fetch
    fails, (the ref's last known commit, why)."""
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        raise OrchError(f"{path} is not a git repository", Exit.BAD_INPUT)
    stale = None
    remotes = _git(path, "remote").split()
    remote = ref.split("/", 1)[0] if "/" in ref and ref.split("/", 1)[0] in remotes else None
    if remote:
        r = proc.run(["git", "-C", str(path), "fetch", "--quiet", remote], timeout=timeout)
        if not r.ok:
            lines = [l for l in r.output.splitlines() if l.strip()]
            stale = clean(lines[-1] if lines else f"git fetch exited {r.returncode}", 200)
    try:
        commit = _git(path, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise OrchError(f"{path}: no such ref {ref}", Exit.BAD_INPUT)
    return commit, stale


def head_commit(path: Path) -> str:
    return _git(path, "rev-parse", "HEAD").strip()


def _git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=True, timeout=120).stdout


@functools.cmp_to_key
def _dpkg_order(a: str, b: str) -> int:
    if a == b:
        return 0
    lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
    return -1 if lt else 1


def highest_version(versions: list[str]) -> str:
    """The highest Debian version, as dpkg orders them (7.2.13~rc1-1 <
    7.2.13-1 < 7.2.13-1+b1)."""
    if not versions:
        raise ValueError("no versions")
    return max(versions, key=_dpkg_order)


def newest_debian_version(package: str, suites: tuple[str, ...]) -> str:
    from . import debsrc
    return highest_version(debsrc.available_versions(package, suites))
