"""The documentation: docs/ built as a site with `mkdocs build --strict`, its
CLI reference holding every command, option, help text and exit status of
orch's real parser, its architecture page every module and import contract
of the tree, and a README short enough to read first whose relative links all
lead to files. Each check is shown failing on a mutant: a page with a broken
link, a page left out of the nav, a README link to a missing page, a parser
with an option the page lacks, a module or contract the page lacks."""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import markdown
import pytest
from helpers import REPO

from orchestrator import cli
from orchestrator.core import exits
from orchestrator.core.errors import Exit

HOOKS = REPO / "docs" / "hooks"
README_MAX_LINES = 200
# The extensions mkdocs.yml names, for rendering the hook's Markdown here.
EXTENSIONS = ["toc", "tables", "fenced_code", "attr_list", "def_list"]


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: the hook renders the parser of this checkout's orch.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(root / "mkdocs.yml"), "-d", str(site)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = _build(REPO, out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _sources(tmp_path: Path) -> Path:
    """A copy of what the site is built from, to break."""
    root = tmp_path / "src"
    root.mkdir()
    for name in ("mkdocs.yml", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    for name in ("docs", "orchestrator"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _add_to_nav(root: Path, title: str, page: str) -> None:
    conf = root / "mkdocs.yml"
    conf.write_text(conf.read_text().replace("\nnav:\n", f"\nnav:\n  - {title}: {page}\n"))


# -- the CLI reference against the parser ---------------------------------


def _commands(parser: argparse.ArgumentParser):
    """Every parser under `parser`, itself first; walked here, not with the
    hook's own walk, so a command the hook skipped is seen missing."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _commands(sub)


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r'<h[1-4] id="([^"]+)"', page)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _spaced(text: str) -> str:
    """Text as _text() leaves it: tags became spaces, so `(<code>x</code>)`
    reads `( x )`; compare with every run of spaces and brackets alike."""
    return re.sub(r"\s*([()\[\]:;,.])\s*", r"\1", " ".join(text.replace("`", "").split()))


def missing_from_page(parser: argparse.ArgumentParser, page: str) -> list[str]:
    """What of `parser` the rendered page lacks: a command's section, an
    option or positional, its help, a line of its epilog (the exit statuses)."""
    sections = _sections(page)
    missing = []
    for p in _commands(parser):
        anchor = re.sub(r"[^a-z0-9]+", "-", p.prog.lower()).strip("-")
        if anchor not in sections:
            missing.append(f"{p.prog}: no section #{anchor}")
            continue
        shown = {html.unescape(c).split()[0] for c in
                 re.findall(r"<code>([^<]+)</code>", sections[anchor])}
        text = _spaced(_text(sections[anchor]))
        formatter = p._get_formatter()
        for action in p._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for name in action.option_strings or [action.metavar or action.dest]:
                if name not in shown:
                    missing.append(f"{p.prog}: {name}")
            if action.help and _spaced(formatter._expand_help(action)) not in text:
                missing.append(f"{p.prog}: help of {action.dest}")
        missing += [f"{p.prog}: epilog line {line.strip()!r}"
                    for line in (p.epilog or "").splitlines()
                    if line.strip() and _spaced(line) not in text]
    return missing


def _hook(name: str):
    """A hook loaded as mkdocs loads it: registered, its directory on the path
    (the hooks import their shared mdtext)."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(HOOKS))
    try:
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(HOOKS))


def _mutant_parser() -> argparse.ArgumentParser:
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["test"].add_argument("--mutant-flag", help="a flag only the mutant has")
    sub.add_parser("mutant", help="a command only the mutant has")
    return p


def test_the_site_builds_every_page(site):
    pages = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    assert len(pages) >= 10, pages
    for page in pages:
        target = site / "index.html" if page == "index" else site / page / "index.html"
        assert target.is_file(), page


def test_the_cli_page_holds_every_command_and_option_of_the_parser(site):
    page = (site / "cli" / "index.html").read_text()
    parser = cli.parser()
    assert missing_from_page(parser, page) == []
    # Not vacuous: every command and its options were looked for.
    commands = list(_commands(parser))
    assert {c.prog for c in commands} >= {f"orch {n}" for n in
                                          ("test", "bisect", "check", "nightly", "plan", "job",
                                           "merge", "report")}
    assert sum(len(c._actions) for c in commands) > 80
    assert "128  bad input (the bisect stops)" in html.unescape(page)


def test_an_option_or_command_the_page_lacks_is_caught(site):
    page = (site / "cli" / "index.html").read_text()
    parser = _mutant_parser()
    missing = missing_from_page(parser, page)
    assert "orch test: --mutant-flag" in missing
    assert "orch test: help of mutant_flag" in missing
    assert "orch mutant: no section #orch-mutant" in missing
    # The hook renders whatever the parser holds: built from the mutant, the
    # page lacks nothing.
    rendered = markdown.markdown(_hook("cli_reference").render(parser), extensions=EXTENSIONS)
    assert missing_from_page(parser, rendered) == []


def test_an_epilog_the_page_lacks_is_caught(site):
    page = (site / "cli" / "index.html").read_text()
    parser = cli.parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["report"].epilog += "\n  7    a status only the mutant has"
    assert missing_from_page(parser, page) == [
        "orch report: epilog line '7    a status only the mutant has'"]


# -- the architecture page against the tree -------------------------------


def architecture_missing(root: Path, page: str) -> list[str]:
    """The modules of `root`'s orchestrator/ and the import contracts of its
    pyproject.toml that the built architecture page does not name."""
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    text = _text(page)
    missing = [f"contract {c['name']!r}" for c in conf["tool"]["importlinter"]["contracts"]
               if c["name"] not in text]
    parts = re.split(r"<h3[^>]*>(.*?)</h3>", page)
    packages = {_text(h).replace("\u00b6", "").strip(): body
                for h, body in zip(parts[1::2], parts[2::2], strict=True)}
    src = root / "orchestrator"
    for module in sorted(src.rglob("*.py")):
        if module.name == "__init__.py" or "__pycache__" in module.parts:
            continue
        package = "orchestrator" if module.parent == src else f"orchestrator/{module.parent.name}/"
        if f"<code>{module.name}</code>" not in packages.get(package, ""):
            missing.append(str(module.relative_to(root)))
    return missing


def test_the_architecture_page_names_every_module_and_contract(site):
    page = (site / "architecture" / "index.html").read_text()
    assert architecture_missing(REPO, page) == []
    assert len(list((REPO / "orchestrator").rglob("*.py"))) > 50   # not vacuous


def test_a_module_or_contract_the_architecture_page_lacks_is_caught(site, tmp_path):
    root = _sources(tmp_path)
    (root / "orchestrator" / "core" / "mutant_module.py").write_text('"""Only the mutant."""\n')
    conf = root / "pyproject.toml"
    conf.write_text(conf.read_text() + '\n[[tool.importlinter.contracts]]\nname = "a mutant '
                    'rule"\ntype = "independence"\nmodules = ["orchestrator.core.mutant_module",'
                    ' "orchestrator.core.errors"]\n')
    page = (site / "architecture" / "index.html").read_text()
    assert architecture_missing(root, page) == ["contract 'a mutant rule'",
                                                "orchestrator/core/mutant_module.py"]
    # Built from the mutant tree, the page names both.
    r = _build(root, tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    assert architecture_missing(root, (tmp_path / "site" / "architecture" / "index.html")
                                .read_text()) == []


# -- the strict build --------------------------------------------------------


def test_a_page_with_a_broken_link_fails_the_strict_build(tmp_path):
    root = _sources(tmp_path)
    (root / "docs" / "broken.md").write_text("# Broken\n\nSee [the gone page](gone.md).\n")
    _add_to_nav(root, "Broken", "broken.md")
    r = _build(root, tmp_path / "site")
    assert r.returncode != 0
    assert "gone.md" in r.stdout + r.stderr


def test_a_link_to_a_missing_heading_fails_the_strict_build(tmp_path):
    root = _sources(tmp_path)
    page = root / "docs" / "configs.md"
    page.write_text(page.read_text() + "\nSee [nothing](security.md#no-such-heading).\n")
    r = _build(root, tmp_path / "site")
    assert r.returncode != 0
    assert "no-such-heading" in r.stdout + r.stderr


def test_a_page_missing_from_the_nav_fails_the_strict_build(tmp_path):
    root = _sources(tmp_path)
    (root / "docs" / "orphan.md").write_text("# Orphan\n\nNo page links here.\n")
    r = _build(root, tmp_path / "site")
    assert r.returncode != 0
    assert "orphan.md" in r.stdout + r.stderr


# -- the README --------------------------------------------------------------


def readme_problems(text: str, base: Path) -> list[str]:
    """Too long, or a relative link that leads to no file."""
    problems = []
    if len(text.splitlines()) > README_MAX_LINES:
        problems.append(f"{len(text.splitlines())} lines, over {README_MAX_LINES}")
    for target in relative_links(text):
        if not (base / target.split("#")[0]).is_file():
            problems.append(f"link to {target}: no such file")
    return problems


def relative_links(text: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:|#|/", t)]


def test_the_readme_is_short_and_its_links_lead_to_files():
    text = (REPO / "README.md").read_text()
    assert readme_problems(text, REPO) == []
    links = relative_links(text)
    assert len(links) >= 10, links   # not vacuous: the docs are linked
    docs = {(REPO / "docs" / p).resolve() for p in os.listdir(REPO / "docs") if p.endswith(".md")}
    assert {(REPO / t.split("#")[0]).resolve() for t in links} <= docs


def test_the_readme_keeps_the_quick_start_and_ci_command():
    """Users run these as written; CI runs the README's test command."""
    text = (REPO / "README.md").read_text()
    assert "\n    ./scripts/demo.sh\n" in text
    assert "this is what CI runs):\n\n    ./scripts/check.sh\n" in text
    assert "exec ./scripts/check.sh" in (REPO / ".ci" / "run").read_text()


def test_a_readme_link_to_a_missing_page_or_too_many_lines_is_caught():
    text = (REPO / "README.md").read_text()
    assert readme_problems(text + "\nSee [gone](docs/gone.md#x).\n", REPO) == [
        "link to docs/gone.md#x: no such file"]
    long = text + "line\n" * (README_MAX_LINES + 1 - len(text.splitlines()))
    assert readme_problems(long, REPO) == [f"{README_MAX_LINES + 1} lines, over 200"]


# -- the exit statuses: one table (core/exits.py) -----------------------------------------


@pytest.mark.parametrize("doc", ["README.md", "docs/verdicts.md"])
def test_the_exit_status_tables_are_the_ones_the_source_makes(doc):
    text = (REPO / doc).read_text()
    assert exits.in_document(text) == exits.markdown(), (
        f"{doc} differs from orchestrator/core/exits.py: "
        f"python -m orchestrator.core.exits {doc} rewrites it")


def test_an_exit_status_table_edited_by_hand_is_caught():
    text = (REPO / "README.md").read_text()
    assert "| 6 | **inconclusive**" in text
    edited = text.replace("| 6 | **inconclusive**", "| 3 | **inconclusive**")
    assert exits.in_document(edited) != exits.markdown()
    assert exits.in_document("no table here") is None


def test_every_help_ends_with_its_rows_of_the_one_table():
    parser = cli.parser()
    assert parser.epilog == exits.epilog()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(exits.COMMANDS)
    for name, p in sub.choices.items():
        assert p.epilog == exits.epilog(name), name


def test_each_status_has_one_meaning_in_every_command():
    """Every status a command exits with is one of orch's (or git's, for
    orch check), with the meaning the table gives it."""
    assert set(exits.MEANING) == {int(e) for e in Exit}
    for name, table in exits.COMMANDS.items():
        known = exits.GIT_MEANING if table.git else exits.MEANING
        assert {r.code for r in table.rows} <= set(known), name
        for row in table.rows:
            line = next(l for l in exits.epilog(name).splitlines()
                        if l.startswith(f"  {row.code:<4} "))
            assert line[7:].startswith(table.meaning(row.code)), (name, line)
    # 3 means only "does not apply": inconclusive and incomplete have their own.
    assert [n for n, t in exits.COMMANDS.items() if not t.git
            for r in t.rows if r.code == 3] == ["test"]
