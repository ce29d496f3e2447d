"""A night as a short plain-text summary (summary.txt), to mail or to print
in a CI log: what the exit status means, then what changed since the last
night (regressions first, each with the command that reproduces it), then
one line per cell, worst first.

It fits a mail: lines of at most WIDTH columns (a token longer than that,
such as a long test id, keeps its own line rather than being cut), and at
most MAX_LINES lines, the rest counted in "... and N more"."""

from __future__ import annotations

import textwrap
from collections import Counter

from orchestrator.nightly.night import STATUSES, Change, Night
from orchestrator.reports.reportlib import exit_meaning, one_line, series_name
from orchestrator.run.record import RunState

WIDTH = 80
MAX_LINES = 40
MIN_CELL_LINES = 8   # the matrix keeps at least this many lines however many changes


def _wrap(text: str, indent: str, more: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent,
                         subsequent_indent=indent if more is None else more,
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


def _shell_words(cmd: str) -> list[str] | None:
    """`cmd` split at the spaces outside quotes, quotes kept: breaking a
    line there with a backslash leaves the same command. None when its
    quotes do not balance (then it is not broken at all)."""
    words, cur, quote = [], "", ""
    for ch in cmd:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            cur += ch
            quote = ch
        elif ch == " ":
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += ch
    if quote or cur.endswith("\\"):
        return None
    return words + [cur] if cur else words


def _command(cmd: str, indent: str) -> list[str]:
    """A shell command over several lines, each but the last ending in " \\",
    so it pastes into a shell as it is."""
    first = indent + "$ "
    words = _shell_words(cmd)
    if not words:
        return [first + cmd]
    lines, cur = [], first + words[0]
    for w in words[1:]:
        if len(cur) + 1 + len(w) + 2 <= WIDTH:
            cur += " " + w
        else:
            lines.append(cur + " \\")
            cur = indent + "    " + w
    return lines + [cur]


def _change_block(night: Night, c: Change) -> list[str]:
    where = [series_name(night, c.series)] if c.series else []
    where += [one_line(x, 60) for x in (c.tree, c.config) if x]
    head = ("! REGRESSION " if c.regression else "- ") + one_line(c.kind, 30)
    lines = _wrap(head + (": " + " / ".join(where) if where else ""), "", "  ")
    lines += _wrap(one_line(c.text, 600), "    ")
    if c.reproduce:
        lines += _command(one_line(c.reproduce, 600), "    ")
    return lines


def _header(night: Night, site_url: str | None) -> list[str]:
    code = night.exit_code
    lines = [f"orch nightly {one_line(night.night, 20)}: {exit_meaning(code, night.state)}"
             + (f" (exit {code})" if code is not None else "")]
    by_status = ", ".join(f"{n} {s}" for s, n in _status_counts(night))
    lines += _wrap(f"{len(night.cells)} cells ({by_status or 'none'}): "
                   f"{len(night.plan.series)} series x {len(night.plan.trees)} tree(s) x "
                   f"configs {', '.join(one_line(c, 40) for c in night.plan.configs)}", "")
    if night.state != RunState.DONE:
        lines.append(f"state: {one_line(night.state, 40)} (started {one_line(night.started, 40)})")
    if site_url:
        lines.append(f"report: {one_line(site_url, 200).rstrip('/')}/nights/"
                     f"{one_line(night.night, 20)}/")
    return lines


def _status_counts(night: Night) -> list[tuple[str, int]]:
    counts = Counter(c.status for c in night.cells)
    order = list(STATUSES) + sorted(set(counts) - set(STATUSES))
    return [(one_line(s, 20), counts[s]) for s in order if counts[s]]


def _cell_lines(night: Night) -> list[str]:
    """Status, config, tree, series: the series last, as the longest and
    the one a cut costs least (the changes above name it in full)."""
    rank = {s: i for i, s in enumerate(STATUSES)}
    cells = sorted(night.cells, key=lambda c: rank.get(c.status, -1))  # unknown: first
    config_w = min(max((len(one_line(c.config, 12)) for c in cells), default=0), 12)
    tree_w = min(max((len(one_line(c.tree, 30)) for c in cells), default=0), 30)
    return [one_line(f"{one_line(c.status, 12):<12} {one_line(c.config, 12):<{config_w}} "
                     f"{one_line(c.tree, 30):<{tree_w}} "
                     f"{series_name(night, c.series, c.version, 60)}", WIDTH)
            for c in cells]


def summary_text(night: Night, site_url: str | None = None) -> str:
    out = _header(night, site_url) + [""]
    cells = _cell_lines(night)
    # The matrix's share: its heading, and its lines up to MIN_CELL_LINES.
    matrix_min = 2 + min(len(cells), MIN_CELL_LINES)
    changes = sorted(night.changes, key=lambda c: not c.regression)   # stable: regressions first
    regressions = sum(c.regression for c in changes)
    if changes:
        out.append(f"Changes since the last night ({len(changes)}, "
                   f"{regressions} regression{'s' if regressions != 1 else ''}):")
        budget = MAX_LINES - matrix_min - len(out) - 1   # one for "... and N more"
        for i, c in enumerate(changes):
            block = _change_block(night, c)
            if len(block) > budget:
                out.append(f"... and {len(changes) - i} more change(s)")
                break
            out += block
            budget -= len(block)
    else:
        out.append("No changes since the last night.")
    out += ["", "Cells (status, config, tree, series), worst first:"]
    room = MAX_LINES - len(out)
    if len(cells) > room:
        cells = cells[:room - 1] + [f"... and {len(cells) - room + 1} more cell(s)"]
    out += cells
    return "\n".join(out) + "\n"
