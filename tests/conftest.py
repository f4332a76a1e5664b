"""Shared fixtures. Helpers live in :mod:`finetunekit.testing`, where plugin authors can
use them too.

Every test builds its own Engine (a fresh plugin manager): nothing is shared between
tests, as nothing is shared between two engines in one process.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from finetunekit import Engine


@pytest.fixture
def engine() -> Engine:
    """A fresh engine with the built-ins only (no entry points): isolated from the machine."""
    return Engine(entry_points=False)
