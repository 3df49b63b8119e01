"""The pytest plugin's async fixtures: :mod:`authmodels.aio` on the run's test databases.

=======================================  ========  ============================================
fixture                                  scope     what it gives
=======================================  ========  ============================================
``authmodels_async_engine``              session   AsyncEngine on the run's shared test database
``authmodels_async_session``             function  AsyncSession inside a transaction rolled back
                                                   at teardown (as ``authmodels_session``)
``authmodels_app_async_engine``          session   AsyncEngine as the login role: row-level
                                                   security applies
``authmodels_app_async_session``         function  ``authmodels_async_session`` as the login
                                                   role
``authmodels_async_fresh_engine``        function  AsyncEngine on ``authmodels_fresh_database``
                                                   (real commits, concurrent connections)
``authmodels_app_async_fresh_engine``    function  the same, as the login role
=======================================  ========  ============================================

The engines are plain fixtures and open no connection themselves; they do not pool
(``NullPool``): an asyncio connection belongs to the event loop that opened it, and a run may
use a new loop per test, so each checkout opens a connection in the loop of the test that asks
for it. Each engine works from any event loop; the sessions are async fixtures, run in the
test's loop.

With pytest-asyncio (``pip install "authmodels[async]" pytest-asyncio``) the sessions are
``pytest_asyncio.fixture``\\ s: they work in its strict mode (mark the tests
``@pytest.mark.asyncio``) and in auto mode. They run in the loop of
``asyncio_default_fixture_loop_scope``: keep it the loop scope of the tests that use them
(both are ``function`` by default). Without pytest-asyncio they are plain async fixtures, which
anyio's plugin runs for tests marked ``@pytest.mark.anyio`` (on its ``asyncio`` backend:
psycopg has no trio driver); with both plugins installed, run anyio's tests with
``-p no:asyncio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from authmodels.db import create_async_db_engine
from authmodels.testing.database import rolled_back_session_options
from authmodels.testing.roles import TestRoles

try:
    from pytest_asyncio import fixture as _pytest_asyncio_fixture
except ImportError:  # anyio's plugin (or none) runs them
    _async_fixture: Callable[..., Any] = pytest.fixture
else:
    _async_fixture = _pytest_asyncio_fixture

__all__ = [
    "authmodels_app_async_engine",
    "authmodels_app_async_fresh_engine",
    "authmodels_app_async_session",
    "authmodels_async_engine",
    "authmodels_async_fresh_engine",
    "authmodels_async_session",
    "rolled_back_async_session",
]


def _engine(url: URL) -> AsyncEngine:
    return create_async_db_engine(url, poolclass=pool.NullPool)


@pytest.fixture(scope="session")
def authmodels_async_engine(
    authmodels_database_url: URL, authmodels_connect_url: Callable[[URL], URL]
) -> AsyncEngine:
    """AsyncEngine (``postgresql+psycopg_async``, no pooling) on the run's shared test database
    (through PgBouncer with ``--authmodels-pgbouncer``, as every engine fixture)."""
    return _engine(authmodels_connect_url(authmodels_database_url))


@pytest.fixture(scope="session")
def authmodels_app_async_engine(
    authmodels_database_url: URL,
    authmodels_roles: TestRoles,
    authmodels_connect_url: Callable[[URL], URL],
) -> AsyncEngine:
    """AsyncEngine on the run's shared test database, connected as the login role."""
    return _engine(authmodels_connect_url(authmodels_roles.url(authmodels_database_url)))


@pytest.fixture
def authmodels_async_fresh_engine(
    authmodels_fresh_database: URL, authmodels_connect_url: Callable[[URL], URL]
) -> Iterator[AsyncEngine]:
    """AsyncEngine on :func:`authmodels_fresh_database` (each checkout a real connection)."""
    yield _engine(authmodels_connect_url(authmodels_fresh_database))


@pytest.fixture
def authmodels_app_async_fresh_engine(
    authmodels_fresh_database: URL,
    authmodels_roles: TestRoles,
    authmodels_connect_url: Callable[[URL], URL],
) -> Iterator[AsyncEngine]:
    """AsyncEngine as the login role on :func:`authmodels_fresh_database`."""
    yield _engine(authmodels_connect_url(authmodels_roles.url(authmodels_fresh_database)))


@_async_fixture
async def authmodels_async_session(
    authmodels_async_engine: AsyncEngine,
) -> AsyncIterator[AsyncSession]:
    """An AsyncSession whose work is rolled back at teardown, whatever the test commits.

    The async ``authmodels_session``: ``await session.commit()`` in the code under test releases
    a SAVEPOINT of an outer transaction rolled back when the test ends, and the flows' writes
    in a transaction of their own go to a SAVEPOINT of it too.
    """
    async with rolled_back_async_session(authmodels_async_engine) as session:
        yield session


@_async_fixture
async def authmodels_app_async_session(
    authmodels_app_async_engine: AsyncEngine,
) -> AsyncIterator[AsyncSession]:
    """:func:`authmodels_async_session` as the login role: row-level security applies.

    No user is named until the test awaits ``aio.rls.set_current_user(session, user_id)`` or
    enters ``aio.rls.as_user``; the service path is ``aio.rls.service_role(session,
    authmodels_roles.service)``.
    """
    async with rolled_back_async_session(authmodels_app_async_engine) as session:
        yield session


@asynccontextmanager
async def rolled_back_async_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """An AsyncSession in a transaction of ``engine`` that is rolled back when the block ends
    (the code in the block may commit: a commit releases a SAVEPOINT)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(bind=connection, **rolled_back_session_options())
        try:
            yield session
        finally:
            await session.close()
            if transaction.is_active:
                await transaction.rollback()
