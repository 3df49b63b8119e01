"""Trusted devices: the devices a user signs in from, which of them they trust, and revoking one.

A device is what the client presents as its fingerprint: a value it keeps (a random identifier
in a long-lived cookie or the app's storage is best; a fingerprint computed from the browser is
weaker and changes). authmodels keeps only its keyed hash (``user_devices.fingerprint_hash``,
revision 0033), so the table tells whether a device was seen before without holding anything
that identifies it elsewhere.

Decisions:

- **Seen at login** (:func:`record_login`, after the password or the link was accepted): the
  device is found by its fingerprint's hash under every privacy key (the stored hash moves to the
  current key on the way), or inserted (``INSERT ... ON CONFLICT`` on ``(user_id,
  fingerprint_hash)``: two concurrent first logins from one device make one row). A device seen
  for the first time -- or again after it was revoked -- records a ``low`` security event
  ``device.new_device`` in the login's transaction, which a service may mail the user about.
- **Sessions name their device**: pass the :class:`~authmodels.models.UserDevice` to
  :func:`authmodels.services.sessions.create_session` (``device=``). ``sessions.device_id``
  references ``(id, user_id)`` of ``user_devices``, so a session can only name a device of its
  own user.
- **Trusting needs a step-up token** (:func:`trust`): the user re-authenticated
  (:func:`authmodels.services.step_up.issue` with purpose ``device.trust``), the token is spent
  in the same transaction, and the device gets a trust token (random, returned raw once, stored
  as a keyed digest) valid ``FlowSettings.device_trust_ttl``. The client keeps it; at the next
  login :func:`is_trusted` checks it *with the fingerprint*, and the service may skip the
  second factor. A device cannot be trusted while the account cools off after a recovery.
- **Revoking a device ends its sessions** (:func:`revoke`): its trust is cleared and every live
  session started on it is revoked (``device_revoked``), with its refresh and access tokens, in
  the same transaction. If the device signs in again, it is a new device.

Under row-level security: :func:`record_login` and :func:`is_trusted` run where the login
runs (the service path); :func:`trust`, :func:`revoke` and :func:`list_devices` as the signed-in
user (the ``user_devices_owner`` policy of revision 0010).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidTokenError, UnknownDeviceError
from authmodels.models.devices import UserDevice
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, audit, security_events, sessions, step_up
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = [
    "TRUST_PURPOSE",
    "SeenDevice",
    "TrustedDevice",
    "is_trusted",
    "list_devices",
    "record_login",
    "revoke",
    "trust",
]

#: The step-up purpose :func:`trust` spends.
TRUST_PURPOSE = "device.trust"
#: Longest fingerprint accepted, and longest device name.
MAX_FINGERPRINT_LENGTH, MAX_NAME_LENGTH = 1024, 100


@dataclass(frozen=True)
class SeenDevice:
    """A device seen at a login.

    Attributes:
        device: its row (pass it to ``sessions.create_session(..., device=...)``).
        new: True the first time it is seen for this user (or after it was revoked).
    """

    device: UserDevice
    new: bool


@dataclass(frozen=True)
class TrustedDevice:
    """A trust granted: the raw token for the client to keep (it is not stored anywhere).

    Attributes:
        device_id: the device's row id.
        token: the raw trust token.
        expires_at: when the trust ends.
    """

    device_id: uuid.UUID
    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"TrustedDevice(device_id={self.device_id}, expires_at={self.expires_at})"


def _fingerprint(value: object) -> str:
    return _inputs.text(value, "fingerprint", max_length=MAX_FINGERPRINT_LENGTH)


# a known device: seen again (its hash moves to the current key); a revoked one comes back new
_SEEN_AGAIN = text(
    """
    WITH found AS (
        SELECT id, revoked_at IS NOT NULL AS was_revoked FROM auth.user_devices
         WHERE user_id = :user_id AND fingerprint_hash = ANY(:candidates)
         ORDER BY last_seen_at DESC NULLS LAST LIMIT 1
           FOR UPDATE
    )
    UPDATE auth.user_devices AS d
       SET fingerprint_hash = :fingerprint_hash, last_seen_at = now(), last_ip_hash = :ip_hash,
           ua_hash = :ua_hash, device_name = coalesce(:name, d.device_name), revoked_at = NULL
      FROM found WHERE d.id = found.id
    RETURNING d.id, found.was_revoked
    """
)
# the rule: one row per user and fingerprint; two concurrent first logins make one row
_FIRST_SEEN = text(
    """
    INSERT INTO auth.user_devices
           (user_id, fingerprint_hash, device_name, last_seen_at, last_ip_hash, ua_hash)
    VALUES (:user_id, :fingerprint_hash, :name, now(), :ip_hash, :ua_hash)
    ON CONFLICT (user_id, fingerprint_hash) DO UPDATE
       SET last_seen_at = now(), last_ip_hash = EXCLUDED.last_ip_hash,
           ua_hash = EXCLUDED.ua_hash
    RETURNING id, xmax = 0 AS inserted
    """
)


@database_errors
def record_login(
    db: Session,
    user: User | uuid.UUID,
    fingerprint: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
    name: str | None = None,
) -> SeenDevice:
    """Record the device a user just signed in from; a new one raises a ``low`` security event.

    In the caller's transaction (nothing is committed): the device's row (inserted, or updated:
    last seen, the client's keyed hashes) and, for a new device, the ``device.new_device``
    security event.

    Args:
        db: the session (where the login runs: the service path under row-level security).
        user: the account that signed in (or its id).
        fingerprint: what the client presents of itself (kept as a keyed hash only).
        ip: the client's address (keyed hash).
        user_agent: the client's ``User-Agent`` (keyed hash).
        name: a name the user recognises ("Firefox on Ada's laptop"), if known.

    Returns:
        The device, and whether it is new.

    Raises:
        InvalidInputError: ``fingerprint`` not text of 1 to 1,024 characters, ``name`` not of
            1 to 100, ``user_agent`` not of at most 8,192; ``user`` not a user or an id.
        InvalidIPAddressError: ``ip`` is not an address.
        RowNotFoundError: no account has this id.
    """
    user_id = _inputs.user_id_of(user)
    presented = _fingerprint(fingerprint)
    name = _inputs.optional_text(name, "name", max_length=MAX_NAME_LENGTH)
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    privacy = settings_for(db).privacy
    params = {
        "user_id": user_id,
        "candidates": privacy.client_candidates(presented),
        "fingerprint_hash": privacy.client_hash(presented),
        "name": name,
        "ip_hash": None if ip is None else privacy.ip_hash(ip),
        "ua_hash": None if user_agent is None else privacy.ua_hash(user_agent),
    }
    seen = db.execute(_SEEN_AGAIN, params).first()
    if seen is not None:
        device_id, new = seen.id, bool(seen.was_revoked)
    else:
        first = db.execute(_FIRST_SEEN, params).one()
        device_id, new = first.id, bool(first.inserted)
    if new:
        security_events.record(
            db, "device.new_device", SecurityEventSeverity.LOW, user_id=user_id, ip=ip,
            user_agent=user_agent, details={"device_id": str(device_id), "name": name},
        )  # fmt: skip
    device = db.get(UserDevice, device_id, populate_existing=True)
    assert device is not None  # written above
    return SeenDevice(device, new)


# the device is locked first, so a concurrent revocation and trust run one after the other
_LOCK_DEVICE = text(
    """
    SELECT id FROM auth.user_devices
     WHERE id = :device_id AND user_id = :user_id AND revoked_at IS NULL
       FOR NO KEY UPDATE
    """
)
_TRUST = text(
    """
    UPDATE auth.user_devices
       SET trust_token_hash = :token_hash, trusted_at = now(), trust_expires_at = now() + :ttl
     WHERE id = :device_id
    RETURNING trust_expires_at
    """
)


@database_errors
def trust(
    db: Session,
    user: User | uuid.UUID,
    device: UserDevice | uuid.UUID,
    *,
    step_up_token: str,
    session_id: uuid.UUID | None = None,
    ttl: timedelta | None = None,
) -> TrustedDevice:
    """Trust a device of the user, spending a step-up token of purpose ``device.trust``.

    In the caller's transaction (nothing is committed): the step-up token is spent, the device
    gets a trust token (its digest, ``trusted_at``, ``trust_expires_at``; a former trust is
    replaced), and a ``device_trusted`` audit entry is written.

    Args:
        db: the session (as the signed-in user under row-level security).
        user: the user (or id).
        device: the device (or its id), one of the user's live devices.
        step_up_token: a step-up token of the user for ``device.trust``
            (:func:`authmodels.services.step_up.issue` after a re-authentication).
        session_id: the session presenting the token, when the token was issued for one.
        ttl: how long the trust lasts; ``FlowSettings.device_trust_ttl`` by default.

    Returns:
        The raw trust token for the client to keep, and its expiry.

    Raises:
        UnknownDeviceError: no live device of this user has this id (the token is not spent).
        StepUpTokenInvalid, StepUpTokenUsed, StepUpTokenExpired: the step-up token does not
            authorise it (re-authenticate).
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
        InvalidInputError: ``ttl`` not a positive timedelta of at most ten years, an id not a
            UUID, ``user`` or ``device`` neither a row nor an id.
    """
    user_id = _inputs.user_id_of(user)
    device_id = _inputs.row_id(device, "device", UserDevice)
    _inputs.optional_identifier(session_id, "session_id")
    settings = settings_for(db)
    lifetime = settings.device_trust_ttl if ttl is None else _inputs.duration(ttl, "ttl")
    if db.execute(_LOCK_DEVICE, {"device_id": device_id, "user_id": user_id}).first() is None:
        raise UnknownDeviceError("this user has no live device with this id")
    refuse_during_cooling_off(db, user_id, "the trusted devices")
    step_up.consume(db, user_id, step_up_token, purpose=TRUST_PURPOSE, session_id=session_id)
    raw = new_token()
    expires_at = db.execute(
        _TRUST,
        {"device_id": device_id, "token_hash": settings.hasher.digest(raw), "ttl": lifetime},
    ).scalar_one()
    audit.record(
        db, "device_trusted", user_id=user_id,
        details={"device_id": str(device_id), "until": expires_at.isoformat()},
    )  # fmt: skip
    if isinstance(device, UserDevice) and device in db:
        db.refresh(device)
    return TrustedDevice(device_id, raw, expires_at)


# the rule: trusted means this fingerprint, this token, not expired, not revoked
_IS_TRUSTED = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM auth.user_devices
         WHERE user_id = :user_id AND fingerprint_hash = ANY(:fingerprints)
           AND trust_token_hash = ANY(:tokens)
           AND trust_expires_at > now() AND revoked_at IS NULL
    )
    """
)


