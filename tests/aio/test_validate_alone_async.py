"""``aio.sessions.validate_session_alone``: one round trip on psycopg's asyncio connection too,
and a touch committed on its own, as a FastAPI dependency would call it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.aio import sessions
from authmodels.db import async_session_factory, create_async_db_engine
from authmodels.services import FlowSettings
from authmodels.services import sessions as sync_sessions
from authmodels.services._fastpath import psycopg_async_connection
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import UserFactory
from tests.services.test_validate_alone import round_trips, traced_driver


def _last_activity(engine: Engine, session_id: uuid.UUID) -> datetime:
    with engine.begin() as conn:
        found = conn.execute(
            text("SELECT last_activity_at FROM auth.sessions WHERE id = :id"), {"id": session_id}
        ).scalar_one()
    assert isinstance(found, datetime)
    return found


def _make_idle_for_three_minutes(engine: Engine, session_id: uuid.UUID) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE auth.sessions SET last_activity_at = now() - interval '3 minutes' "
                "WHERE id = :id"
            ),
            {"id": session_id},
        )


@pytest.mark.asyncio
async def test_an_async_request_validates_in_one_round_trip_and_keeps_its_touch(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    with Session(authmodels_fresh_engine, info={SETTINGS_KEY: settings}) as owner:
        issued = sync_sessions.create_session(owner, UserFactory(owner)(), ttl=timedelta(hours=1))
        owner.commit()
        session_id, token = issued.session.id, issued.session_token
    engine = create_async_db_engine(
        authmodels_fresh_database, pool_size=1, max_overflow=0, pool_pre_ping=False
    )
    Db = async_session_factory(engine)
    Db.configure(info={SETTINGS_KEY: settings})
    try:
        async with Db() as db:  # the first use on a connection prepares the statement
            await sessions.validate_session_alone(db, token)
        _make_idle_for_three_minutes(authmodels_fresh_engine, session_id)
        stale = _last_activity(authmodels_fresh_engine, session_id)
        async with Db() as db:
            driver = await db.run_sync(psycopg_async_connection)
            assert driver is not None
            with traced_driver(driver) as sent:
                found = await sessions.validate_session_alone(db, token)
            assert round_trips(sent) == 1, sent
            touched = _last_activity(authmodels_fresh_engine, session_id)
            assert touched > stale and found.last_activity_at == touched
            assert not driver.autocommit  # the connection as it was
            await db.rollback()  # the request failing afterwards does not undo the touch
        assert _last_activity(authmodels_fresh_engine, session_id) == touched
    finally:
        await engine.dispose()
