"""The async API runs the flows: same results, same typed errors, same refusals kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from authmodels import errors
from authmodels.aio import passwords, sessions
from authmodels.aio.settings import use_settings
from authmodels.services import FlowSettings
from authmodels.testing.factories import DEFAULT_PASSWORD
from tests.aio.conftest import MakeUser

TTL = timedelta(hours=1)


@pytest.mark.asyncio
async def test_sign_in_validate_rotate_and_revoke(adb: AsyncSession, make_user: MakeUser) -> None:
    ada = await make_user(email="ada@example.com")
    user = await passwords.authenticate(
        adb, "ADA@example.com", DEFAULT_PASSWORD, ip="203.0.113.9", user_agent="UA"
    )
    issued = await sessions.create_session(adb, user, ttl=TTL)
    session = await sessions.validate_session(adb, issued.session_token)
    pair = await sessions.rotate_refresh_token(adb, issued.refresh_token)
    assert (user.id, session.user_id, pair.user_id) == (ada.id, ada.id, ada.id)
    assert await sessions.revoke_session(adb, session.id, reason="logout") is True
    with pytest.raises(errors.SessionRevokedError):
        await sessions.validate_session(adb, issued.session_token)


@pytest.mark.asyncio
async def test_a_reused_refresh_token_revokes_the_family(
    adb: AsyncSession, make_user: MakeUser, settings: FlowSettings
) -> None:
    use_settings(adb, settings.replace(refresh_grace_window=timedelta(0)))
    ada = await make_user()
    issued = await sessions.create_session(adb, ada, ttl=TTL)
    await sessions.rotate_refresh_token(adb, issued.refresh_token)
    with pytest.raises(errors.RefreshTokenReused):
        await sessions.rotate_refresh_token(adb, issued.refresh_token)
    with pytest.raises(errors.SessionRevokedError):
        await sessions.validate_session(adb, issued.session_token)
    events = await adb.execute(text("SELECT event_type FROM auth.security_events"))
    assert events.scalars().all() == ["refresh_token.reused"]


@pytest.mark.asyncio
async def test_a_twin_takes_its_session_by_keyword_and_refuses_bad_input_before_the_database(
    adb: AsyncSession,
) -> None:
    with pytest.raises(errors.InvalidTokenError, match="sign in again"):
        await sessions.validate_session(db=adb, token="")
    with pytest.raises(errors.InvalidInputError) as refused:
        await sessions.validate_session(adb, "x" * 43, dpop_jkt="not a thumbprint\x00")
    assert refused.value.field == "dpop_jkt"
    assert not adb.in_transaction()  # refused before any statement
