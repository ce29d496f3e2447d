"""The nightly job's memory: one SQLite file (stdlib sqlite3).

What every night found, in rows that outlive the run directories: nights,
series and their revisions (msgid, change-id, version), trees and the commit
each night tested, per cell (series x tree x config) its status, per test its
statuses, properties and the cell's figures, splats by fingerprint, build and
boot durations. `compare` asks it for the last night with a result for the
same series, tree and config, and for a figure's past values.

The schema is versioned by SQLite's `user_version`; MIGRATIONS[i] takes a
file from version i to i+1, each in one transaction, so an older history is
brought up to date when opened and a newer one is refused (an older orch
must not write rows it does not understand).

Only `orch nightly` (and `orch merge`) write it, under `lock()`: a second
nightly on the same history is refused while one runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from orchestrator.core import jsonio
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.models import Status
from orchestrator.nightly.night import (
    Cell,
    CellSplat,
    CellStatus,
    HistoryPoint,
    Night,
    TestCell,
)

MIGRATIONS = [
    # 0 -> 1
    """
    CREATE TABLE nights (night TEXT PRIMARY KEY, started TEXT, finished TEXT, state TEXT,
                         exit_code INTEGER, plan TEXT);
    CREATE TABLE series (key TEXT PRIMARY KEY, title TEXT, first_night TEXT, source TEXT,
                         msgid TEXT);
    CREATE TABLE revisions (series TEXT, version INTEGER, msgid TEXT, change_id TEXT,
                            first_night TEXT, PRIMARY KEY (series, version, msgid));
    CREATE TABLE trees (label TEXT PRIMARY KEY, kind TEXT, path TEXT);
    CREATE TABLE tree_nights (night TEXT, tree TEXT, commit_id TEXT, version TEXT,
                              stale TEXT, PRIMARY KEY (night, tree));
    CREATE TABLE cells (night TEXT, series TEXT, tree TEXT, config TEXT, version INTEGER,
                        msgid TEXT, commit_id TEXT, status TEXT, detail TEXT, run_dir TEXT,
                        reproduce TEXT, accel TEXT, PRIMARY KEY (night, series, tree, config));
    CREATE TABLE tests (night TEXT, series TEXT, tree TEXT, config TEXT, test TEXT,
                        baseline TEXT, patched TEXT, transition TEXT, message TEXT,
                        PRIMARY KEY (night, series, tree, config, test));
    CREATE TABLE properties (night TEXT, series TEXT, tree TEXT, config TEXT, test TEXT,
                             name TEXT, value TEXT,
                             PRIMARY KEY (night, series, tree, config, test, name));
    CREATE TABLE figures (night TEXT, series TEXT, tree TEXT, config TEXT, name TEXT,
                          value REAL, PRIMARY KEY (night, series, tree, config, name));
    CREATE TABLE splats (night TEXT, series TEXT, tree TEXT, config TEXT, fingerprint TEXT,
                         title TEXT, side TEXT,
                         PRIMARY KEY (night, series, tree, config, fingerprint, side));
    CREATE TABLE durations (night TEXT, series TEXT, tree TEXT, config TEXT, side TEXT,
                            build_seconds REAL, boot_seconds REAL, built INTEGER,
                            booted INTEGER, PRIMARY KEY (night, series, tree, config, side));
    """,
    # 1 -> 2: the comparisons ask "last night with a result for this cell"
    # and "this figure over past nights" on every cell of every night.
    """
    CREATE INDEX cells_by_cell ON cells (series, tree, config, night);
    CREATE INDEX figures_by_name ON figures (series, tree, config, name, night);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
FILE = "history.sqlite"

# A cell with a result: something was built and judged (or did not apply).
RESULT_STATUSES = (CellStatus.PASS, CellStatus.FAIL, CellStatus.NO_APPLY,
                   CellStatus.BUILD_FAILED)


