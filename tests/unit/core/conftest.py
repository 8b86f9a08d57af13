"""Fixtures for the proxy core tests (helpers live in core_helpers.py)."""

from __future__ import annotations

import pytest

from tests.unit.core.core_helpers import Harness, Messages, make_harness


@pytest.fixture
def h() -> Harness:
    """A started core on the lab configuration."""
    return make_harness()


@pytest.fixture
def msg() -> Messages:
    """The message factory."""
    return Messages()
