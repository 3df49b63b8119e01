"""Shared fixtures of the authmodels test suite.

The suite uses the authmodels pytest plugin exactly as a downstream application would (it is
loaded through the ``pytest11`` entry point); this file only adds what pytest-alembic needs, and
a Hypothesis profile: by default Hypothesis' own settings apply (its ``ci`` profile on CI), and
``HYPOTHESIS_PROFILE=thorough`` runs ten times the examples, for a longer search.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic.config import Config
from hypothesis import settings
from sqlalchemy import Engine, pool
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.migrations import alembic_config as packaged_alembic_config

settings.register_profile("thorough", max_examples=1000)
if "HYPOTHESIS_PROFILE" in os.environ:
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


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