@database_errors
def is_trusted(
    db: Session, user: User | uuid.UUID, fingerprint: str, trust_token: str | None
) -> bool:
    """Whether the client is a trusted device of the user: its fingerprint and its trust token
    match one live, unexpired trust. Writes nothing.

    Args:
        db: the session (where the login runs: the service path under row-level security).
        user: the user (or id) who is signing in.
        fingerprint: what the client presents of itself.
        trust_token: the trust token the client kept, if any.

    Returns:
        True if the service may treat the client as trusted (e.g. skip the second factor).

    Raises:
        InvalidInputError: ``fingerprint`` not text of 1 to 1,024 characters, ``user`` not a
            user or an id.
    """
    user_id = _inputs.user_id_of(user)
    presented = _fingerprint(fingerprint)
    if trust_token is None:
        return False
    try:
        _inputs.presented(trust_token, "trust token")
    except InvalidTokenError:  # a value that cannot be a token is simply not a trust
        return False
    settings = settings_for(db)
    return bool(
        db.execute(
            _IS_TRUSTED,
            {
                "user_id": user_id,
                "fingerprints": settings.privacy.client_candidates(presented),
                "tokens": settings.hasher.candidates(trust_token),
            },
        ).scalar()
    )


_REVOKE = text(
    """
    UPDATE auth.user_devices
       SET revoked_at = now(), trust_token_hash = NULL, trusted_at = NULL,
           trust_expires_at = NULL
     WHERE id = :device_id AND user_id = :user_id AND revoked_at IS NULL
    RETURNING id
    """
)
_DEVICE_SESSIONS = text(
    """
    SELECT id FROM auth.sessions
     WHERE device_id = :device_id AND user_id = :user_id AND revoked_at IS NULL
     ORDER BY id
    """
)


