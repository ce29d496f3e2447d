"""Text from untrusted sources (guest output, JUnit files, mails, pytest's
own words) made safe to print and to store: no control characters or
terminal escape sequences, and a length cap."""

from __future__ import annotations

import re

MAX_TEXT = 2000
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x1b]")


def clean(text: str | None, limit: int = MAX_TEXT) -> str:
    """No control characters or escape sequences reach a report."""
    text = _CTRL.sub("?", text or "")
    return text if len(text) <= limit else text[:limit] + "...[truncated]"
