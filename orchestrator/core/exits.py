"""Every exit status orch exits with, each number with one meaning whatever
the command (a script need not know which command it ran), and which of
them each command uses, with what it means there. The one source of every
`--help`'s exit-status list (epilog()) and of the tables in README.md and
docs/verdicts.md (markdown(); tests/test_docs.py keeps them equal to it, and
`python -m orchestrator.core.exits FILE...` rewrites them).

`orch check` is one step of `git bisect run`, which reads 0, 1 and 125 as
good, bad and skip and stops at 128 or more: its statuses are git's, a table
of their own (GitBisect), since orch's 2 and 5 would read as "bad" there.
"""

from __future__ import annotations

import enum
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import Exit


class GitBisect(enum.IntEnum):
    """`orch check`'s statuses: what `git bisect run` reads."""
    GOOD = 0
    BAD = 1
    SKIP = 125
    BAD_INPUT = 128       # 128 and above stop the bisect
    INFRA = 129
    INTERRUPTED = 130

    @classmethod
    def of_outcome(cls, outcome: str) -> GitBisect:
        """A step's outcome (good, bad, skip; old and new with --fixed)."""
        return {"good": cls.GOOD, "old": cls.GOOD, "bad": cls.BAD, "new": cls.BAD,
                "skip": cls.SKIP}[outcome.lower()]

    @classmethod
    def of_exit(cls, code: int) -> GitBisect:
        """A check that came to no answer: whatever stopped it stops the bisect."""
        if code == Exit.BAD_INPUT:
            return cls.BAD_INPUT
        return cls.INTERRUPTED if code == Exit.INTERRUPTED else cls.INFRA


# Each status's one meaning, short (a --help row starts with it) and long
# (the README's table).
MEANING: dict[int, tuple[str, str]] = {
    Exit.OK: ("ok", "done, and nothing fails"),
    Exit.TESTS_FAILED: ("failed", "what was tested fails: a finding about the code, not orch"),
    Exit.BAD_INPUT: ("bad input", ("a bad flag, file, name or reference: a retry fails the "
                     "same way until it is fixed")),
    Exit.NO_APPLY: ("does not apply", "the series does not apply to its base"),
    Exit.PATCHED_BUILD: ("patched build failed", "the series breaks the build"),
    Exit.INFRA: ("infrastructure", ("the host, QEMU, the network or a build orch needs failed: "
                 "not the series' fault, worth a retry")),
    Exit.INCONCLUSIVE: ("inconclusive", "a bisect that cannot name one commit"),
    Exit.INCOMPLETE: ("incomplete", ("a run or night that did not finish: a CI job that did not "
                      "report, a run that was killed")),
    Exit.INTERRUPTED: ("interrupted", ("Ctrl-C or SIGTERM (or the reader of its output went "
                       "away): children stopped, locks released, the record says how far it "
                       "got")),
}

GIT_MEANING: dict[int, str] = {
    GitBisect.GOOD: "good",
    GitBisect.BAD: "bad",
    GitBisect.SKIP: "skip",
    GitBisect.BAD_INPUT: "bad input (the bisect stops)",
    GitBisect.INFRA: "infrastructure (the bisect stops)",
    GitBisect.INTERRUPTED: "interrupted (the bisect stops)",
}


@dataclass(frozen=True)
class Row:
    """A status a command exits with, and what it means for that command."""
    code: int
    detail: str = ""


@dataclass(frozen=True)
class Table:
    """A command's statuses. `git`: git bisect run's numbers (orch check)."""
    rows: tuple[Row, ...]
    intro: str = ""          # a line before the rows (orch report)
    git: bool = False

    def meaning(self, code: int) -> str:
        return GIT_MEANING[code] if self.git else MEANING[code][0]


