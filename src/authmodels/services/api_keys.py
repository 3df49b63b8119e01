"""API keys: a public prefix to find the key, a secret checked against a keyed digest.

A key is shown to its owner once, as ``<prefix>.<secret>``: ``prefix`` (``ak_`` and 12 hex
characters, public, unique, shown in listings) and a 256-bit random secret. Only the keyed digest
of the whole key (``TokenHasher``) is stored.

Decisions:

- **Lookup**: by prefix (unique index), then the digest is compared in constant time
  (``TokenHasher.matches``, under whichever key of the ring made it). When no key has the
  prefix, a digest is still computed and compared against a dummy, so an unknown prefix and a
  wrong secret cost the same. Refusals are distinct: unknown or wrong
  (:class:`~authmodels.errors.InvalidApiKeyError`), revoked, expired -- the last two only once
  the secret proved right, so they reveal nothing to someone who only knows a prefix.
- **last_used_at** is written at most once per ``FlowSettings.api_key_touch_interval`` (5
  minutes) per key, by a conditional UPDATE (``WHERE last_used_at <= now() - interval``): an
  API key may be presented thousands of times a minute, and one write per request would turn
  every read into a row update (bloat, and contention on a hot key's row). "Last used" is
  therefore exact to within the interval; ``timedelta(0)`` writes on every call.
- **Scopes** are checked after the key is authenticated; a missing scope raises
  :class:`~authmodels.errors.InsufficientScopeError` naming what is missing.

Under row-level security :func:`authenticate` finds a key before its user is known: run it on
the service path (:func:`authmodels.rls.service_role`). Nothing is committed here.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from authmodels.errors import (
    ApiKeyExpiredError,
    ApiKeyRevokedError,
    AuthModelsError,
    InsufficientScopeError,
    InvalidApiKeyError,
    InvalidInputError,
)
from authmodels.models.api_keys import MAX_NAME_LENGTH, ApiKey
from authmodels.models.api_keys import PREFIX_PATTERN as PREFIX_FORMAT
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, audit, security_events
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services._replicas import on_replica
from authmodels.services.durable import durable
from authmodels.services.settings import settings_for

__all__ = ["CreatedApiKey", "authenticate", "create", "require_scopes", "revoke"]

#: A stored prefix (``ck_api_keys_prefix_format``); :func:`create` makes ``ak_`` + 12 hex digits.
PREFIX_PATTERN = re.compile(PREFIX_FORMAT)
_DUMMY_KEY = "ak_000000000000.dummy"
#: Most scopes a key may have, and the longest scope name.
MAX_SCOPES, MAX_SCOPE_LENGTH = 100, 200


def _scopes(scopes: object) -> list[str]:
    return _inputs.texts(scopes, "scopes", max_items=MAX_SCOPES, max_length=MAX_SCOPE_LENGTH)


@dataclass(frozen=True)
class CreatedApiKey:
    """A new API key: hand ``key`` to its owner once.

    Attributes:
        key: ``<prefix>.<secret>``, the whole key.
        api_key: the stored row (prefix, scopes, expiry; no secret).
    """

    key: str
    api_key: ApiKey

    def __repr__(self) -> str:
        return f"CreatedApiKey(prefix={self.api_key.prefix!r}, key=<hidden>)"


_INSERT = text(
    """
    INSERT INTO auth.api_keys (user_id, name, prefix, key_hash, scopes, expires_at)
    VALUES (:user_id, :name, :prefix, :key_hash, :scopes, :expires_at)
    ON CONFLICT (prefix) DO NOTHING
    RETURNING id
    """
)


@database_errors
def create(
    db: Session,
    user: User | uuid.UUID,
    *,
    name: str,
    scopes: Iterable[str] = (),
    expires_at: datetime | None = None,
) -> CreatedApiKey:
    """Create an API key for ``user``.

    Args:
        db: the session; the key and an audit entry (``sensitive_action``,
            ``api_key.create``) are written in its transaction.
        user: the owner (or id).
        name: a label (1 to 100 characters).
        scopes: what the key may do.
        expires_at: end of validity (None: no expiry).

    Returns:
        The raw key (once) and its row.

    Raises:
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
        InvalidInputError: ``name`` is not text of 1 to 100 characters, ``scopes`` not a list
            of at most 100 names of 1 to 200 characters, ``expires_at`` not an aware datetime
            in the future, or ``user`` not a user or an id.
    """
    user_id = _inputs.user_id_of(user)
    _inputs.text(name, "name", max_length=MAX_NAME_LENGTH)
    scope_list = sorted(set(_scopes(scopes)))
    _inputs.optional_moment(expires_at, "expires_at", future=True)
    refuse_during_cooling_off(db, user_id, "the API keys")
    settings = settings_for(db)
    for _ in range(8):
        prefix = f"ak_{secrets.token_hex(6)}"
        key = f"{prefix}.{new_token()}"
        key_id = db.execute(
            _INSERT,
            {
                "user_id": user_id,
                "name": name,
                "prefix": prefix,
                "key_hash": settings.hasher.digest(key),
                "scopes": scope_list,
                "expires_at": expires_at,
            },
        ).scalar_one_or_none()
        if key_id is not None:
            break
    else:  # 8 collisions among 2^48 prefixes
        raise AuthModelsError("no free API key prefix was found; try again")
    audit.record(
        db,
        "sensitive_action",
        user_id=user_id,
        action="api_key.create",
        details={"api_key_id": str(key_id), "prefix": prefix, "scopes": scope_list},
    )
    api_key = db.execute(select(ApiKey).where(ApiKey.id == key_id)).scalar_one()
    return CreatedApiKey(key, api_key)


_BY_PREFIX = text(
    """
    SELECT id, user_id, key_hash, revoked_at IS NOT NULL AS revoked,
           expires_at IS NOT NULL AND expires_at <= now() AS expired,
           last_used_at IS NULL OR last_used_at <= now() - :touch AS touch_due
      FROM auth.api_keys WHERE prefix = :prefix
    """
)
_TOUCH = text(
    """
    UPDATE auth.api_keys SET last_used_at = now()
     WHERE id = :id AND (last_used_at IS NULL OR last_used_at <= now() - :touch)
    """
)


@database_errors
def authenticate(db: Session, presented: str, *, scopes: Iterable[str] = ()) -> ApiKey:
    """The live API key ``presented`` is, with the ``scopes`` it must have.

    It may run on a read replica (:meth:`authmodels.db.ReplicatedDatabase.replica_session`):
    a key the replica does not know yet is looked up again on the primary, and the touch of
    ``last_used_at`` goes to the primary, each in a transaction of its own.

    Args:
        db: the session.
        presented: the key as sent (``<prefix>.<secret>``).
        scopes: the scopes the request needs.

    Returns:
        The key's row (its ``user_id`` is the caller's identity).

    Raises:
        InvalidApiKeyError: malformed, unknown prefix or wrong secret.
        ApiKeyRevokedError: the key was revoked.
        ApiKeyExpiredError: the key expired.
        InsufficientScopeError: a needed scope is not granted.
        InvalidInputError: ``scopes`` is not a list of scope names.
    """
    _inputs.presented(
        presented, "API key", error=InvalidApiKeyError, hint=": check the key that was sent"
    )
    wanted = _scopes(scopes)
    settings = settings_for(db)
    hasher = settings.hasher
    prefix, _, secret = presented.partition(".")
    row = None
    if PREFIX_PATTERN.fullmatch(prefix) and secret:
        params = {"prefix": prefix, "touch": settings.api_key_touch_interval}
        row = db.execute(_BY_PREFIX, params).first()
        if row is None and on_replica(db):  # maybe newer than the replica's replay
            with durable(db) as primary:
                row = primary.execute(_BY_PREFIX, params).first()
    if row is None:
        hasher.matches(_DUMMY_KEY, hasher.digest(presented))
        raise InvalidApiKeyError("the API key is not valid: check the key that was sent")
    if not hasher.matches(presented, row.key_hash):
        raise InvalidApiKeyError("the API key is not valid: check the key that was sent")
    if row.revoked:  # the right secret of a revoked key: it leaked, or a client was forgotten
        security_events.report(
            db, "api_key.revoked_key_used", SecurityEventSeverity.MEDIUM, user_id=row.user_id,
            details={"api_key_id": str(row.id), "prefix": prefix},
        )  # fmt: skip
        raise ApiKeyRevokedError("the API key was revoked: create a new one")
    if row.expired:
        raise ApiKeyExpiredError("the API key expired: create a new one")
    if row.touch_due:
        touch_params = {"id": row.id, "touch": settings.api_key_touch_interval}
        if on_replica(db):  # a replica refuses writes: the touch is the primary's
            with durable(db) as primary:
                primary.execute(_TOUCH, touch_params)
        else:
            db.execute(_TOUCH, touch_params)
    api_key = db.execute(
        select(ApiKey).where(ApiKey.id == row.id).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if api_key is None:  # on a replica that has not replayed it yet
        with durable(db) as primary:
            api_key = db.merge(primary.get_one(ApiKey, row.id), load=False)
    require_scopes(api_key, wanted)
    return api_key


def require_scopes(api_key: ApiKey, scopes: Iterable[str]) -> None:
    """Check that ``api_key`` grants every scope of ``scopes``.

    Raises:
        InsufficientScopeError: some are missing (named in ``missing``).
        InvalidInputError: ``api_key`` is not an :class:`~authmodels.models.ApiKey`, or
            ``scopes`` not a list of scope names.
    """
    if not isinstance(api_key, ApiKey):
        raise InvalidInputError(
            f"api_key must be an ApiKey, not {type(api_key).__name__}", field="api_key"
        )
    missing = sorted(set(_scopes(scopes)) - set(api_key.scopes))
    if missing:
        raise InsufficientScopeError(
            f"the API key lacks the scope(s) {', '.join(missing)}: create a key that has them",
            missing=missing,
        )


_REVOKE = text(
    """
    UPDATE auth.api_keys SET revoked_at = now()
     WHERE id = :id AND user_id = :user_id AND revoked_at IS NULL
    RETURNING prefix
    """
)


@database_errors
def revoke(db: Session, user: User | uuid.UUID, api_key_id: uuid.UUID) -> bool:
    """Revoke one of ``user``'s API keys (audited as ``api_key.revoke``).

    Returns:
        True if the key was live and is now revoked; False if it was already revoked, or is
        not a key of this user.

    Raises:
        InvalidInputError: ``user`` is not a user or an id, or ``api_key_id`` not a UUID.
    """
    user_id = _inputs.user_id_of(user)
    _inputs.identifier(api_key_id, "api_key_id")
    prefix = db.execute(_REVOKE, {"id": api_key_id, "user_id": user_id}).scalar_one_or_none()
    if prefix is None:
        return False
    audit.record(
        db,
        "sensitive_action",
        user_id=user_id,
        action="api_key.revoke",
        details={"api_key_id": str(api_key_id), "prefix": prefix},
    )
    return True
