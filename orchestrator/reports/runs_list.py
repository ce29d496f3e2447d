"""The past runs under some directories, and the checks under the cache:
`orch runs` lists them, `orch report ID` finds one by the id it printed.

A run is a directory holding a run.json (orch test, orch bisect, a nightly
cell, orch check). Run directories come from other users, CI artifacts and
copies of them, so finding and reading them is done as with any untrusted
tree: directories are walked by file descriptor, never through a symbolic
link (but for a directory the user named), never into a hidden one or a run
directory, at most MAX_DEPTH levels below the top (a nightly's --out holds
its cells at nights/<date>/cells/<cell>/) and MAX_DIRS directories in all; a
run.json is opened without following a link or waiting on a FIFO, and
read only if it is a regular file of at most MAX_RECORD bytes. Anything
else, a record that is not JSON or not a run record, or one of a newer
schema, is skipped with a note naming it: it never fails the list.

A run's id is its directory relative to the directory it was found under
(`20261204-113012-<msgid>`, `nights/2026-12-04/cells/<cell>`), and
`check/<name>` for orch check's records. An id given back is only ever
compared with the ids found, never joined onto a path, so no id reaches
outside the directories listed.
"""

from __future__ import annotations

import datetime as dt
import difflib
import errno
import itertools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import untrusted
from orchestrator.core.errors import BadInput
from orchestrator.reports.reportlib import one_line, short_title
from orchestrator.run import summary
from orchestrator.run.record import RunRecord

RUN_JSON = "run.json"
DEFAULT_DIR = Path("orch-runs")   # where orch test and orch bisect put a run (run/options.py)
MAX_RECORD = 16 << 20      # the biggest real run.json is tens of kB
MAX_DEPTH = 6              # a run directory at most this far below its top
MAX_DIRS = 20000           # directories looked into, per top
MAX_ENTRIES = 100000       # entries of one directory looked at (nights/: one a night)
CHECK_PREFIX = "check/"
WIDTH = 100                # a line of the list, at most
ID_MAX = 24                # an id is shown whole up to this long ...
ID_MIN = 22                # ... else its unique prefix of about this (<time>-<a word>)
NOT_FINISHED = "not finished"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Top:
    """Where runs are looked for: a directory, and what its ids start with."""
    path: Path
    prefix: str = ""          # "check/" for the checks
    follow: bool = True       # the user's own directory may be a link; the cache's may not


@dataclass
class Run:
    id: str
    dir: Path
    kind: str                  # test, bisect, check, cell
    started: dt.datetime | None
    finished: dt.datetime | None
    what: str
    verdict: str | None
    exit: int | None           # the status `orch report` exits with; None: not finished
    state: str                 # the record's: running, done, interrupted
    took: str                  # a duration, "running", "killed?" or "not finished"
    seconds: float | None
    record: RunRecord

    def as_json(self) -> dict:
        return {"id": self.id, "dir": os.path.abspath(self.dir), "kind": self.kind,
                "started": _iso(self.started), "finished": _iso(self.finished),
                "what": self.what, "verdict": self.verdict, "exit": self.exit,
                "state": self.state, "seconds": self.seconds, "duration": self.took}


@dataclass(frozen=True)
class Skipped:
    """A run.json found but not listed, and why."""
    id: str
    dir: Path
    why: str

    def note(self) -> str:
        return f"skipped {one_line(str(self.dir / RUN_JSON), 300)}: {self.why}"


@dataclass
class Found:
    runs: list[Run]            # newest first
    skipped: list[Skipped]
    notes: list[str]           # a top not looked into, a walk cut short


def tops(dirs: list[Path], checks: Path | None) -> list[Top]:
    """The user's directories, then the checks' (orch check's records in
    the cache), if there are any."""
    out = [Top(d) for d in dirs]
    if checks is not None:
        out.append(Top(checks, CHECK_PREFIX, follow=False))
    return out


def scan(where: list[Top]) -> Found:
    """Every run under `where`, newest first (by the time each started);
    the same directory reached twice is listed once."""
    found = Found([], [], [])
    seen: set[tuple[int, int]] = set()
    for top in where:
        try:
            fd = os.open(top.path, _DIR & ~os.O_NOFOLLOW if top.follow else _DIR)
        except FileNotFoundError:
            continue                       # no runs there yet
        except OSError as e:
            why = "a symbolic link (not followed)" if top.path.is_symlink() else _why(e)
            found.notes.append(f"not looked into {one_line(str(top.path), 300)}: {why}")
            continue
        _walk(fd, top, (), 0, found, seen, [0])
    found.runs.sort(key=_newest_first)
    return found


