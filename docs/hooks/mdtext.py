"""Plain text from code (help strings, docstrings) made safe to put into a
Markdown page: shared by the hooks that generate pages (not a hook itself)."""

from __future__ import annotations

import html
import re


def inline(text: str) -> str:
    """`text` as one line of Markdown: its `code` spans kept, everything else
    shown as written (`<time>`, `*`, `_` and `|` are not markup there)."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(part if _is_code(part) else _escape(part) for part in parts)


def _is_code(part: str) -> bool:
    return len(part) > 1 and part.startswith("`") and part.endswith("`")


def _escape(part: str) -> str:
    return re.sub(r"([\\*_\[\]{}|])", r"\\\1", html.escape(part, quote=False))
