"""Fixtures for the telemetry tests: a migrated database and pose-batch factories."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from telemetry_factories import make_pose_batch

from telemetry.migrate import migrate
from telemetry.records import PoseBatch


@pytest.fixture(scope="module")
def tdsn(db_dsn: str) -> str:
    """A fresh database of the module with every telemetry migration applied."""
    migrate(db_dsn)
    return db_dsn


@pytest.fixture
def pose_batch() -> Callable[..., PoseBatch]:
    return make_pose_batch
