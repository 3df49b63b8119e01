"""Fixtures of the async API's tests: the plugin's async sessions with the run's settings, users
made through ``run_sync`` (the factories are the sync ones), and helpers for the event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

from authmodels.aio import settings as aio_settings
from authmodels.models import User
from authmodels.services import FlowSettings
from authmodels.testing.factories import TEST_PASSWORD_HASHER, ServicePathUserFactory, UserFactory
from authmodels.testing.plugin import TestKeys
from authmodels.testing.roles import TestRoles


@pytest.fixture
def settings(authmodels_keys: TestKeys) -> FlowSettings:
    """The flows' settings with the run's key rings, a cheap password hasher."""
    return FlowSettings(
        hash_keys=authmodels_keys.hash_keys,
        encryption_keys=authmodels_keys.encryption_keys,
        password_hasher=TEST_PASSWORD_HASHER,
    )


@pytest_asyncio.fixture
async def adb(authmodels_async_session: AsyncSession, settings: FlowSettings) -> AsyncSession:
    """The plugin's rolled-back AsyncSession, with :func:`settings`."""
    return aio_settings.use_settings(authmodels_async_session, settings)


@pytest_asyncio.fixture
async def app_adb(
    authmodels_app_async_session: AsyncSession, settings: FlowSettings
) -> AsyncSession:
    """The plugin's rolled-back AsyncSession as the login role, with :func:`settings`."""
    return aio_settings.use_settings(authmodels_app_async_session, settings)


MakeUser = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(adb: AsyncSession) -> MakeUser:
    """``await make_user(email=...)``: a user in :func:`adb` (the sync factory, run_sync)."""

    async def make(**values: Any) -> User:
        return await adb.run_sync(lambda sync: UserFactory(sync)(**values))

    return make


@pytest.fixture
def make_app_user(app_adb: AsyncSession, authmodels_roles: TestRoles) -> MakeUser:
    """``await make_app_user(...)``: a user made on the service path in :func:`app_adb`."""

    async def make(**values: Any) -> User:
        return await app_adb.run_sync(
            lambda sync: ServicePathUserFactory(sync, authmodels_roles.service)(**values)
        )

    return make
