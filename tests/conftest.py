"""Shared fixtures of the authmodels test suite.

The suite uses the authmodels pytest plugin exactly as a downstream application would (it is
loaded through the ``pytest11`` entry point); this file only adds what pytest-alembic needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.config import Config
from sqlalchemy import Engine, pool
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.migrations import alembic_config as packaged_alembic_config


@pytest.fixture
def alembic_config() -> Config:
    """pytest-alembic runs the packaged chain (the one a wheel ships)."""
    return packaged_alembic_config()


@pytest.fixture
def alembic_engine(authmodels_empty_database: URL) -> Iterator[Engine]:
    """pytest-alembic works on a new empty database per test."""
    engine = create_db_engine(authmodels_empty_database, poolclass=pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()
