"""Fixtures of the flow tests: settings from the run's keys, an isolated session, a fresh
database for the tests that need real commits and concurrent connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from authmodels.models import User
from authmodels.services import FlowSettings, use_settings
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import UserFactory
from authmodels.testing.plugin import TestKeys


@pytest.fixture
def settings(authmodels_keys: TestKeys) -> FlowSettings:
    """The flows' settings with the run's key rings and the library's defaults."""
    return FlowSettings(
        hash_keys=authmodels_keys.hash_keys, encryption_keys=authmodels_keys.encryption_keys
    )


@pytest.fixture
def db(authmodels_session: Session, settings: FlowSettings) -> Session:
    """The plugin's SAVEPOINT-isolated session, with :func:`settings`."""
    return use_settings(authmodels_session, settings)


@pytest.fixture
def user(authmodels_user_factory: UserFactory) -> User:
    return authmodels_user_factory()


@pytest.fixture
def fresh(
    authmodels_fresh_engine: Engine, settings: FlowSettings
) -> Callable[..., sessionmaker[Session]]:
    """Session factories on a fresh database (real commits, real concurrent connections).

    Call it with setting overrides: ``fresh(refresh_grace_window=timedelta(0))``.
    """

    def factory(**overrides: object) -> sessionmaker[Session]:
        chosen = settings.replace(**overrides) if overrides else settings
        return sessionmaker(
            authmodels_fresh_engine, expire_on_commit=False, info={SETTINGS_KEY: chosen}
        )

    return factory


@pytest.fixture
def fresh_user(fresh: Callable[..., sessionmaker[Session]]) -> Iterator[User]:
    """A committed user in the fresh database."""
    with fresh()() as db:
        user = UserFactory(db)()
        db.commit()
        yield user
