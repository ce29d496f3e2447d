"""A second, tiny guest suite for orch's own tests (tests/guest/test_suites.py,
and `orch test --suite guest_selftest/smoke` on a real kernel): written like
guest_tests/, its ids start with `smoke/`. Its conftest.py and the helper
beside it are loaded as guest_tests/'s are (pytest's rootdir is the suite's
parent, its confcutdir the suite)."""

from __future__ import annotations

import pytest

from smoke_helpers import page_size


@pytest.fixture
def pagesize() -> int:
    return page_size()
