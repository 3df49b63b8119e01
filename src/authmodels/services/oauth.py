"""OAuth connections: provider tokens stored encrypted, read back, refreshed.

Since revision 0011 (seed 003 #118) a connection's provider tokens are ``FieldCipher`` envelopes
(``access_token_encrypted``, ``refresh_token_encrypted``) with associated data
``aad_for("oauth_connections", <column>, id)``: an envelope moved to another row or column does
not decrypt. Connections made before keep only legacy digests (``tokens_encrypted = false``),
which cannot be read back nor refreshed: the user signs in with the provider again, and
:func:`store_tokens` then replaces the digests with envelopes.

Decisions:

- :func:`store_tokens` links (or re-links) a provider account: ``(provider, provider_user_id)``
  is unique, and a provider account linked to another user is refused. The row is locked
  (``FOR UPDATE``) while its envelopes are made, because they are bound to its id.
- :func:`refresh_due` is seed 003's refresh-job query, served by ``idx_oauth_expiring_tokens``:
  ``WHERE tokens_encrypted AND refresh_token_encrypted IS NOT NULL AND token_expires_at < now()
  + interval``. With ``lock=True`` it takes the rows ``FOR UPDATE SKIP LOCKED``, so several
  workers share the due connections without refreshing one twice.
- :func:`record_refresh` writes the outcome (``last_token_refresh_*``; an error message only for
  a failure, as the table's CHECK wants) and, on success, the new tokens.
Nothing is committed here. Re-encryption to the newest key, of these tokens and of every other
envelope column, is :mod:`authmodels.services.reencryption` (``oauth.reencrypt`` is an alias of
its :func:`~authmodels.services.reencryption.reencrypt`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from authmodels.errors import (
    InvalidInputError,
    OAuthConnectionError,
    OAuthConnectionNotFound,
    OAuthTokensNotEncrypted,
)
from authmodels.models.enums import OAuthRefreshStatus
from authmodels.models.oauth import (
    MAX_PICTURE_URL_LENGTH,
    MAX_PROVIDER_USER_ID_LENGTH,
    PROVIDER_PATTERN,
    RAW_DATA_TOKEN_KEYS,
    OAuthConnection,
)
from authmodels.models.users import User
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.reencryption import (  # re-encryption lived here: still importable
    ENCRYPTED_COLUMNS as ENCRYPTED_COLUMNS,
)
from authmodels.services.reencryption import ReencryptReport as ReencryptReport
from authmodels.services.reencryption import reencrypt as reencrypt
from authmodels.services.settings import settings_for

__all__ = [
    "ProviderTokens",
    "read_tokens",
    "record_refresh",
    "refresh_due",
    "store_tokens",
]

TABLE = "oauth_connections"
#: Longest error message kept from a failed refresh.
MAX_ERROR_LENGTH = 1000
#: Longest provider token stored (provider tokens, JWTs included, are a few KiB at most).
MAX_PROVIDER_TOKEN_LENGTH = 16384
#: Longest ``token_type``, profile ``email`` and ``name`` kept.
MAX_TOKEN_TYPE_LENGTH, MAX_EMAIL_LENGTH, MAX_NAME_LENGTH = 40, 320, 255
#: Most connections :func:`refresh_due` returns at once.
MAX_LIMIT = 10_000
_PROVIDER = re.compile(PROVIDER_PATTERN)


def _token(value: object, field: str) -> str:
    return _inputs.text(value, field, max_length=MAX_PROVIDER_TOKEN_LENGTH)


def _status(value: OAuthRefreshStatus | str) -> OAuthRefreshStatus:
    try:
        return OAuthRefreshStatus(value)
    except ValueError:
        raise InvalidInputError(
            "status must be one of "
            f"{', '.join(s.value for s in OAuthRefreshStatus)}, not {str(value)[:40]!r}",
            field="status",
        ) from None


@dataclass(frozen=True)
class ProviderTokens:
    """A connection's provider tokens, decrypted.

    Attributes:
        access_token: the provider access token.
        refresh_token: the provider refresh token, if the provider gave one.
        expires_at: when the access token expires, if known.
        token_type: usually ``Bearer``.
    """

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    token_type: str | None

    def __repr__(self) -> str:
        return f"ProviderTokens(expires_at={self.expires_at}, tokens=<hidden>)"


def _envelopes(
    cipher: FieldCipher, connection_id: uuid.UUID, access_token: str, refresh_token: str | None
) -> dict[str, bytes | None]:
    return {
        "access_token_encrypted": cipher.encrypt_str(
            access_token, aad=aad_for(TABLE, "access_token_encrypted", connection_id)
        ),
        "refresh_token_encrypted": None
        if refresh_token is None
        else cipher.encrypt_str(
            refresh_token, aad=aad_for(TABLE, "refresh_token_encrypted", connection_id)
        ),
    }


_LOCK_CONNECTION = text(
    """
    SELECT id, user_id FROM auth.oauth_connections
     WHERE provider = :provider AND provider_user_id = :provider_user_id
       FOR UPDATE
    """
)
_INSERT_CONNECTION = text(
    """
    INSERT INTO auth.oauth_connections (id, user_id, provider, provider_user_id)
    VALUES (:id, :user_id, :provider, :provider_user_id)
    ON CONFLICT (provider, provider_user_id) DO NOTHING
    RETURNING id
    """
)
_STORE = text(
    """
    UPDATE auth.oauth_connections
       SET access_token_encrypted = :access_token_encrypted,
           refresh_token_encrypted = :refresh_token_encrypted,
           token_encryption_method = 'aes-256-gcm', tokens_encrypted = true,
           access_token_hash = NULL, refresh_token_hash = NULL,
           token_type = :token_type, token_expires_at = :expires_at, scopes = :scopes,
           email = coalesce(:email, email), name = coalesce(:name, name),
           picture_url = coalesce(:picture_url, picture_url),
           raw_data = coalesce(CAST(:raw_data AS jsonb), raw_data)
     WHERE id = :id
    """
)


@database_errors
def store_tokens(
    db: Session,
    user: User | uuid.UUID,
    *,
    provider: str,
    provider_user_id: str,
    access_token: str,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
    token_type: str | None = "Bearer",  # noqa: S107 (a token type, not a secret)
    scopes: str | None = None,
    email: str | None = None,
    name: str | None = None,
    picture_url: str | None = None,
    raw_data: dict[str, Any] | None = None,
) -> OAuthConnection:
    """Link a provider account to ``user`` (or update the link) with its tokens, encrypted.

    A legacy connection (hashed tokens) becomes an encrypted one: its digests are cleared.

    Args:
        db: the session (nothing is committed).
        user: the user (or id).
        provider: provider name (``google``...).
        provider_user_id: the account's id at the provider.
        access_token: the provider access token.
        refresh_token: the provider refresh token, if any.
        expires_at: when the access token expires.
        token_type: the token type.
        scopes: the granted scopes, space-separated.
        email: profile e-mail, name, picture URL: kept when given.
        name: see ``email``.
        picture_url: see ``email``.
        raw_data: the provider's profile response (never its tokens: the table refuses them).

    Returns:
        The connection's row.

    Raises:
        OAuthConnectionError: the provider account is linked to another user.
        MissingKeyError: no encryption key is configured.
        InvalidInputError: an argument outside its bounds (nothing is written): ``provider``
            not of the form ``[a-z0-9_.-]{1,50}``; ``provider_user_id`` not 1 to 255
            characters; a token not text of 1 to 16,384; ``picture_url`` over 1,024;
            ``raw_data`` not a JSON object (or holding ``access_token``, ``refresh_token`` or
            ``id_token``); ``expires_at`` not an aware datetime; ``user`` not a user or an id.
    """
    user_id = _inputs.user_id_of(user)
    _inputs.text(
        provider,
        "provider",
        pattern=_PROVIDER,
        form=f"a provider name of the form {PROVIDER_PATTERN}, such as 'google'",
    )
    _inputs.text(provider_user_id, "provider_user_id", max_length=MAX_PROVIDER_USER_ID_LENGTH)
    _token(access_token, "access_token")
    if refresh_token is not None:
        _token(refresh_token, "refresh_token")
    _inputs.optional_moment(expires_at, "expires_at")
    _inputs.optional_text(token_type, "token_type", max_length=MAX_TOKEN_TYPE_LENGTH)
    _inputs.optional_text(scopes, "scopes", max_length=_inputs.MAX_SCOPE_LENGTH)
    _inputs.optional_text(email, "email", max_length=MAX_EMAIL_LENGTH)
    _inputs.optional_text(name, "name", max_length=MAX_NAME_LENGTH)
    _inputs.optional_text(
        picture_url, "picture_url", min_length=0, max_length=MAX_PICTURE_URL_LENGTH
    )
    raw_json = (
        None
        if raw_data is None
        else _inputs.json_object(raw_data, "raw_data", forbidden_keys=RAW_DATA_TOKEN_KEYS)
    )
    cipher = settings_for(db).cipher
    key = {"provider": provider, "provider_user_id": provider_user_id}
    found = db.execute(_LOCK_CONNECTION, key).first()
    if found is None:
        db.execute(_INSERT_CONNECTION, {**key, "id": uuid.uuid4(), "user_id": user_id})
        found = db.execute(_LOCK_CONNECTION, key).one()  # ours, or a concurrent link's
    if found.user_id != user_id:
        raise OAuthConnectionError(
            f"this {provider} account is already linked to another user: unlink it there first"
        )
    db.execute(
        _STORE,
        {
            "id": found.id,
            **_envelopes(cipher, found.id, access_token, refresh_token),
            "token_type": token_type,
            "expires_at": expires_at,
            "scopes": scopes,
            "email": email,
            "name": name,
            "picture_url": picture_url,
            "raw_data": raw_json,
        },
    )
    return _load(db, found.id)


def _load(db: Session, connection_id: uuid.UUID) -> OAuthConnection:
    return db.execute(
        select(OAuthConnection)
        .where(OAuthConnection.id == connection_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


@database_errors
def read_tokens(
    db: Session, connection_id: uuid.UUID, *, user: User | uuid.UUID | None = None
) -> ProviderTokens:
    """Decrypt a connection's provider tokens.

    Args:
        db: the session.
        connection_id: the connection.
        user: when given, the connection must be this user's.

    Raises:
        OAuthConnectionNotFound: no such connection (of this user).
        OAuthTokensNotEncrypted: a legacy connection: only digests are stored.
        DecryptionError: an envelope does not authenticate (moved or altered).
        InvalidInputError: ``connection_id`` is not a UUID, or ``user`` not a user or an id.
    """
    _inputs.identifier(connection_id, "connection_id")
    if user is not None:
        _inputs.user_id_of(user)
    cipher = settings_for(db).cipher
    query = select(OAuthConnection).where(OAuthConnection.id == connection_id)
    if user is not None:
        query = query.where(OAuthConnection.user_id == _inputs.user_id_of(user))
    row = db.execute(query).scalar_one_or_none()
    if row is None:
        raise OAuthConnectionNotFound(f"OAuth connection {connection_id} does not exist")
    if not row.tokens_encrypted or row.access_token_encrypted is None:
        raise OAuthTokensNotEncrypted(
            "this connection predates encrypted token storage (only digests are kept): "
            "the user must sign in with the provider again"
        )
    return ProviderTokens(
        access_token=cipher.decrypt_str(
            row.access_token_encrypted, aad=aad_for(TABLE, "access_token_encrypted", row.id)
        ),
        refresh_token=None
        if row.refresh_token_encrypted is None
        else cipher.decrypt_str(
            row.refresh_token_encrypted, aad=aad_for(TABLE, "refresh_token_encrypted", row.id)
        ),
        expires_at=row.token_expires_at,
        token_type=row.token_type,
    )


@database_errors
def refresh_due(
    db: Session, *, within: timedelta = timedelta(minutes=5), limit: int = 100, lock: bool = False
) -> list[OAuthConnection]:
    """Seed 003's refresh job query: encrypted connections whose access token expires soon.

    Only ``tokens_encrypted`` rows with a refresh token qualify (legacy digests cannot be
    refreshed), soonest first (``idx_oauth_expiring_tokens``).

    Args:
        db: the session.
        within: how soon the access token must expire.
        limit: at most this many connections.
        lock: take the rows ``FOR UPDATE SKIP LOCKED`` (concurrent refresh workers).

    Raises:
        InvalidInputError: ``within`` is not a timedelta from 0 to ten years, or ``limit`` not
            an integer from 0 to 10,000.
    """
    _inputs.duration(within, "within", zero=True)
    _inputs.integer(limit, "limit", minimum=0, maximum=MAX_LIMIT)
    query = (
        select(OAuthConnection)
        .where(
            OAuthConnection.tokens_encrypted,
            OAuthConnection.refresh_token_encrypted.is_not(None),
            OAuthConnection.token_expires_at < text("now() + CAST(:within AS interval)"),
        )
        .order_by(OAuthConnection.token_expires_at)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(db.execute(query, {"within": within}).scalars())


_RECORD_OUTCOME = text(
    """
    UPDATE auth.oauth_connections
       SET last_token_refresh_attempt = now(), last_token_refresh_status = :status,
           token_refresh_error_message = :error
     WHERE id = :id
    RETURNING id
    """
)
_STORE_REFRESHED = text(
    """
    UPDATE auth.oauth_connections
       SET access_token_encrypted = :access_token_encrypted,
           refresh_token_encrypted = coalesce(:refresh_token_encrypted, refresh_token_encrypted),
           token_expires_at = :expires_at
     WHERE id = :id AND tokens_encrypted
    """
)


@database_errors
def record_refresh(
    db: Session,
    connection_id: uuid.UUID,
    *,
    status: OAuthRefreshStatus | str,
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
    error: str | None = None,
) -> OAuthConnection:
    """Record the outcome of a refresh attempt (and, on success, the new tokens).

    Args:
        db: the session (nothing is committed).
        connection_id: the connection.
        status: ``success``, ``failed`` or ``skipped``.
        access_token: on success, the new access token (required).
        refresh_token: on success, a rotated refresh token (the old one is kept when None).
        expires_at: on success, the new access token's expiry.
        error: on failure, the provider's error (kept up to 1000 characters).

    Raises:
        InvalidInputError: a success without an access token, an error for a non-failure, a
            ``status`` that is none of the three, a token not text of 1 to 16,384 characters,
            an ``error`` that is not text, ``expires_at`` not an aware datetime, or
            ``connection_id`` not a UUID.
        OAuthConnectionNotFound: no such connection.
    """
    _inputs.identifier(connection_id, "connection_id")
    outcome = _status(status)
    if outcome is OAuthRefreshStatus.SUCCESS and access_token is None:
        raise InvalidInputError(
            "a successful refresh must give the new access token", field="access_token"
        )
    if error is not None and outcome is not OAuthRefreshStatus.FAILED:
        raise InvalidInputError("only a failed refresh has an error message", field="error")
    if access_token is not None:
        _token(access_token, "access_token")
    if refresh_token is not None:
        _token(refresh_token, "refresh_token")
    _inputs.optional_moment(expires_at, "expires_at")
    if error is not None:
        # only the first MAX_ERROR_LENGTH characters are kept: those must be storable
        error = _inputs.text(
            error[:MAX_ERROR_LENGTH] if isinstance(error, str) else error,
            "error",
            max_length=MAX_ERROR_LENGTH,
        )
    recorded = db.execute(
        _RECORD_OUTCOME,
        {
            "id": connection_id,
            "status": outcome.value,
            "error": error,
        },
    ).first()
    if recorded is None:
        raise OAuthConnectionNotFound(f"OAuth connection {connection_id} does not exist")
    if outcome is OAuthRefreshStatus.SUCCESS and access_token is not None:
        cipher = settings_for(db).cipher
        db.execute(
            _STORE_REFRESHED,
            {
                "id": connection_id,
                **_envelopes(cipher, connection_id, access_token, refresh_token),
                "expires_at": expires_at,
            },
        )
    return _load(db, connection_id)