@database_errors
def revoke(db: Session, user: User | uuid.UUID, device: UserDevice | uuid.UUID) -> int:
    """Revoke a device of the user: its trust ends, and every live session started on it is
    revoked (with its refresh and access tokens).

    In the caller's transaction (nothing is committed): the device (``revoked_at``, trust
    cleared), the sessions (reason ``device_revoked``, each with its session audit entry), a
    ``device_revoked`` audit entry.

    Args:
        db: the session (as the signed-in user under row-level security).
        user: the user (or id).
        device: the device (or its id).

    Returns:
        How many sessions were revoked.

    Raises:
        UnknownDeviceError: no live device of this user has this id.
        InvalidInputError: ``user`` or ``device`` neither a row nor an id.
    """
    user_id = _inputs.user_id_of(user)
    device_id = _inputs.row_id(device, "device", UserDevice)
    if db.execute(_REVOKE, {"device_id": device_id, "user_id": user_id}).first() is None:
        raise UnknownDeviceError("this user has no live device with this id")
    ids = list(db.execute(_DEVICE_SESSIONS, {"device_id": device_id, "user_id": user_id}).scalars())
    revoked = sessions.revoke_sessions(db, ids, reason="device_revoked")
    audit.record(
        db, "device_revoked", user_id=user_id,
        details={"device_id": str(device_id), "sessions_revoked": revoked},
    )  # fmt: skip
    if isinstance(device, UserDevice) and device in db:
        db.refresh(device)
    return revoked


@database_errors
def list_devices(db: Session, user: User | uuid.UUID) -> list[UserDevice]:
    """The user's live devices, the most recently seen first.

    Args:
        db: the session (as the signed-in user under row-level security).
        user: the user (or id).

    Raises:
        InvalidInputError: ``user`` is not a user or an id.
    """
    user_id = _inputs.user_id_of(user)
    return list(
        db.scalars(
            select(UserDevice)
            .where(UserDevice.user_id == user_id, UserDevice.revoked_at.is_(None))
            .order_by(UserDevice.last_seen_at.desc().nulls_last(), UserDevice.id)
        )
    )
