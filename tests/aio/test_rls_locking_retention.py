"""The async twins of row-level security, optimistic locking and the retention purge, and the
flows under the production roles on an async engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from authmodels import errors
from authmodels import retention as sync_retention
from authmodels.aio import locking, passwords, retention, rls, sessions
from authmodels.aio.settings import use_settings
from authmodels.db import async_session_factory, create_db_engine
from authmodels.models import Session as SessionModel
from authmodels.models import User
from authmodels.services import FlowSettings
from authmodels.testing.factories import DEFAULT_PASSWORD, ServicePathUserFactory, UserFactory
from authmodels.testing.roles import TestRoles
from tests.aio.conftest import MakeUser

TTL = timedelta(hours=1)


@pytest.mark.asyncio
async def test_a_request_validates_on_the_service_path_then_runs_as_its_user(
    app_adb: AsyncSession, make_app_user: MakeUser, authmodels_roles: TestRoles
) -> None:
    ada, grace = await make_app_user(), await make_app_user()
    async with rls.service_role(app_adb, authmodels_roles.service):  # nobody is known yet
        assert await rls.current_user_id(app_adb) is None
        user = await passwords.authenticate(
            app_adb, ada.email, DEFAULT_PASSWORD, ip=None, user_agent=None
        )
        issued = await sessions.create_session(app_adb, user, ttl=TTL)
        await sessions.create_session(app_adb, grace, ttl=TTL)
        session = await sessions.validate_session(app_adb, issued.session_token)
    assert await app_adb.scalar(text("SELECT current_user")) == authmodels_roles.login

    await rls.set_current_user(app_adb, session.user_id)  # the rest of the request
    assert await rls.current_user_id(app_adb) == ada.id
    visible = (await app_adb.scalars(select(SessionModel.user_id))).all()
    assert visible == [ada.id]  # Grace's session is there, and hidden
    async with rls.as_user(app_adb, grace.id):
        assert (await app_adb.scalars(select(SessionModel.user_id))).all() == [grace.id]
    assert await rls.current_user_id(app_adb) == ada.id


@pytest.mark.asyncio
async def test_a_refusal_outlives_the_callers_rollback_on_an_async_engine(
    authmodels_app_async_fresh_engine: AsyncEngine,
    authmodels_async_fresh_engine: AsyncEngine,
    authmodels_roles: TestRoles,
    settings: FlowSettings,
) -> None:
    Db = async_session_factory(authmodels_app_async_fresh_engine)
    async with Db() as db:
        use_settings(db, settings.replace(refresh_grace_window=timedelta(0)))
        async with rls.service_role(db, authmodels_roles.service):
            ada = await db.run_sync(
                lambda sync: ServicePathUserFactory(sync, authmodels_roles.service)()
            )
            issued = await sessions.create_session(db, ada, ttl=TTL)
            await sessions.rotate_refresh_token(db, issued.refresh_token)
        session_id = issued.session.id
        await db.commit()
        async with rls.service_role(db, authmodels_roles.service):
            with pytest.raises(errors.RefreshTokenReused):
                await sessions.rotate_refresh_token(db, issued.refresh_token)
        await db.rollback()  # as a web framework does on an error

    async with authmodels_async_fresh_engine.connect() as owner:
        live = await owner.scalar(
            text("SELECT is_active FROM auth.sessions WHERE id = :id"), {"id": session_id}
        )
        kinds = (await owner.execute(text("SELECT event_type FROM auth.security_events"))).all()
    assert live is False and [k for (k,) in kinds] == ["refresh_token.reused"]


@pytest.mark.asyncio
async def test_update_versioned_refuses_a_stale_version(
    authmodels_async_fresh_engine: AsyncEngine,
) -> None:
    Db = async_session_factory(authmodels_async_fresh_engine)
    async with Db() as db:
        ada = await db.run_sync(lambda sync: UserFactory(sync)())
        await db.commit()
    async with Db() as first, Db() as second:
        updated = await locking.update_versioned(
            first, User, ada.id, ada.version, email_verified=True
        )
        await first.commit()
        assert updated.version == ada.version + 1 and updated.email_verified
        with pytest.raises(errors.ConcurrentUpdateError, match="reload it"):
            await locking.update_versioned(second, User, ada.id, ada.version, email_verified=False)
        with pytest.raises(locking.RowNotFoundError):
            await locking.update_versioned(second, User, uuid.UUID(int=1), 1)


@pytest.mark.asyncio
async def test_optimistic_update_turns_a_lost_race_into_a_typed_error(
    authmodels_async_fresh_engine: AsyncEngine,
) -> None:
    Db = async_session_factory(authmodels_async_fresh_engine)
    async with Db() as db:
        ada = await db.run_sync(lambda sync: UserFactory(sync)())
        await db.commit()
    async with Db() as first, Db() as second:
        mine = await first.get_one(User, ada.id)
        theirs = await second.get_one(User, ada.id)
        theirs.email_verified = True
        async with locking.optimistic_update(second):
            pass
        await second.commit()
        mine.email_verified = True  # a change of its own, from the version it loaded
        with pytest.raises(errors.ConcurrentUpdateError, match="modified by another"):
            async with locking.optimistic_update(first):
                pass


NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EVENTS = sync_retention.Policy(
    name="events", table="scratch.events", expired="created_at < :cutoff", keep_for=TTL * 24
)


@pytest.mark.asyncio
async def test_the_purge_runs_on_an_async_engine(
    authmodels_async_fresh_engine: AsyncEngine,
) -> None:
    engine = authmodels_async_fresh_engine
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA scratch"))
        await conn.execute(
            text("CREATE TABLE scratch.events (id bigint PRIMARY KEY, created_at timestamptz)")
        )
        await conn.execute(
            text(
                "INSERT INTO scratch.events SELECT g, :now - g * interval '1 hour' "
                "FROM generate_series(1, 48) g"
            ),
            {"now": NOW},
        )
    progress: list[int] = []
    report = await retention.purge(
        engine,
        policies=[EVENTS],
        now=NOW,
        batch_size=5,
        on_progress=lambda p: progress.append(p.rows),
    )
    async with engine.connect() as conn:
        left = await conn.scalar(text("SELECT count(*) FROM scratch.events"))
        stored = await retention.load_policies(conn)
    assert (report.policies[0].rows, left) == (24, 24)  # older than a day: hours 25 to 48
    assert progress[-1] == 24 and len(progress) == 5
    sync_engine = create_db_engine(engine.url)
    try:
        with sync_engine.connect() as conn:
            assert stored == sync_retention.load_policies(conn) and stored
    finally:
        sync_engine.dispose()
