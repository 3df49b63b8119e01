"""The hot statements keep their prepared statements on the asyncio driver.

Inside ``AsyncSession.run_sync`` the connection under the session is a
``psycopg.AsyncConnection``; ``_fastpath.Statement.first`` awaits the statement on it with
SQLAlchemy's ``await_only``, as a server-side prepared statement, in the caller's transaction.
The proof is the server's own list of the connection's prepared statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from authmodels import errors
from authmodels.aio import sessions
from authmodels.services import _fastpath
from tests.aio.conftest import MakeUser

TTL = timedelta(hours=1)


def shape(sql: str) -> str:
    """``sql`` with its whitespace collapsed and its placeholders (psycopg's ``%(name)s``, the
    server's ``$1``) written ``?``."""
    return re.sub(r"%\(\w+\)s|\$\d+", "?", " ".join(sql.split()))


async def prepared(db: AsyncSession) -> list[str]:
    """The statements prepared on ``db``'s connection (``pg_prepared_statements``)."""
    rows = await db.execute(text("SELECT statement FROM pg_prepared_statements"))
    return [shape(sql) for sql in rows.scalars()]


@pytest.mark.asyncio
async def test_validation_and_rotation_are_prepared_statements_on_the_async_connection(
    adb: AsyncSession, make_user: MakeUser
) -> None:
    issued = await sessions.create_session(adb, await make_user(), ttl=TTL)
    driver = await adb.run_sync(_fastpath.psycopg_async_connection)
    assert isinstance(driver, psycopg.AsyncConnection)
    assert not [sql for sql in await prepared(adb) if "FROM auth.sessions" in sql]

    await sessions.validate_session(adb, issued.session_token)
    await sessions.rotate_refresh_token(adb, issued.refresh_token)

    statements = await prepared(adb)
    assert shape(sessions._sync._LOOKUP_SESSION.psycopg_sql) in statements
    assert shape(sessions._sync._ROTATE.psycopg_sql) in statements


@pytest.fixture
def statements_seen_by_sqlalchemy(adb: AsyncSession) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = adb.bind.engine.sync_engine  # type: ignore[union-attr]

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.asyncio
async def test_the_session_lookup_bypasses_sqlalchemy_on_the_async_driver(
    adb: AsyncSession, make_user: MakeUser, statements_seen_by_sqlalchemy: list[str]
) -> None:
    issued = await sessions.create_session(adb, await make_user(), ttl=TTL)
    statements_seen_by_sqlalchemy.clear()
    session = await sessions.validate_session(adb, issued.session_token)
    assert session.id == issued.session.id
    assert not [s for s in statements_seen_by_sqlalchemy if "auth.sessions" in s]


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``Statement`` takes its SQLAlchemy path, on the async driver too."""
    monkeypatch.setattr(_fastpath, "_driver", lambda db: None)


@pytest.mark.asyncio
@pytest.mark.usefixtures("fallback")
async def test_the_fallback_validates_rotates_and_refuses_on_the_async_driver(
    adb: AsyncSession, make_user: MakeUser
) -> None:
    ada = await make_user()
    issued = await sessions.create_session(adb, ada, ttl=TTL)
    assert (await sessions.validate_session(adb, issued.session_token)).user_id == ada.id
    assert (await sessions.rotate_refresh_token(adb, issued.refresh_token)).user_id == ada.id
    await sessions.revoke_session(adb, issued.session.id)
    with pytest.raises(errors.SessionRevokedError):
        await sessions.validate_session(adb, issued.session_token)
    assert not [sql for sql in await prepared(adb) if "FROM auth.sessions" in sql]