def _why(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symbolic link (not followed)"
    if e.errno == errno.ENOTDIR:
        return "not a directory"
    return e.strerror or str(e)


def _walk(fd: int, top: Top, parts: tuple[str, ...], depth: int, found: Found,
          seen: set[tuple[int, int]], dirs: list[int]) -> None:
    """Look into the directory open as `fd` (closed here): a run directory
    if it holds a run.json, else its subdirectories, to MAX_DEPTH."""
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        dirs[0] += 1
        if dirs[0] > MAX_DIRS:
            if dirs[0] == MAX_DIRS + 1:
                found.notes.append(f"stopped looking under {one_line(str(top.path), 300)} "
                                   f"after {MAX_DIRS} directories")
            return
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False))
                           for e in itertools.islice(it, MAX_ENTRIES + 1)]
            if len(entries) > MAX_ENTRIES:
                found.notes.append(f"looked at the first {MAX_ENTRIES} entries of "
                                   f"{_path(top, parts)} only")
                entries = entries[:MAX_ENTRIES]
        except OSError as e:
            found.notes.append(f"not looked into {_path(top, parts)}: {_why(e)}")
            return
        names = {name for name, _ in entries}
        if RUN_JSON in names:
            _one(fd, top, parts, found)
            return
        if depth >= MAX_DEPTH:
            return
        for name, is_dir in sorted(entries):
            if not is_dir or name.startswith("."):
                continue
            try:
                sub = os.open(name, _DIR, dir_fd=fd)
            except OSError:
                continue                   # gone, replaced by a link, not ours to read
            _walk(sub, top, (*parts, name), depth + 1, found, seen, dirs)
    finally:
        os.close(fd)


def _path(top: Top, parts: tuple[str, ...]) -> str:
    return one_line(str(top.path.joinpath(*parts)), 300)


def _run_id(top: Top, parts: tuple[str, ...]) -> str:
    """The run directory relative to its top; a top that is a run directory
    itself: its name."""
    return top.prefix + ("/".join(parts) if parts else
                         top.path.name or top.path.resolve().name)


def _one(dir_fd: int, top: Top, parts: tuple[str, ...], found: Found) -> None:
    rid, where = _run_id(top, parts), top.path.joinpath(*parts)
    try:
        rec, raw = _record(dir_fd)
        found.runs.append(_row(rid, where, top, parts, rec, raw))
    except _Unreadable as e:
        found.skipped.append(Skipped(rid, where, str(e)))


class _Unreadable(Exception):
    pass


def _record(dir_fd: int) -> tuple[RunRecord, dict]:
    """The run.json in the directory open as dir_fd: as a RunRecord, and
    as the JSON object it is (with what a newer orch added to it)."""
    try:
        fd = os.open(RUN_JSON, _FILE, dir_fd=dir_fd)
    except OSError as e:
        raise _Unreadable(_why(e) if e.errno != errno.ENOENT else "gone")
    try:
        data = untrusted.read_fd(fd, MAX_RECORD, f"{MAX_RECORD >> 20} MiB")
    except untrusted.UntrustedError as e:
        raise _Unreadable(str(e))
    except OSError as e:
        raise _Unreadable(e.strerror or str(e))
    finally:
        os.close(fd)
    try:
        raw = untrusted.load_json(data.decode())   # as record.read reads one
    except ValueError as e:
        raise _Unreadable(f"not JSON: {one_line(str(e), 120)}")
    try:
        return RunRecord.from_json(raw), raw
    except BadInput as e:                  # a newer schema, or not an object
        raise _Unreadable(one_line(str(e), 200))
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise _Unreadable(f"not an orch run record: {type(e).__name__}: "
                          f"{one_line(str(e), 120)}")


def _row(rid: str, where: Path, top: Top, parts: tuple[str, ...], rec: RunRecord,
         raw: dict) -> Run:
    """A record as one line's facts; a field of the wrong type makes the
    whole record unreadable, never the list."""
    try:
        started, finished = _time(rec.started), _time(rec.finished)
        ended = rec.exit_code is not None
        kind = _kind(top, parts, rec)
        seconds = took = None
        if ended:
            seconds = (finished - started).total_seconds() if started and finished else None
            took = _duration(seconds) if seconds is not None else "?"
        else:
            took = _liveness(raw, started)
        return Run(rid, where, kind, started, finished, _what(kind, rec),
                   str(rec.verdict) if rec.verdict is not None else None,
                   summary.conclusion(rec).code if ended else None,
                   str(rec.state), took, seconds, rec)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise _Unreadable(f"not an orch run record: {type(e).__name__}: "
                          f"{one_line(str(e), 120)}") from None


def _kind(top: Top, parts: tuple[str, ...], rec: RunRecord) -> str:
    if top.prefix == CHECK_PREFIX or summary.is_check(rec):
        return "check"
    if rec.bisect is not None or rec.command[1:2] == ["bisect"]:
        return "bisect"
    if "cells" in parts[:-1]:
        return "cell"
    return "test"


def _what(kind: str, rec: RunRecord) -> str:
    """What was tested, in a few words (untrusted text made one plain line)."""
    b = rec.bisect
    if kind == "check" and b is not None:
        return one_line(f"check {b.good[:12]} ({b.mode})", 200)
    if kind == "bisect" and b is not None:
        return one_line(f"bisect {b.good[:8]}..{b.bad[:8]} ({b.mode})", 200)
    s = rec.series if isinstance(rec.series, dict) else {}
    title = s.get("subject") or s.get("msgid")
    if isinstance(title, str) and title:
        v = s.get("version")
        return short_title(title, 200) + (f" v{v}" if isinstance(v, int) and v > 1 else "")
    args = rec.command[1:] if isinstance(rec.command, list) else []
    return one_line(" ".join(str(a) for a in args) or "?", 200)


