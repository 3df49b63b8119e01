"""``aio.sessions.SessionValidator``: the sync validator's checks, errors and touch on psycopg's
asyncio connections, one round trip, concurrent requests on one event loop, on a real
PostgreSQL (as the table owner, and as a service-role login under row-level security)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels import errors
from authmodels.aio import sessions
from authmodels.db import create_async_db_engine, create_db_engine
from authmodels.services import FlowSettings
from authmodels.services import sessions as sync_sessions
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import UserFactory
from authmodels.testing.roles import TestRoles
from tests.services.helpers import snapshot
from tests.services.test_sessions import JKT, OTHER_JKT, TTL, age
from tests.services.test_validate_alone import round_trips, traced_driver


def _issue(engine: Engine, settings: FlowSettings, **kwargs: Any) -> Any:
    with Session(engine, info={SETTINGS_KEY: settings}, expire_on_commit=False) as owner:
        issued = sync_sessions.create_session(owner, UserFactory(owner)(), ttl=TTL, **kwargs)
        owner.commit()
    return issued


async def _outcome(call: Callable[[], Awaitable[object]]) -> type[BaseException] | None:
    try:
        await call()
    except errors.AuthModelsError as exc:
        return type(exc)
    return None


@pytest.mark.asyncio
async def test_refuses_what_the_sync_validator_refuses_and_touches_in_one_round_trip(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    live = _issue(authmodels_fresh_engine, settings, dpop_jkt=JKT)
    revoked = _issue(authmodels_fresh_engine, settings)
    expired = _issue(authmodels_fresh_engine, settings)
    with Session(authmodels_fresh_engine, info={SETTINGS_KEY: settings}) as db:
        sync_sessions.revoke_session(db, revoked.session.id, reason="logout")
        age(db, "sessions", "expires_at", TTL + timedelta(seconds=1), expired.session.id)
        db.commit()
    engine = create_async_db_engine(authmodels_fresh_database)
    validator = sessions.SessionValidator(engine, settings=settings)
    synchronous = sync_sessions.SessionValidator(authmodels_fresh_engine, settings=settings)
    try:
        for token, jkt, expected in [
            (live.session_token, JKT, None),
            ("no-such-token", None, errors.InvalidTokenError),
            ("", None, errors.InvalidTokenError),
            (live.session_token, "not a thumbprint", errors.InvalidInputError),
            (revoked.session_token, None, errors.SessionRevokedError),
            (expired.session_token, None, errors.SessionExpiredError),
            (live.session_token, OTHER_JKT, errors.DPoPBindingMismatch),
        ]:
            with Session(authmodels_fresh_engine) as db:
                before = snapshot(db, "sessions")
            got = await _outcome(lambda: validator.validate(token, dpop_jkt=jkt))  # noqa: B023
            try:
                synchronous.validate(token, dpop_jkt=jkt)
                sync_got: type[BaseException] | None = None
            except errors.AuthModelsError as exc:
                sync_got = type(exc)
            assert got is expected and sync_got is expected, (token[:8], jkt)
            if expected is not None:
                with Session(authmodels_fresh_engine) as db:
                    assert snapshot(db, "sessions") == before
        with Session(authmodels_fresh_engine) as db:
            age(db, "sessions", "last_activity_at", timedelta(minutes=3), live.session.id)
            db.commit()
        (conn,) = validator._connections._idle
        with traced_driver(conn) as sent:
            found = await validator.validate(live.session_token, dpop_jkt=JKT)
        assert round_trips(sent) == 1, sent
        with authmodels_fresh_engine.connect() as check:
            stored, audited = check.execute(
                text(
                    "SELECT (SELECT last_activity_at FROM auth.sessions WHERE id = :id), "
                    "(SELECT count(*) FROM auth.session_audits WHERE action = 'dpop_mismatch')"
                ),
                {"id": live.session.id},
            ).one()
        assert found.last_activity_at == stored and found.user_id == live.session.user_id
        assert audited == 2  # one by each validator, committed on its own
    finally:
        await validator.close()
        synchronous.close()
        await engine.dispose()


@pytest.mark.asyncio
async def test_concurrent_requests_on_one_loop_share_at_most_max_connections(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    issued = [_issue(authmodels_fresh_engine, settings) for _ in range(4)]
    name = f"avalidator_{uuid.uuid4().hex[:8]}"
    engine = create_async_db_engine(
        authmodels_fresh_database, connect_args={"application_name": name}
    )
    validator = sessions.SessionValidator(engine, settings=settings, max_connections=3)
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            with authmodels_fresh_engine.connect() as conn:
                count = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).scalar_one()
            most = max(most, count)
            await asyncio.sleep(0.005)

    async def requests(index: int) -> set[uuid.UUID]:
        return {(await validator.validate(issued[index % 4].session_token)).id for _ in range(40)}

    watcher = asyncio.create_task(watch())
    try:
        found = await asyncio.gather(*(requests(i) for i in range(16)))
    finally:
        watcher.cancel()
        await validator.close()
        await engine.dispose()
    assert set().union(*found) == {i.session.id for i in issued}
    assert 1 <= most <= 3, most


@pytest.mark.asyncio
async def test_a_request_awaits_a_busy_connection_then_gets_a_typed_error(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    issued = _issue(authmodels_fresh_engine, settings)
    with Session(authmodels_fresh_engine) as db:
        age(db, "sessions", "last_activity_at", timedelta(minutes=3), issued.session.id)
        db.commit()
    engine = create_async_db_engine(authmodels_fresh_database)
    validator = sessions.SessionValidator(engine, settings=settings, max_connections=1, timeout=0.3)
    try:
        with Session(authmodels_fresh_engine) as locker:
            locker.execute(  # the touch is due: the first request waits on the row lock
                text("SELECT 1 FROM auth.sessions WHERE id = :id FOR UPDATE"),
                {"id": issued.session.id},
            )
            first = asyncio.create_task(validator.validate(issued.session_token))
            await asyncio.sleep(0.2)
            with pytest.raises(errors.DatabaseUnavailableError, match="max_connections"):
                await validator.validate(issued.session_token)
            locker.rollback()
        assert (await first).id == issued.session.id
    finally:
        await validator.close()
        await engine.dispose()


@pytest.mark.asyncio
async def test_under_row_level_security_a_service_role_login_validates(
    authmodels_fresh_engine: Engine,
    authmodels_fresh_database: URL,
    authmodels_roles: TestRoles,
    settings: FlowSettings,
) -> None:
    issued = _issue(authmodels_fresh_engine, settings)
    role, password = f"alookup_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(text("SELECT auth.grant_service_role(:r)"), {"r": role})
    lookups = create_async_db_engine(
        authmodels_fresh_database.set(username=role, password=password)
    )
    app = create_async_db_engine(authmodels_roles.url(authmodels_fresh_database))
    try:
        validator = sessions.SessionValidator(lookups, settings=settings)
        for _ in range(8):  # past psycopg's prepare threshold
            assert (await validator.validate(issued.session_token)).id == issued.session.id
        await validator.close()
        as_app = sessions.SessionValidator(app, settings=settings)
        with pytest.raises(errors.InvalidTokenError):
            await as_app.validate(issued.session_token)
        await as_app.close()
    finally:
        await lookups.dispose()
        await app.dispose()
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text("SELECT auth.revoke_service_role(:r)"), {"r": role})
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def test_an_async_validator_needs_an_async_psycopg_engine(
    authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    sync_engine = create_db_engine(authmodels_fresh_database)
    try:
        for engine in (sync_engine, None, "postgresql+psycopg://"):
            with pytest.raises(errors.ConfigurationError, match="async SQLAlchemy engine"):
                sessions.SessionValidator(engine, settings=settings)  # type: ignore[arg-type]
    finally:
        sync_engine.dispose()