R = Row
COMMANDS: dict[str, Table] = {
    "test": Table((
        R(Exit.OK, "the patched kernel passed every test on every config, but for known "
          "failures (failing on the baseline too, and not a test the series targets)"),
        R(Exit.TESTS_FAILED, "a config has a regression, a new splat, a patched failure (a "
          "target the series was expected to fix still fails), or its patched kernel did not "
          "come up or tested nothing (wins over 5 on another config)"),
        R(Exit.BAD_INPUT, "a bad flag, unknown Message-ID, unreadable mbox, no such "
          "tree/config, a selection that matches nothing"),
        R(Exit.NO_APPLY, "the patch, the files and the hunks are named"),
        R(Exit.PATCHED_BUILD, "with --each-patch, the first patch that breaks it is named"),
        R(Exit.INFRA, "the baseline build, the VM, lore, a timeout (and no config failed)"),
        R(Exit.INTERRUPTED, "the run record says how far it got"),
    )),
    "bisect": Table((
        R(Exit.OK, "the first bad (or first fixed) commit is found, and confirmed by booting "
          "it and its parent again"),
        R(Exit.BAD_INPUT, "unknown refs, good not an ancestor of bad, a selection that matches "
          "nothing, or an end that is not what it is said to be (which one is printed)"),
        R(Exit.INFRA, "QEMU, the host, a broken build of orch's own making"),
        R(Exit.INCONCLUSIVE, "only skipped commits are left (the candidates are listed), or "
          "the confirmation boots disagreed with the bisect"),
        R(Exit.INTERRUPTED, "`orch bisect --resume RUN_DIR` goes on from where it stopped"),
    )),
    "check": Table((
        R(GitBisect.GOOD, "every selected test passed (--build: it builds; --splat: no "
          "splat)"),
        R(GitBisect.BAD, "a selected test failed or errored, or the kernel died in one "
          "(--fixed swaps 0 and 1, as `git bisect start --term-old broken --term-new fixed`)"),
        R(GitBisect.SKIP, "the commit does not build, or its kernel never reached the tests "
          "twice"),
        R(GitBisect.BAD_INPUT, "a bad flag, no such tree or config, a selection that matches "
          "nothing"),
        R(GitBisect.INFRA, "QEMU, the host, an unusable cache or run directory, a bug in orch"),
        R(GitBisect.INTERRUPTED, "Ctrl-C or SIGTERM"),
    ), git=True),
    "nightly": Table((
        R(Exit.OK, "no regression since the last night with a result, no new series or "
          "revision failing"),
        R(Exit.TESTS_FAILED, "something new fails (the reports' headline says what)"),
        R(Exit.BAD_INPUT, "a bad NIGHTLY.toml or flag"),
        R(Exit.INFRA, "the night produced no result at all (lore, the trees, every build or "
          "boot failed), or another nightly is running on the same --out"),
        R(Exit.INTERRUPTED, "run it again for the same --night to finish it"),
    )),
    "plan": Table((
        R(Exit.OK, "the plan and the engine's file are written (problems, if any, are printed "
          "and kept in plan.json; orch merge reports them)"),
        R(Exit.BAD_INPUT, "a bad NIGHTLY.toml, flag or plan directory"),
    )),
    "job": Table((
        R(Exit.OK, "the job ran (a series job: every cell has its run directory; what the "
          "cells found is orch merge's to judge)"),
        R(Exit.BAD_INPUT, "a bad plan directory, job name or flag"),
        R(Exit.INFRA, "the baseline did not build or boot, or the tree is not here"),
        R(Exit.INTERRUPTED),
    )),
    "merge": Table((
        R(Exit.OK, "nothing new fails, and every job reported"),
        R(Exit.TESTS_FAILED, "something new fails"),
        R(Exit.BAD_INPUT, "no plan, or shards of another plan"),
        R(Exit.INFRA, "no cell has a result"),
        R(Exit.INCOMPLETE, "nothing new fails, but a job's shard is missing or failed (named "
          "in the reports)"),
    )),
    "report": Table((
        R(Exit.BAD_INPUT, "the run directory has no readable run.json, or one of a newer "
          "schema version than this orch reads; an id that names no run (the nearest are "
          "named) or a prefix of several (they are listed)"),
        R(Exit.INCOMPLETE, "the run did not finish: its record still says it is running (it "
          "was killed, or is still going)"),
    ), intro="the run's own exit status when it ended (its command's --help; an orch "
             "check run: git bisect run's; an interrupted run: 130), or"),
    # -- orch runs (helper B's rows) --
    "runs": Table((
        R(Exit.OK, "the runs are listed, or a line says there are none; a run.json that "
          "cannot be read is skipped with a note on stderr"),
        R(Exit.BAD_INPUT, "a DIR that is not a directory, a bad flag, or a config file "
          "that cannot be read"),
    )),
    # -- orch cache (helper A's rows) --
    "cache": Table((
        R(Exit.OK, "du: the sizes are printed; gc: the cache is trimmed as far as it may be "
          "(what a running orch holds or the nightly pins is kept, and said so)"),
        R(Exit.BAD_INPUT, "a bad flag, size or age, or a cache that is not a readable "
          "directory"),
        R(Exit.INFRA, "gc: an entry could not be removed (each is named; the rest is "
          "trimmed)"),
    )),
}
del R

