"""OAuth connections: provider tokens encrypted and bound to their row, read back, the seed 003
"refresh due" query, refresh outcomes (re-encryption: ``test_reencryption.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    DecryptionError,
    OAuthConnectionError,
    OAuthConnectionNotFound,
    OAuthTokensNotEncrypted,
)
from authmodels.models import User
from authmodels.security.encryption import aad_for
from authmodels.services import FlowSettings, oauth
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, snapshot

ACCESS, REFRESH = "ya29.provider-access-token-1", "1//provider-refresh-token-1"
SOON = datetime.now(UTC) + timedelta(minutes=2)
LATER = datetime.now(UTC) + timedelta(hours=1)


def link(
    db: Session, user: User, provider_user_id: str = "g-1", **values: object
) -> oauth.OAuthConnection:
    params: dict[str, object] = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": SOON,
    }
    params.update(values)
    return oauth.store_tokens(
        db, user, provider="google", provider_user_id=provider_user_id, **params
    )  # type: ignore[arg-type]


def test_tokens_are_stored_encrypted_bound_to_row_and_column(
    db: Session, user: User, settings: FlowSettings
) -> None:
    connection = link(db, user, raw_data={"sub": "g-1"}, email="ada@example.test")

    assert connection.tokens_encrypted and connection.token_encryption_method == "aes-256-gcm"
    assert_no_raw_values(db, [ACCESS, REFRESH], ["oauth_connections"])
    tokens = oauth.read_tokens(db, connection.id, user=user)
    assert (tokens.access_token, tokens.refresh_token) == (ACCESS, REFRESH)
    assert "<hidden>" in repr(tokens)
    # the access-token envelope does not decrypt as the refresh token, nor on another row
    with pytest.raises(DecryptionError):
        settings.cipher.decrypt(
            connection.access_token_encrypted,  # type: ignore[arg-type]
            aad=aad_for("oauth_connections", "refresh_token_encrypted", connection.id),
        )


def test_relinking_replaces_tokens_and_clears_legacy_digests(
    db: Session, user: User, settings: FlowSettings
) -> None:
    db.execute(
        text(
            "INSERT INTO auth.oauth_connections (user_id, provider, provider_user_id, "
            "access_token_hash, token_encryption_method) VALUES (:u, 'google', 'g-1', :h, NULL)"
        ),
        {"u": user.id, "h": settings.hasher.digest("legacy")},
    )
    legacy_id = db.execute(text("SELECT id FROM auth.oauth_connections")).scalar_one()
    with pytest.raises(OAuthTokensNotEncrypted, match="sign in with the provider again"):
        oauth.read_tokens(db, legacy_id)

    connection = link(db, user, access_token="ya29.new")

    assert connection.id == legacy_id and connection.access_token_hash is None
    assert oauth.read_tokens(db, legacy_id).access_token == "ya29.new"


def test_a_provider_account_of_another_user_is_refused(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    link(db, user)
    before = snapshot(db, "oauth_connections")
    with pytest.raises(OAuthConnectionError, match="another user"):
        link(db, authmodels_user_factory(), access_token="ya29.stolen")
    assert snapshot(db, "oauth_connections") == before


def test_read_tokens_of_an_unknown_or_foreign_connection_is_refused(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    connection = link(db, user)
    with pytest.raises(OAuthConnectionNotFound):
        oauth.read_tokens(db, connection.id, user=authmodels_user_factory())
    with pytest.raises(OAuthConnectionNotFound):
        oauth.read_tokens(db, user.id)


def test_refresh_due_finds_only_encrypted_connections_with_a_refresh_token_expiring_soon(
    db: Session, user: User, settings: FlowSettings
) -> None:
    due = link(db, user, "due")
    link(db, user, "later", expires_at=LATER)
    link(db, user, "no-refresh-token", refresh_token=None)
    db.execute(
        text(
            "INSERT INTO auth.oauth_connections (user_id, provider, provider_user_id, "
            "refresh_token_hash, token_expires_at, token_encryption_method) "
            "VALUES (:u, 'google', 'legacy', :h, now(), NULL)"
        ),
        {"u": user.id, "h": settings.hasher.digest("legacy")},
    )

    assert [c.id for c in oauth.refresh_due(db)] == [due.id]
    assert len(oauth.refresh_due(db, within=timedelta(hours=2))) == 2
    assert [c.id for c in oauth.refresh_due(db, lock=True)] == [due.id]


def test_refresh_outcomes_are_recorded(db: Session, user: User) -> None:
    connection = link(db, user)

    failed = oauth.record_refresh(db, connection.id, status="failed", error="invalid_grant")
    assert (failed.last_token_refresh_status, failed.token_refresh_error_message) == (
        "failed",
        "invalid_grant",
    )
    done = oauth.record_refresh(
        db, connection.id, status="success", access_token="ya29.fresh", expires_at=LATER
    )
    assert done.last_token_refresh_status == "success" and done.token_refresh_error_message is None
    tokens = oauth.read_tokens(db, connection.id)
    assert (tokens.access_token, tokens.refresh_token) == ("ya29.fresh", REFRESH)
    assert oauth.refresh_due(db) == []

    before = snapshot(db, "oauth_connections")
    with pytest.raises(ValueError, match="only a failed refresh"):
        oauth.record_refresh(db, connection.id, status="skipped", error="x")
    with pytest.raises(ValueError, match="new access token"):
        oauth.record_refresh(db, connection.id, status="success")
    with pytest.raises(OAuthConnectionNotFound):
        oauth.record_refresh(db, user.id, status="skipped")
    assert snapshot(db, "oauth_connections") == before
