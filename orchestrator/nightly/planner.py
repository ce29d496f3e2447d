"""A night's plan: discover, then pin.

The newest revision of each tracked series (b4's own lookup, change-id
aware), the series matching each lore query that were never tested, and the
newest version or commit of each tree, each pinned (the series' mbox in the
night's directory, the tree's commit) and written down before anything
runs. What could not be discovered is a line in plan.problems, not a crash:
a lore query that fails still leaves the tracked series to test.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.errors import OrchError
from orchestrator.core.sanitize import clean
from orchestrator.nightly import discover, history
from orchestrator.nightly.night import Plan, SeriesRev, TreeState
from orchestrator.run.record import now
from orchestrator.source import debsrc


def make(cfg, night: str, hist: history.History, ndir: Path, progress) -> Plan:
    plan = Plan(night, cfg.lore_url, list(cfg.configs), [], [], created=now(),
                guest_tests=cfg.guest_tests, guest_timeout=cfg.guest_timeout,
                test_timeout=cfg.test_timeout, timeout=cfg.timeout,
                nightly_toml=str(cfg.file), nightly_toml_sha256=cfg.digest or None,
                kselftests=list(cfg.kselftests) or None,
                suites=[str(d) for d in cfg.suites] or None, kconfig=cfg.kconfig,
                kconfig_add=list(cfg.kconfig_add) or None, cpus=cfg.cpus, memory=cfg.memory)
    sdir = ndir / "series"
    sdir.mkdir(parents=True, exist_ok=True)
    logs = ndir / "logs"
    logs.mkdir(exist_ok=True)
    seen: set[str] = set()

    def pin(msgid: str, source: str) -> SeriesRev | None:
        try:
            found = discover.newest_revision(msgid, cfg.lore_url, sdir,
                                             logs / f"b4-{len(seen)}.log", cfg.lore_timeout)
        except OrchError as e:
            plan.problems.append(clean(f"{source}: {msgid}: {e}", 300))
            return None
        rev = discover.series_rev(found, source, ndir)
        if rev.key in seen:
            return None
        seen.add(rev.key)
        plan.series.append(rev)
        progress.say(f"series {rev.title[:60]} v{rev.version} ({source})")
        return rev

    for msgid in cfg.series:
        rev = pin(msgid, "tracked")
        if rev is not None:
            rev.expect_fixed = cfg.expect_fixed.get(msgid)
            if cfg.series_kselftests.get(msgid):
                plan.series_kselftests = {**(plan.series_kselftests or {}),
                                          rev.key: list(cfg.series_kselftests[msgid])}
    tested = hist.tested_series()
    for q in cfg.queries:
        # A series a query found on an earlier night is followed like a
        # tracked one while the query is configured: its newest revision.
        for key, msgid in hist.found_by(f"query: {q}"):
            if key not in seen:
                pin(msgid, f"query: {q}")
        try:
            hits = discover.search(q, cfg.lore_url, timeout=cfg.lore_timeout)
        except OrchError as e:
            plan.problems.append(clean(f"query {q!r}: {e}", 300))
            continue
        for hit in hits:
            if hit.key in tested or hit.key in seen:
                continue   # tracked, or tested on an earlier night: not new
            pin(hit.msgid, f"query: {q}")
    for spec in cfg.trees:
        t = _tree(spec, night, hist, plan)
        if t is not None:
            plan.trees.append(t)
            progress.say(f"tree {t.label} at {t.version or ''} {t.commit[:12]}"
                         + (f" (stale: {t.stale})" if t.stale else ""))
    return plan


def _tree(spec, night: str, hist: history.History, plan: Plan) -> TreeState | None:
    last = hist.last_tree(spec.label, before=night)
    try:
        if spec.debian_source:
            version = discover.newest_debian_version(spec.debian_source, spec.suites)
            tree = debsrc.import_tree(spec.debian_source, spec.suites, version=version)
            commit = discover.head_commit(tree.path)
            t = TreeState(spec.label, "debian", str(tree.path), commit, tree.version,
                          package=spec.debian_source, suites=list(spec.suites))
            if last and last[1] and last[1] != tree.version:
                t.moved_from = last[1]
            return t
        commit, stale = discover.git_tree_head(spec.path, spec.ref)
        t = TreeState(spec.label, "git", str(spec.path), commit, spec.ref, stale=stale)
        if last and last[0] != commit:
            t.moved_from = last[0][:12]
        return t
    except OrchError as e:
        plan.problems.append(clean(f"tree {spec.label}: {e}", 300))
        return None
