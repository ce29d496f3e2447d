"""mkdocs hook: the CLI reference (docs/cli.md) rendered from
orchestrator.cli.parser() at build time, so each command's help, flags and
exit statuses are written once, in the parsers, and the page cannot drift.

argparse has no public API for walking a parser, so this reads the same
attributes its own HelpFormatter reads (_actions, _action_groups, ...)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass

from mdtext import inline as _md
from mkdocs.exceptions import PluginError

PAGE = "cli.md"
MARKER = "<!-- cli-reference -->"
# Wide enough that usage lines wrap as a terminal of 100 columns shows them,
# and fixed, so the page does not depend on the terminal that built it.
WIDTH = 100


@dataclass(frozen=True)
class Command:
    parser: argparse.ArgumentParser
    summary: str  # the one line the parent's command list shows
    depth: int    # 0: orch itself


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} lacks {MARKER}, where the CLI reference goes")
    # Imported here: mkdocs loads hooks before any page, and a page other
    # than this one needs nothing of orch.
    from orchestrator import cli
    return markdown.replace(MARKER, render(cli.parser()))


def render(root: argparse.ArgumentParser) -> str:
    """The reference of `root` and every subcommand under it, as Markdown."""
    return "\n".join(_section(c) for c in commands(root))


def commands(parser: argparse.ArgumentParser, summary: str = "",
             depth: int = 0) -> Iterator[Command]:
    yield Command(parser, summary, depth)
    for action in _subcommand_actions(parser):
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias names a parser already listed
                continue
            seen.add(id(sub))
            yield from commands(sub, helps.get(name, ""), depth + 1)


def anchor(prog: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prog.lower()).strip("-")


def visible_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions `--help` lists: all but the suppressed and the subcommands."""
    return [a for a in parser._actions
            if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)]


def _subcommand_actions(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=WIDTH)


def _section(cmd: Command) -> str:
    p = cmd.parser
    level = "#" * min(1 + max(cmd.depth, 1), 4)  # orch and its commands side by side
    out = [f"{level} {p.prog} {{#{anchor(p.prog)}}}", ""]
    out += ["```text", _usage(p), "```", ""]
    if p.description or cmd.summary:  # commands repeat their summary as description
        out += [_md(p.description or cmd.summary), ""]
    out += _command_list(p)
    for group in p._action_groups:
        out += _group(p, group)
    if p.epilog:
        out += ["```text", p.epilog.rstrip(), "```", ""]
    return "\n".join(out)


def _usage(parser: argparse.ArgumentParser) -> str:
    f = _formatter(parser)
    f.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return f.format_help().strip()


def _command_list(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in _subcommand_actions(parser):
        out += ["| command | what it does |", "|---|---|"]
        for choice in action._choices_actions:
            prog = f"{parser.prog} {choice.dest}"
            out.append(f"| [`{choice.dest}`](#{anchor(prog)}) | {_md(choice.help or '')} |")
        out.append("")
    return out


def _group(parser: argparse.ArgumentParser, group) -> list[str]:
    visible = visible_options(parser)
    shown = [a for a in group._group_actions if a in visible]
    if not shown:
        return []
    out = [f"**{_md(group.title)}**", ""]
    if group.description:
        out += [_md(group.description), ""]
    f = _formatter(parser)
    for action in shown:
        names = ", ".join(f"`{s}`" for s in invocations(f, action))
        text = _md(f._expand_help(action)) if action.help else ""
        out.append(f"- {names}: {text}" if text else f"- {names}")
    return out + [""]


def invocations(f: argparse.HelpFormatter, action: argparse.Action) -> list[str]:
    """Each way to write the action, as `--help` shows it: `--jobs JOBS`,
    `-j JOBS`; a positional's metavar."""
    if not action.option_strings:
        return [f._format_action_invocation(action)]
    if action.nargs == 0:
        return list(action.option_strings)
    args = f._format_args(action, f._get_default_metavar_for_optional(action))
    return [f"{s} {args}" for s in action.option_strings]

