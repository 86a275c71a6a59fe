"""Fixtures for controller tests: a controller on ephemeral loopback ports with a real spool."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from controller_testkit import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A controller harness closed (rigs, clients, controller, sink) after the test."""
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()
