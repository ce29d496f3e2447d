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


# -- one line of a mail: its headers, and what a reply for the list quotes -------
#
# Not text in such a line: C0 and C1 controls, DEL, bidi overrides and
# isolates, zero-width marks, surrogates and non-characters.
NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069"
                      "\ufeff\ud800-\udfff\ufffe\uffff]")
# RFC 5322's msg-id without its <>: atoms (and a domain literal) only.
MSGID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.:\[\]-]+")
MAX_MSGID = 250
# A mail address a header can carry as is: a dot-atom local part, a domain
# of dotted labels.
MAIL_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def mail_text(value: object, limit: int) -> str:
    """Untrusted mail text (a header, a subject, a name) as one line of
    plain text: no control or invisible characters, whitespace runs one
    space, at most `limit` characters."""
    text = " ".join(NOT_TEXT.sub(" ", str(value if value is not None else "")).split())
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def plain_msgid(value: object) -> str | None:
    """A Message-ID without its <>, if it is one a header can carry as is."""
    if not isinstance(value, str):
        return None
    v = value.strip().removeprefix("<").removesuffix(">")
    return v if len(v) <= MAX_MSGID and MSGID.fullmatch(v) else None
