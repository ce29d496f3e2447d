"""A helper module beside the tests, imported by conftest.py and a test."""

from __future__ import annotations

import os


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
