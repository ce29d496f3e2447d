"""A test that skips with its reason, as a guest test that cannot run does."""

import pytest


def test_needs_a_device_the_guest_lacks():
    pytest.skip("no /dev/orch-nonexistent here")
