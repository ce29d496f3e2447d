"""A night as KCIDB v5 I/O data (kcidb.json), for kcidb-submit or any reader
of the Linux kernel CI database's schema (kcidb-io's LATEST, 5.3).

- checkouts: one per series revision x tree (the tree's commit with the
  series' patches; `valid` false when they did not apply), and one per tree
  alone (no patches) for the baseline kernels;
- builds: one per cell side that has a kernel; baselines are shared by the
  cells of the same tree and config, so each appears once;
- tests: one per test on the patched side;
- issues: one per kernel splat fingerprint (the same warning on any night is
  the same issue); incidents: each splat's occurrence in a build.

Every id is "<origin>:<kind>:<night>:<hash>": the hash covers the untrusted
parts (a msgid, a title) so that no id carries them, and the night makes each
night's data stand alone. An issue id has no night: it names the splat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from urllib.parse import quote

from orchestrator.nightly.night import Cell, CellStatus, Night, TestCell
from orchestrator.reports.reportlib import (
    one_line,
    printable,
    series_index,
    short_title,
)

SCHEMA = (5, 3)   # kcidb_io.schema.LATEST when this was written
ORIGIN = re.compile(r"^[a-z0-9_]+$")
MAX_MBOX = 64 << 20

# orch's test status -> KCIDB's. In KCIDB, ERROR is "the test's own code
# broke" and MISS "it did not run": orch's MISS (expected, never reported)
# and a test not run at all (None) are MISS; FLAKY (mixed outcomes over
# --repeat) is a failure, as orch's own verdict counts it.
TEST_STATUS = {"PASS": "PASS", "FAIL": "FAIL", "FLAKY": "FAIL", "ERROR": "ERROR",
               "SKIP": "SKIP", "MISS": "MISS", None: "MISS"}

_SIDES = ("baseline", "patched")
# A kselftest's test id starts so (guest.kselftest_run.PREFIX; reports read
# records only). KCIDB's test catalog (tests.yaml) roots them at "kselftest".
KSELFTEST = "kselftest/"
_PATH_OK = re.compile(r"[A-Za-z0-9_]")
_HASH40 = re.compile(r"^[0-9a-f]{40}$")


def _h(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _text(text: str | None, limit: int = 2000) -> str:
    # KCIDB forbids only NUL; printable() also drops the other controls,
    # since dashboards render these fields, and what UTF-8 cannot carry.
    return printable(text, limit)


def _escape(part: str) -> str:
    """One path component in KCIDB's alphabet, [A-Za-z0-9_-]: "-" is the
    escape, "--" a hyphen, "-xx" a character up to 0xff and "-uxxxxxx"
    any other, so the original can be read back."""
    out = []
    for ch in part:
        if _PATH_OK.fullmatch(ch):
            out.append(ch)
        elif ch == "-":
            out.append("--")
        elif ord(ch) < 0x100:
            out.append(f"-{ord(ch):02x}")
        else:
            out.append(f"-u{ord(ch):06x}")
    return "".join(out)


def test_path(nodeid: str) -> str:
    """A pytest node id as a KCIDB test path (dot-separated, no "::" or
    "["): "guest_tests/test_f.py::Class::test[a-b]" ->
    "guest_tests.test_f.Class.test.a--b". The JUnit form orch also uses,
    "guest_tests.test_f::test", gives the same path. The parameters are one
    last component; the node id itself goes in the test's misc.

    A kselftest's id, "kselftest/<T>/<X>" (T may hold "/"), is the path
    KCIDB's test catalog roots at "kselftest": "kselftest.<T>.<X>", every
    "/" a dot and each part escaped as a whole, no "[" or ".py" read into
    it ("kselftest/drivers/net/ping.py" -> "kselftest.drivers.net.ping-2epy";
    a subtest "kselftest/<T>/<X>/<name>" is one part more)."""
    if nodeid.startswith(KSELFTEST):
        return ".".join(_escape(n) for n in nodeid.split("/") if n)
    head, bracket, params = nodeid.partition("[")
    parts = head.split("::")
    first = parts[0]
    if first.endswith(".py") or "/" in first:
        names = first.removesuffix(".py").split("/")
    else:
        names = first.split(".")
    names += parts[1:]
    if bracket:
        names.append(params[:-1] if params.endswith("]") else params)
    return ".".join(_escape(n) for n in names if n)


def _time(stamp: str | None) -> str | None:
    """An RFC 3339 date-time, or None: the schema's format wants a zone."""
    try:
        t = dt.datetime.fromisoformat(stamp or "")
    except ValueError:
        return None
    return t.isoformat() if t.tzinfo else None


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox, each from its "From " line. mboxo and mboxrd
    escape body lines that start with "From ", so each such line starts a
    message."""
    starts = [m.start() for m in re.finditer(rb"(?m)^From ", data)]
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def patchset(night_dir: Path | None, mbox: str, url_base: str | None = None
             ) -> tuple[list[dict], str] | None:
    """KCIDB's patchset_files and patchset_hash for the series' pinned mbox:
    the files are the mbox itself (git apply takes it whole), the hash is
    sha256 over the newline-terminated sha256 of each message that carries a
    diff (a cover letter or a reply does not), in order, as the schema
    describes it. None when the mbox is not there to read."""
    if night_dir is None or not mbox:
        return None
    root = night_dir.resolve()
    path = (root / mbox).resolve()
    # night.json is orch's own, but a copied night directory is input too:
    # never read outside it.
    if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_MBOX:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    patches = [m for m in split_mbox(data) if re.search(rb"(?m)^diff --git ", m)]
    digest = hashlib.sha256(b"".join(hashlib.sha256(p).hexdigest().encode() + b"\n"
                                     for p in patches)).hexdigest() if patches else ""
    rel = path.relative_to(root).as_posix()
    url = f"{url_base.rstrip('/')}/{quote(rel)}" if url_base else path.as_uri()
    return [{"name": path.name, "url": url}], digest


class _Doc:
    """The document under construction, with its objects keyed by id so a
    shared baseline build or a recurring splat appears once."""

    def __init__(self, night: Night, origin: str, night_dir: Path | None,
                 url_base: str | None):
        self.night, self.origin = night, origin
        self.night_dir, self.url_base = night_dir, url_base
        self.series = series_index(night)
        self.trees = {t.label: t for t in night.plan.trees}
        self.started = _time(night.started)
        self.objects: dict[str, dict[str, dict]] = {
            k: {} for k in ("checkouts", "builds", "tests", "issues", "incidents")}

    def id(self, kind: str, *parts: str) -> str:
        return f"{self.origin}:{kind}:{self.night.night}:{_h(*parts)}"

    def put(self, kind: str, obj: dict) -> dict:
        return self.objects[kind].setdefault(obj["id"], obj)

    def _base_checkout(self, obj: dict, cell: Cell) -> dict:
        tree = self.trees.get(cell.tree)
        obj.update(origin=self.origin, tree_name=one_line(cell.tree, 200))
        commit = cell.commit or (tree.commit if tree else "")
        if _HASH40.match(commit):
            obj["git_commit_hash"] = commit
        if tree and tree.version:
            # A Debian source package's version, or the git ref orch followed.
            key = "git_repository_branch" if tree.kind == "git" else "git_commit_name"
            obj[key] = one_line(tree.version, 200)
        if self.started:
            obj["start_time"] = self.started
        return obj

    def tree_checkout(self, cell: Cell) -> str:
        cid = self.id("checkout", cell.tree, cell.commit)
        obj = self.put("checkouts", self._base_checkout({"id": cid}, cell))
        obj.update(patchset_hash="", valid=True,
                   comment=one_line(f"{cell.tree} (baseline, no patches)", 300),
                   misc={"night": self.night.night, "side": "baseline"})
        return cid

    def series_checkout(self, cell: Cell) -> str:
        cid = self.id("checkout", cell.tree, cell.commit, cell.series, str(cell.version))
        obj = self.objects["checkouts"].get(cid)
        if obj is None:
            obj = self.put("checkouts", self._base_checkout({"id": cid}, cell))
            rev = self.series.get(cell.series)
            misc = {"night": self.night.night, "side": "patched",
                    "series": one_line(cell.series, 300), "version": cell.version}
            msgid = (rev.msgid if rev else cell.msgid).strip("<>")
            if "@" in msgid:   # the schema's "email" format
                obj["message_id"] = one_line(msgid, 300)
            if rev:
                obj["comment"] = one_line(rev.title, 300)
                misc["source"] = one_line(rev.source, 300)
                if rev.change_id:
                    misc["change_id"] = one_line(rev.change_id, 300)
                ps = patchset(self.night_dir, rev.mbox, self.url_base)
                if ps:
                    obj["patchset_files"], obj["patchset_hash"] = ps
            obj["misc"] = misc
        if cell.status == CellStatus.NO_APPLY:
            obj["valid"] = False
            obj["log_excerpt"] = _text(cell.detail, 16000)
        elif cell.status != CellStatus.ERROR or self._sides(cell):
            obj.setdefault("valid", True)
        return cid

    @staticmethod
    def _sides(cell: Cell) -> list[str]:
        """The sides that have a kernel: built (or taken from the cache),
        booted, tested, or with a splat."""
        have = set(cell.build_seconds) | set(cell.built) | set(cell.boot_seconds) \
            | set(cell.booted) | {s.side for s in cell.splats}
        if cell.tests:
            have.add("patched")
        return [s for s in _SIDES if s in have]

    def build(self, cell: Cell, side: str) -> str:
        if side == "baseline":
            checkout = self.tree_checkout(cell)
            bid = self.id("build", cell.tree, cell.commit, cell.config)
        else:
            checkout = self.series_checkout(cell)
            bid = self.id("build", cell.tree, cell.commit, cell.config, cell.series,
                          str(cell.version))
        obj = self.put("builds", {"id": bid, "origin": self.origin, "checkout_id": checkout,
                                  "config_name": one_line(cell.config, 100),
                                  "misc": {"side": side}})
        if side in cell.build_seconds:
            # 0 s: the kernel came from orch's cache. A shared baseline keeps
            # the longest, the night it was compiled.
            obj["duration"] = max(obj.get("duration", 0.0), float(cell.build_seconds[side]))
        if cell.built.get(side):
            obj["misc"]["compiled_tonight"] = True
        status = self._build_status(cell, side)
        if status:
            obj["status"] = status
        if side == "patched":
            obj["comment"] = one_line(f"{short_title(self._title(cell), 200)} v{cell.version} "
                                      f"on {cell.tree}, {cell.config}", 300)
            obj["misc"]["reproduce"] = _text(cell.reproduce, 2000)
            if status == "FAIL":
                obj["log_excerpt"] = _text(cell.detail, 16000)
        else:
            obj["comment"] = one_line(f"{cell.tree} {cell.config} (baseline)", 300)
        return bid

    def _title(self, cell: Cell) -> str:
        rev = self.series.get(cell.series)
        return rev.title if rev else cell.series

    @staticmethod
    def _build_status(cell: Cell, side: str) -> str | None:
        if cell.status == CellStatus.BUILD_FAILED:
            return "FAIL" if side == "patched" else "PASS"
        if cell.booted.get(side) or side in cell.boot_seconds or cell.status in (CellStatus.PASS, CellStatus.FAIL):
            return "PASS"
        return None   # an ERROR before the boot: unknown, which KCIDB writes as absent

    def test(self, cell: Cell, build_id: str, t: TestCell, seen: set[str]) -> str:
        key = t.name
        while key in seen:   # the same node id twice in a cell: keep both
            key += "#"
        seen.add(key)
        tid = self.id("test", cell.id, key)
        obj = {"id": tid, "origin": self.origin, "build_id": build_id,
               "path": test_path(t.name), "status": TEST_STATUS.get(t.patched, "ERROR"),
               "comment": one_line(f"{t.name}: {t.transition} (baseline "
                                   f"{t.baseline or 'not run'})", 500),
               "misc": {"nodeid": _text(t.name, 1000), "transition": one_line(t.transition),
                        "baseline": t.baseline or "not run",
                        "properties": {_text(k, 100): _text(v, 500)
                                       for k, v in t.properties.items()}}}
        if t.message:
            obj["log_excerpt"] = _text(t.message, 16000)
        if cell.accel:
            obj["environment"] = {"comment": one_line(f"orch guest VM ({cell.accel})", 100)}
        if self.started:
            obj["start_time"] = self.started
        self.put("tests", obj)
        return tid

    def splat(self, cell: Cell, build_id: str, fingerprint: str, title: str) -> None:
        fp = fingerprint if re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", fingerprint or "") \
            else _h(fingerprint or "")
        iid = f"{self.origin}:splat:{fp}"
        self.put("issues", {"id": iid, "version": 1, "origin": self.origin,
                            "report_subject": one_line(title, 300),
                            "comment": one_line(title, 300),
                            "culprit": {"code": True, "tool": False, "harness": False},
                            "misc": {"fingerprint": _text(fingerprint, 200)}})
        self.put("incidents", {"id": self.id("incident", build_id, fp), "origin": self.origin,
                               "issue_id": iid, "issue_version": 1, "build_id": build_id,
                               "present": True,
                               "comment": one_line(f"{title} ({cell.config})", 300)})


def kcidb_json(night: Night, origin: str = "orch", night_dir: Path | None = None,
               url_base: str | None = None) -> dict:
    """The night as one KCIDB document. `night_dir` lets the series' mboxes
    be read for patchset_files/patchset_hash (left out when absent);
    `url_base` is where the night directory is published (else file:// URLs)."""
    if not ORIGIN.match(origin):
        raise ValueError(f"a KCIDB origin is lower-case letters, digits and _: {origin!r}")
    doc = _Doc(night, origin, night_dir, url_base)
    for cell in night.cells:
        doc.series_checkout(cell)
        builds = {side: doc.build(cell, side) for side in doc._sides(cell)}
        if cell.tests:
            seen: set[str] = set()
            for t in cell.tests:
                doc.test(cell, builds["patched"], t, seen)
        for s in cell.splats:
            # A side orch does not know yet: the patched kernel printed it.
            build_id = builds.get(s.side) or builds.get("patched") or doc.build(cell, "patched")
            doc.splat(cell, build_id, s.fingerprint, s.title)
    data: dict = {"version": {"major": SCHEMA[0], "minor": SCHEMA[1]}}
    for kind, objs in doc.objects.items():
        if objs:
            data[kind] = list(objs.values())
    return data