class History:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise BadInput(f"{path} is not an orch history: {e}")

    def close(self) -> None:
        self.db.close()

    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        v = self.version()
        if v > SCHEMA_VERSION:
            raise BadInput(f"{self.path} is history schema {v}, newer than this orch "
                           f"writes ({SCHEMA_VERSION}); upgrade orch")
        for i in range(v, SCHEMA_VERSION):
            # One transaction per step: a failed step leaves version i.
            self.db.executescript("BEGIN;" + MIGRATIONS[i] + f"PRAGMA user_version = {i + 1};"
                                  "COMMIT;")

    # -- writing ----------------------------------------------------------

    def record_night(self, n: Night) -> None:
        """Everything of night `n` (again: a rerun's rows replace the first's)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO nights VALUES (?,?,?,?,?,?)",
                            (n.night, n.started, n.finished, n.state, n.exit_code,
                             json.dumps(_plan_json(n))))
            for s in n.plan.series:
                # The first night's source and msgid stay: how it was found.
                self.db.execute("INSERT OR IGNORE INTO series VALUES (?,?,?,?,?)",
                                (s.key, s.title, n.night, s.source, s.msgid))
                self.db.execute("UPDATE series SET title = ? WHERE key = ?", (s.title, s.key))
                self.db.execute("INSERT OR IGNORE INTO revisions VALUES (?,?,?,?,?)",
                                (s.key, s.version, s.msgid, s.change_id, n.night))
            for t in n.plan.trees:
                self.db.execute("INSERT OR REPLACE INTO trees VALUES (?,?,?)",
                                (t.label, t.kind, t.path))
                self.db.execute("INSERT OR REPLACE INTO tree_nights VALUES (?,?,?,?,?)",
                                (n.night, t.label, t.commit, t.version, t.stale))
            for c in n.cells:
                self._cell(n.night, c)

    def _cell(self, night: str, c: Cell) -> None:
        k = (night, c.series, c.tree, c.config)
        for table in ("tests", "properties", "figures", "splats", "durations"):
            self.db.execute(f"DELETE FROM {table} WHERE night=? AND series=? AND tree=? "
                            "AND config=?", k)
        self.db.execute("INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (*k, c.version, c.msgid, c.commit, c.status, c.detail, c.run_dir,
                         c.reproduce, c.accel))
        for t in c.tests:
            self.db.execute("INSERT OR REPLACE INTO tests VALUES (?,?,?,?,?,?,?,?,?)",
                            (*k, t.name, t.baseline, t.patched, t.transition, t.message))
            for name, value in t.properties.items():
                self.db.execute("INSERT OR REPLACE INTO properties VALUES (?,?,?,?,?,?,?)",
                                (*k, t.name, name, value))
        for name, value in c.figures.items():
            self.db.execute("INSERT OR REPLACE INTO figures VALUES (?,?,?,?,?,?)",
                            (*k, name, value))
        for s in c.splats:
            self.db.execute("INSERT OR REPLACE INTO splats VALUES (?,?,?,?,?,?,?)",
                            (*k, s.fingerprint, s.title, s.side))
        for side in sorted(set(c.build_seconds) | set(c.boot_seconds)):
            self.db.execute("INSERT OR REPLACE INTO durations VALUES (?,?,?,?,?,?,?,?,?)",
                            (*k, side, c.build_seconds.get(side), c.boot_seconds.get(side),
                             int(c.built.get(side, False)), int(c.booted.get(side, False))))

    # -- reading ----------------------------------------------------------

    def found_by(self, source: str) -> list[tuple[str, str]]:
        """(key, msgid) of the series first found by `source` ("query: q")."""
        return [tuple(r) for r in self.db.execute(
            "SELECT key, msgid FROM series WHERE source=? ORDER BY first_night, key", (source,))]

    def tested_series(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT DISTINCT series FROM cells")}

    def last_tree(self, label: str, before: str) -> tuple[str, str | None, str] | None:
        """(commit, version, night) the tree was last tested at before `before`."""
        r = self.db.execute("SELECT commit_id, version, night FROM tree_nights WHERE tree=? "
                            "AND night<? ORDER BY night DESC LIMIT 1", (label, before)).fetchone()
        return tuple(r) if r else None

    def last_revision(self, series: str, before: str) -> int | None:
        r = self.db.execute("SELECT MAX(version) FROM cells WHERE series=? AND night<?",
                            (series, before)).fetchone()
        return r[0] if r and r[0] is not None else None

    def last_result(self, series: str, tree: str, config: str,
                    before: str) -> tuple[str, Cell] | None:
        """The last night before `before` with a result for this cell, and
        that cell as it was."""
        r = self.db.execute(
            "SELECT night FROM cells WHERE series=? AND tree=? AND config=? AND night<? AND "
            f"status IN ({','.join('?' * len(RESULT_STATUSES))}) ORDER BY night DESC LIMIT 1",
            (series, tree, config, before, *RESULT_STATUSES)).fetchone()
        return (r[0], self.cell(r[0], series, tree, config)) if r else None

    def cell(self, night: str, series: str, tree: str, config: str) -> Cell | None:
        k = (night, series, tree, config)
        r = self.db.execute("SELECT version, msgid, commit_id, status, detail, run_dir, "
                            "reproduce, accel FROM cells WHERE night=? AND series=? AND tree=? "
                            "AND config=?", k).fetchone()
        if r is None:
            return None
        c = Cell(series=series, version=r[0], msgid=r[1], tree=tree, commit=r[2], config=config,
                 status=CellStatus(r[3]), detail=r[4], run_dir=r[5], reproduce=r[6],
                 accel=r[7])
        props: dict[str, dict[str, str]] = {}
        for test, name, value in self.db.execute(
                "SELECT test, name, value FROM properties WHERE night=? AND series=? AND "
                "tree=? AND config=?", k):
            props.setdefault(test, {})[name] = value
        c.tests = [TestCell(t, _status(b), _status(p), tr, m or "", props.get(t, {}))
                   for t, b, p, tr, m in
                   self.db.execute("SELECT test, baseline, patched, transition, message FROM "
                                   "tests WHERE night=? AND series=? AND tree=? AND config=? "
                                   "ORDER BY test", k)]
        c.splats = [CellSplat(*row) for row in self.db.execute(
            "SELECT fingerprint, title, side FROM splats WHERE night=? AND series=? AND tree=? "
            "AND config=?", k)]
        c.figures = dict(self.db.execute("SELECT name, value FROM figures WHERE night=? AND "
                                         "series=? AND tree=? AND config=?", k).fetchall())
        for side, bs, boot, built, booted in self.db.execute(
                "SELECT side, build_seconds, boot_seconds, built, booted FROM durations "
                "WHERE night=? AND series=? AND tree=? AND config=?", k):
            if bs is not None:
                c.build_seconds[side] = bs
            if boot is not None:
                c.boot_seconds[side] = boot
            c.built[side], c.booted[side] = bool(built), bool(booted)
        return c

    def figure_history(self, series: str, tree: str, config: str, name: str,
                       before: str) -> list[float]:
        return [r[0] for r in self.db.execute(
            "SELECT value FROM figures WHERE series=? AND tree=? AND config=? AND name=? AND "
            "night<? ORDER BY night", (series, tree, config, name, before))]

    def series_history(self, series: str) -> list[HistoryPoint]:
        out = []
        for night, version, tree, commit, config, status, run_dir in self.db.execute(
                "SELECT night, version, tree, commit_id, config, status, run_dir FROM cells "
                "WHERE series=? ORDER BY night, tree, config", (series,)):
            figs = dict(self.db.execute("SELECT name, value FROM figures WHERE night=? AND "
                                        "series=? AND tree=? AND config=?",
                                        (night, series, tree, config)).fetchall())
            out.append(HistoryPoint(night, version, tree, commit, config, CellStatus(status),
                                    figs, f"nights/{night}/{run_dir}" if run_dir else None))
        return out

    def nights(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT night FROM nights ORDER BY night")]


def _status(s: str | None) -> Status | None:
    return None if s is None else Status(s)


def _plan_json(n: Night) -> dict:
    return jsonio.dump(n.plan)


@contextlib.contextmanager
def lock(directory: Path) -> Iterator[None]:
    """One nightly at a time on a history: the second is refused, not queued
    (a night that waits for the previous one would test a stale plan)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".nightly.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise OrchError(f"another orch nightly is running on {directory} (pid {holder}); "
                            "not starting a second", Exit.INFRA)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
