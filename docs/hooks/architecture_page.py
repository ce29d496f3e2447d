"""mkdocs hook: the generated parts of docs/architecture.md, made at build
time from the tree itself, so the page shows the rules and the layout that
are there: the import contracts of pyproject's [tool.importlinter], and the
module index (each package's and module's docstring, packages in the order
of the layers)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from mdtext import inline
from mkdocs.exceptions import PluginError

PAGE = "architecture.md"
CONTRACTS = "<!-- import-contracts -->"
MODULES = "<!-- module-index -->"


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    for marker in (CONTRACTS, MODULES):
        if marker not in markdown:
            raise PluginError(f"{PAGE} lacks {marker}, where generated text goes")
    root = Path(config.config_file_path).parent
    return (markdown.replace(CONTRACTS, render_contracts(root))
            .replace(MODULES, render_modules(root)))


def contracts(root: Path) -> list[dict]:
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    return conf["tool"]["importlinter"]["contracts"]


def render_contracts(root: Path) -> str:
    return "\n".join(f"- **{inline(c['name'])}** ({c['type']}): {_rule(c)}"
                     for c in contracts(root)) + "\n"


def _rule(c: dict) -> str:
    if c["type"] == "layers":
        rule = "each layer imports only those after it: " + " > ".join(
            "`" + layer.replace("orchestrator.", "") + "`" for layer in c["layers"])
    elif c["type"] == "forbidden":
        rule = (_names(c["source_modules"]) + " never import " + _names(c["forbidden_modules"])
                + (" themselves (through another module they may)"
                   if c.get("allow_indirect_imports") else ""))
    elif c["type"] == "independence":
        rule = _names(c["modules"]) + " do not import each other"
    else:
        rule = "see pyproject.toml"
    ignored = c.get("ignore_imports", [])
    return rule + ("; except " + _names(ignored) if ignored else "")


def _names(modules: list[str]) -> str:
    return ", ".join(f"`{m}`" for m in modules)


def render_modules(root: Path) -> str:
    src = root / "orchestrator"
    out = _package(src, "orchestrator", sorted(src.glob("*.py")))
    for name in package_order(root):
        out += _package(src / name, f"orchestrator/{name}/", sorted((src / name).glob("*.py")))
    return "\n".join(out)


def package_order(root: Path) -> list[str]:
    """orch's packages, top layer first (the layers contract), then any
    package no layer names."""
    layered: list[str] = []
    for c in contracts(root):
        for layer in c.get("layers", []):
            layered += [m.strip().removeprefix("orchestrator.") for m in re.split(r"[|:]", layer)]
    on_disk = sorted(p.parent.name for p in (root / "orchestrator").glob("*/__init__.py"))
    return [n for n in layered if n in on_disk] + [n for n in on_disk if n not in layered]


def _package(pkg: Path, title: str, modules: list[Path]) -> list[str]:
    out = [f"### `{title}`", ""]
    if title != "orchestrator" and (pkg / "__init__.py").exists():
        out += [inline(first_paragraph(pkg / "__init__.py")), ""]
    out += ["| module | what it is |", "|---|---|"]
    out += [f"| `{m.name}` | {inline(first_paragraph(m))} |"
            for m in modules if m.name != "__init__.py"]
    return out + [""]


def first_paragraph(module: Path) -> str:
    doc = ast.get_docstring(ast.parse(module.read_text())) or "(no docstring)"
    return doc.split("\n\n")[0]