WIDTH = 92    # a --help line, at most
INDENT = 7    # where a row's text starts: "  130  "


def epilog(command: str | None = None) -> str:
    """The end of `orch COMMAND --help`: the statuses it exits with; of
    `orch --help` (command None): every status and its one meaning."""
    if command is None:
        lines = [("exit status (one meaning per number in every command; see `orch COMMAND "
                 "--help`):")]
        for code, (short, long) in MEANING.items():
            lines += _row(code, f"{short}: {long}")
        lines += _wrap("orch check exits with git bisect run's statuses instead: 0 good, "
                       "1 bad, 125 skip, 128 and above stop the bisect", "  ", "  ")
        return "\n".join(lines)
    table = COMMANDS[command]
    title = "exit status (what git bisect run reads):" if table.git else "exit status:"
    lines = [title] + (_wrap(table.intro, "  ", "  ") if table.intro else [])
    for row in table.rows:
        meaning = table.meaning(row.code)
        lines += _row(row.code, f"{meaning}: {row.detail}" if row.detail else meaning)
    return "\n".join(lines)


def _row(code: int, text: str) -> list[str]:
    return _wrap(text, f"  {code:<4} ")


def _wrap(text: str, first: str, rest: str = " " * INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False)


# -- the Markdown tables (README.md, docs/verdicts.md) -----------------------------------

BEGIN, END = "<!-- exit-statuses: generated by python -m orchestrator.core.exits -->", \
    "<!-- /exit-statuses -->"


def markdown() -> str:
    """The tables README.md and docs/verdicts.md hold between BEGIN and END."""
    out = ["| status | meaning | what it means for each command |", "|---|---|---|"]
    for code, (short, long) in MEANING.items():
        uses = [f"`{name}`: {row.detail or short}" for name, t in COMMANDS.items()
                if not t.git for row in t.rows if row.code == code]
        out.append(f"| {code} | **{short}**: {long} | {'; '.join(uses)} |")
    out += ["", ("`orch report` exits with the status of the run it reports, 7 for one that "
            "did not finish. `orch check`, one step of `git bisect run`, exits with git's "
            "statuses instead (128 and above stop the bisect):"), "",
            "| status | git bisect reads | when |", "|---|---|---|"]
    for row in COMMANDS["check"].rows:
        out.append(f"| {row.code} | {GIT_MEANING[row.code]} | {row.detail or ''} |")
    return "\n".join(out)


def in_document(text: str) -> str | None:
    """What `text` holds between BEGIN and END, or None without them."""
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n?" + re.escape(END), text, re.DOTALL)
    return m.group(1).strip("\n") if m else None


def rewrite(path: Path) -> bool:
    """Put markdown() between the markers in `path`; True when it changed."""
    text = path.read_text()
    if in_document(text) is None:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} to rewrite")
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END),
                 lambda _: f"{BEGIN}\n{markdown()}\n{END}", text, flags=re.DOTALL)
    path.write_text(new)
    return new != text


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(markdown())
    for name in sys.argv[1:]:
        print(f"{name}: {'rewritten' if rewrite(Path(name)) else 'up to date'}")