def _time(text: object) -> dt.datetime | None:
    """A record's time; one without a zone is UTC (as orch writes them)."""
    if not isinstance(text, str):
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _liveness(raw: dict, started: dt.datetime | None) -> str:
    """A record that never got its exit status: "running" when the record
    names its process ("pid" and "host") and that process is alive on this
    host, "killed?" when it is gone; else "not finished" (killed, or still
    going: nothing says which)."""
    pid, host = raw.get("pid"), raw.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 \
            or not isinstance(host, str) or host != socket.gethostname():
        return NOT_FINISHED
    try:
        os.kill(pid, 0)                    # no signal: is it there?
    except ProcessLookupError:
        return "killed?"
    except PermissionError:
        pass                               # there, another user's
    except (OSError, OverflowError):
        return NOT_FINISHED
    since = _process_start(pid)
    if since is not None and started is not None and \
            since > started.timestamp() + 60:
        return "killed?"                   # the pid is another process's now
    return "running"


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat_line.rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text()
                     .splitlines() if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _newest_first(r: Run) -> tuple:
    t = r.started.timestamp() if r.started else float("-inf")
    return (-t, r.id)


# -- the list as text ---------------------------------------------------------------


def shown_ids(ids: list[str]) -> dict[str, str]:
    """Each id as the list shows it: whole up to ID_MAX characters, else its
    shortest prefix of about ID_MIN characters that no other id starts with
    (as git shortens a hash; a separator it would end on left off): what
    `orch report` takes back."""
    out = {}
    ordered = sorted(set(ids))
    for i, rid in enumerate(ordered):
        common = max([len(os.path.commonprefix([rid, other]))
                      for other in ordered[max(i - 1, 0):i] + ordered[i + 1:i + 2]], default=0)
        shown = rid[:max(ID_MIN, common + 1)]
        while shown[-1] in "-_./" and len(shown) - 1 > common:
            shown = shown[:-1]
        out[rid] = rid if len(rid) <= ID_MAX else shown
    return out


def local_time(t: dt.datetime | None) -> str:
    """When a run started, in this machine's time zone."""
    try:
        return t.astimezone().strftime("%Y-%m-%d %H:%M") if t else "?"
    except (OverflowError, ValueError, OSError):   # year 1 or 9999, from a hostile record
        return "?"


def lines(runs: list[Run], all_ids: list[str]) -> list[str]:
    """The list: a header, then one line a run, at most WIDTH columns (the
    last column, what was tested, is cut to fit)."""
    short = shown_ids(all_ids)
    rows = [(one_line(short.get(r.id, r.id), 300), local_time(r.started), r.verdict or "-",
             "-" if r.exit is None else str(r.exit), r.took, r.what) for r in runs]
    head = ("ID", "WHEN", "VERDICT", "EXIT", "TOOK", "WHAT")
    w = [min(max(len(x[i]) for x in [head, *rows]), ID_MAX if i == 0 else WIDTH)
         for i in range(5)]
    out = []
    for row in [head, *rows]:
        left = (f"{row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:<{w[2]}}  {row[3]:>{w[3]}}  "
                f"{row[4]:<{w[4]}}  ")
        room = WIDTH - len(left)
        what = row[5] if len(row[5]) <= room else row[5][:max(room - 3, 0)] + "..."
        out.append((left + what).rstrip()[:WIDTH] if room > 3 else left.rstrip())
    return out


# -- an id given back ------------------------------------------------------------------


def resolve(text: str, where: list[Top]) -> Run:
    """The run whose id is `text`, or the one run whose id starts with it.
    An id no run has, or a prefix of several, is one BadInput line: the
    nearest ids, or the candidates."""
    found = scan(where)
    every: list[Run | Skipped] = [*found.runs, *found.skipped]
    exact = [r for r in every if r.id == text]
    matches = exact if exact or not text else [r for r in every if r.id.startswith(text)]
    shown = one_line(text, 200)
    if len(matches) == 1:
        (m,) = matches
        if isinstance(m, Skipped):
            raise BadInput(f"run {shown!r}: {m.note()}")
        return m
    if matches:
        names = [f"{r.id} ({one_line(str(r.dir), 200)})" if exact else r.id
                 for r in matches[:10]]
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise BadInput(f"run id {shown!r} is ambiguous: it may be {', '.join(names)}{more}")
    near = difflib.get_close_matches(text, [r.id for r in every], n=3, cutoff=0.5)
    places = " or ".join(one_line(str(t.path), 200) for t in where) or "nowhere"
    hint = (f"; the nearest: {', '.join(near)}" if near
            else "; `orch runs` lists the runs and their ids")
    raise BadInput(f"no run directory or run id {shown!r} (ids looked up under {places})"
                   f"{hint}")

