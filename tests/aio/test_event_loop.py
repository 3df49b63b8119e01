"""Under the async API the event loop keeps serving while a flow waits or hashes.

A flow runs in ``AsyncSession.run_sync``: its statements are awaited on the asyncio driver. Two
parts of a flow could still hold the loop: the refusals committed in a transaction of their own
(:mod:`authmodels.services.durable`, a second connection) and Argon2id. These tests show
neither does: a durable write that waits for a row lock held elsewhere leaves the loop ticking
(a blocked loop could not even release the lock: the holder is a coroutine on the same loop),
and password hashing runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from authmodels import errors
from authmodels.aio import passwords, signup
from authmodels.aio.settings import use_settings
from authmodels.db import async_session_factory, create_async_db_engine
from authmodels.models import User
from authmodels.security.passwords import PasswordHasher
from authmodels.services import FlowSettings
from authmodels.services import passwords as sync_passwords
from authmodels.services import settings as sync_settings
from authmodels.testing.factories import DEFAULT_PASSWORD, UserFactory


@asynccontextmanager
async def ticking(interval: float = 0.005) -> AsyncIterator[list[float]]:
    """A task that records the loop's time every ``interval`` while the block runs."""
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(interval)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        yield ticks
    finally:
        task.cancel()


@pytest.fixture
def pooled_engine(authmodels_fresh_database: URL) -> AsyncEngine:
    """A pooled async engine (an asyncio queue pool) on a fresh database: the flows' second
    connection comes from a pool made from this one's."""
    return create_async_db_engine(authmodels_fresh_database, pool_size=2, max_overflow=0)


@pytest.mark.asyncio
async def test_a_refusal_waiting_for_a_row_lock_leaves_the_loop_serving(
    pooled_engine: AsyncEngine, settings: FlowSettings
) -> None:
    Db = async_session_factory(pooled_engine)
    async with Db() as setup:
        ada = await setup.run_sync(lambda db: UserFactory(db)(email="ada@example.com"))
        await setup.commit()
    try:
        async with pooled_engine.connect() as holder, Db() as db:
            use_settings(db, settings)
            # another transaction holds Ada's row: the failed-login counter must wait for it
            await holder.execute(
                text("SELECT 1 FROM auth.users WHERE id = :id FOR UPDATE"), {"id": ada.id}
            )
            login = asyncio.create_task(
                passwords.authenticate(db, ada.email, "wrong", ip=None, user_agent=None)
            )
            started = time.monotonic()
            async with ticking() as ticks:
                await asyncio.sleep(0.5)
                during_wait = len(ticks)
                await holder.rollback()  # a coroutine of this loop releases the lock
                with pytest.raises(errors.InvalidCredentialsError):
                    await login
            assert time.monotonic() - started >= 0.5 and not login.cancelled()
            assert during_wait >= 20  # 5 ms ticks through a 500 ms wait

        async with Db() as check:  # the counter was committed on its own
            failures = await check.scalar(
                text("SELECT failed_login_attempts FROM auth.users WHERE id = :id"),
                {"id": ada.id},
            )
        assert failures == 1
    finally:
        await pooled_engine.dispose()


class RecordingHasher(PasswordHasher):
    """The test hasher, noting the thread each hash and verification runs in."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1, allow_weak=True)
        self.threads: list[int] = []

    def hash(self, password: str) -> str:
        self.threads.append(threading.get_ident())
        return super().hash(password)

    def verify_and_update(self, stored: str, password: str) -> tuple[bool, str | None]:
        self.threads.append(threading.get_ident())
        return super().verify_and_update(stored, password)

    def verify_dummy(self, password: str) -> None:
        self.threads.append(threading.get_ident())
        super().verify_dummy(password)


@pytest.mark.asyncio
async def test_password_hashing_runs_off_the_event_loop(
    adb: AsyncSession, settings: FlowSettings
) -> None:
    hasher = RecordingHasher()
    use_settings(adb, settings.replace(password_hasher=hasher))
    loop_thread = threading.get_ident()

    signed_up = await signup.register(adb, "grace@example.com", "a long passphrase")
    user = await passwords.authenticate(
        adb, "grace@example.com", "a long passphrase", ip=None, user_agent=None
    )
    with pytest.raises(errors.InvalidCredentialsError):
        await passwords.authenticate(adb, "nobody@example.com", "x", ip=None, user_agent=None)

    assert signed_up.created and user.id == signed_up.user.id
    assert len(hasher.threads) == 3 and loop_thread not in hasher.threads


def test_sync_callers_hash_in_their_own_thread(
    authmodels_session: Session, settings: FlowSettings
) -> None:
    hasher = RecordingHasher()
    db = sync_settings.use_settings(authmodels_session, settings.replace(password_hasher=hasher))
    user: User = UserFactory(db)(email="lin@example.com")
    assert sync_passwords.authenticate(db, user.email, DEFAULT_PASSWORD, ip=None, user_agent=None)
    assert hasher.threads == [threading.get_ident()]
