"""The async API under real concurrency: coroutines of one event loop, each on a connection of
its own, racing for one single-use link and for one refresh token."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from authmodels import errors
from authmodels.aio import password_reset, sessions, tokens
from authmodels.db import async_session_factory, create_async_db_engine
from authmodels.services import FlowSettings
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import TEST_PASSWORD_HASHER, UserFactory

RACERS = 16


@pytest.fixture
def engine(authmodels_fresh_database: URL) -> AsyncEngine:
    """A pooled async engine with a connection for every racer (and their refusals' own)."""
    return create_async_db_engine(authmodels_fresh_database, pool_size=RACERS, max_overflow=0)


async def count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql)) or 0)


@pytest.mark.asyncio
async def test_of_16_concurrent_completions_of_one_link_exactly_one_succeeds(
    engine: AsyncEngine, settings: FlowSettings
) -> None:
    Db = async_session_factory(engine)
    Db.configure(info={SETTINGS_KEY: settings.replace(password_hasher=TEST_PASSWORD_HASHER)})
    try:
        async with Db() as db:
            user = await db.run_sync(lambda sync: UserFactory(sync)(email="ada@example.com"))
            link = await password_reset.request(db, user.email)
            await db.commit()
        assert link.token is not None

        async def attempt(i: int) -> object:
            async with Db() as db:
                done = await password_reset.complete(db, link.token or "", f"new passphrase {i}")
                await db.commit()
                return done

        outcomes = await asyncio.gather(
            *(attempt(i) for i in range(RACERS)), return_exceptions=True
        )

        winners = [o for o in outcomes if isinstance(o, password_reset.ResetCompleted)]
        assert len(winners) == 1, outcomes
        losers = [o for o in outcomes if isinstance(o, errors.TokenAlreadyUsedError)]
        assert len(losers) == RACERS - 1, outcomes
        assert await count(engine, "SELECT count(*) FROM auth.password_history") == 1
        reused = "SELECT count(*) FROM auth.security_events WHERE event_type = "
        assert await count(engine, reused + "'password_reset.token_reused'") == RACERS - 1
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_of_16_concurrent_rotations_of_one_refresh_token_one_wins_the_rest_revoke(
    engine: AsyncEngine, settings: FlowSettings
) -> None:
    Db = async_session_factory(engine)
    Db.configure(info={SETTINGS_KEY: settings.replace(refresh_grace_window=timedelta(0))})
    try:
        async with Db() as db:
            user = await db.run_sync(lambda sync: UserFactory(sync)())
            issued = await sessions.create_session(db, user, ttl=timedelta(hours=1))
            await db.commit()

        async def attempt() -> object:
            async with Db() as db:
                pair = await sessions.rotate_refresh_token(db, issued.refresh_token)
                await db.commit()
                return pair

        outcomes = await asyncio.gather(*(attempt() for _ in range(RACERS)), return_exceptions=True)

        assert sum(isinstance(o, tokens.IssuedTokens) for o in outcomes) == 1, outcomes
        assert sum(isinstance(o, errors.RefreshTokenReused) for o in outcomes) == RACERS - 1
        live = "SELECT count(*) FROM auth.sessions WHERE is_active AND revoked_at IS NULL"
        assert await count(engine, live) == 0  # a reuse revoked the family
    finally:
        await engine.dispose()
