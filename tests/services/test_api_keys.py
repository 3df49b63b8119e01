"""API keys: shown once as prefix.secret, stored as a digest, authenticated by prefix and digest
with distinct refusals, scopes, revocation, throttled last-use writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    ApiKeyExpiredError,
    ApiKeyRevokedError,
    InsufficientScopeError,
    InvalidApiKeyError,
)
from authmodels.models import User
from authmodels.services import FlowSettings, api_keys, use_settings
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

TABLES = ("api_keys", "audit_logs")


def test_key_is_shown_once_and_stored_as_a_digest(db: Session, user: User) -> None:
    created = api_keys.create(db, user, name="ci", scopes=["read", "write", "read"])

    prefix, _, secret = created.key.partition(".")
    assert created.api_key.prefix == prefix and api_keys.PREFIX_PATTERN.fullmatch(prefix)
    assert created.api_key.scopes == ["read", "write"]
    assert_no_raw_values(db, [created.key, secret], ["api_keys"])
    assert "<hidden>" in repr(created)
    assert audit_events(db, user.id) == [("sensitive_action", "success")]


def test_authenticate_returns_the_key_and_checks_scopes(db: Session, user: User) -> None:
    created = api_keys.create(db, user, name="ci", scopes=["read"])

    found = api_keys.authenticate(db, created.key, scopes=["read"])
    assert found.id == created.api_key.id and found.user_id == user.id
    before = snapshot(db, *TABLES)
    with pytest.raises(InsufficientScopeError) as refused:
        api_keys.authenticate(db, created.key, scopes=["read", "admin"])
    assert refused.value.missing == ["admin"]
    assert snapshot(db, *TABLES) == before


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong secret
        lambda k: "ak_ffffffffffff." + k.partition(".")[2],  # unknown prefix
        lambda k: k.partition(".")[0],  # no secret
        lambda k: "",
        lambda k: "garbage",
    ],
)
def test_wrong_keys_are_invalid_and_change_nothing(db: Session, user: User, mangle) -> None:  # type: ignore[no-untyped-def]
    created = api_keys.create(db, user, name="ci")
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidApiKeyError):
        api_keys.authenticate(db, mangle(created.key))
    assert snapshot(db, *TABLES) == before


def test_revoked_and_expired_keys_are_refused_with_their_own_errors(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    live = api_keys.create(db, user, name="live")
    expiring = api_keys.create(db, user, name="old", expires_at=None)
    db.execute(
        text(
            "UPDATE auth.api_keys SET created_at = now() - interval '2 days', "
            "expires_at = now() - interval '1 day' WHERE id = :id"
        ),
        {"id": expiring.api_key.id},
    )
    other = authmodels_user_factory()

    assert api_keys.revoke(db, other, live.api_key.id) is False  # not theirs
    assert api_keys.revoke(db, user, live.api_key.id) is True
    assert api_keys.revoke(db, user, live.api_key.id) is False
    before = snapshot(db, *TABLES)
    with pytest.raises(ApiKeyRevokedError):
        api_keys.authenticate(db, live.key)
    with pytest.raises(ApiKeyExpiredError):
        api_keys.authenticate(db, expiring.key)
    assert snapshot(db, *TABLES) == before


def test_last_used_is_written_once_per_interval(
    db: Session, user: User, settings: FlowSettings
) -> None:
    created = api_keys.create(db, user, name="ci")

    first = api_keys.authenticate(db, created.key).last_used_at
    assert first is not None
    db.execute(text("UPDATE auth.api_keys SET last_used_at = last_used_at - interval '1 minute'"))
    touched = db.execute(text("SELECT last_used_at FROM auth.api_keys")).scalar_one()
    assert api_keys.authenticate(db, created.key).last_used_at == touched  # throttled

    db.execute(text("UPDATE auth.api_keys SET last_used_at = last_used_at - interval '10 minutes'"))
    assert api_keys.authenticate(db, created.key).last_used_at == first  # now() of this transaction

    use_settings(db, settings.replace(api_key_touch_interval=timedelta(0)))
    db.execute(text("UPDATE auth.api_keys SET last_used_at = last_used_at - interval '1 second'"))
    assert api_keys.authenticate(db, created.key).last_used_at == first
    assert count(db, "api_keys") == 1
