"""The OAuth 2.0 device authorization grant (RFC 8628).

A device :func:`start` s a request and shows its user code; the user, signed in elsewhere, types
the code to :func:`approve` (or :func:`deny`) it; meanwhile the device :func:`poll` s with its
device code until it gets tokens. Codes are stored only as keyed digests (revision 0004): the
device code is a :func:`~authmodels.security.hashing.new_token`, the user code 8 characters of
RFC 8628 section 6.1's base-20 alphabet ``BCDFGHJKLMNPQRSTVWXZ`` (about 34.6 bits), shown as
``XXXX-XXXX`` and matched in the normal form of :func:`authmodels.codes.normalize_user_code`
(case, dashes and spaces ignored).

Decisions:

- **Tokens once**: an approved request becomes ``consumed`` by one conditional UPDATE
  (``WHERE status = 'approved' AND expires_at > now()``) in the same transaction that creates the
  device's session and token pair, so concurrent polls get tokens at most once, and never before
  the approval is committed.
- **Wrong user codes** (RFC 8628 section 5.1): each user may type ``FlowSettings.
  user_code_attempts`` (5) wrong codes per ``user_code_window`` (15 minutes, sliding). The
  counter is the audit log itself: every wrong code is an ``audit_logs`` entry
  ``device_flow_user_code_rejected`` (status ``failure``) for the user, counted with the
  ``(user_id, created_at)`` index; a refused attempt beyond the limit is audited as ``blocked``
  and not counted, so the lockout ends when the window slides. The attempts of one user are
  serialised by a transaction-level advisory lock taken *before* counting, so concurrent
  guesses cannot all pass the check at once. The limit is per user because approving needs a
  signed-in user; throttle anonymous traffic by address in front of the application too. At 5
  guesses per 15 minutes, one account needs about 2.6e10 / 480 per day = 150,000 years per
  live code it targets.
- **Polling** (RFC 8628 section 3.5): a poll of a pending request sooner than its interval after
  the previous one raises :class:`~authmodels.errors.SlowDown` and grows the interval by 5
  seconds for this and every later poll.
- **Commits**: refusals that change state the next attempt depends on -- a counted wrong code, a
  blocked attempt (also a ``medium`` security event), the polling telemetry and a grown
  interval -- are **committed in a transaction of their own**
  (:func:`authmodels.services.durable.durable`) before the error is raised, so a caller that
  rolls back on errors cannot reset the counters, and the caller's transaction is left as it
  was. Successful calls write in the caller's transaction and commit nothing.

Lock order: the device flow row, then what :func:`authmodels.services.sessions.create_session`
inserts. :func:`approve` and :func:`deny` take the user's advisory lock first.
Under row-level security (0006), :func:`start` and :func:`poll` see rows that belong to no user
yet: run them on the service path (:func:`authmodels.rls.service_role`).
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import LargeBinary, any_, bindparam, func, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from authmodels.codes import normalize_user_code
from authmodels.errors import (
    AccessDenied,
    AuthModelsError,
    AuthorizationPending,
    ExpiredToken,
    InvalidTokenError,
    InvalidUserCode,
    SlowDown,
    TooManyUserCodeAttempts,
)
from authmodels.models.device_flow import DeviceFlow
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, audit, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services.durable import durable
from authmodels.services.sessions import create_session
from authmodels.services.settings import settings_for
from authmodels.services.tokens import IssuedTokens, insert_access_token

__all__ = [
    "USER_CODE_ALPHABET",
    "USER_CODE_LENGTH",
    "DeviceAuthorization",
    "approve",
    "deny",
    "format_user_code",
    "new_user_code",
    "poll",
    "start",
]

#: RFC 8628 section 6.1: consonants only (no vowels, so no words), no look-alike digits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
#: Characters in a user code (20^8, about 2^34.6 codes).
USER_CODE_LENGTH = 8
_USER_CODE = re.compile(f"[{USER_CODE_ALPHABET}]{{{USER_CODE_LENGTH}}}")
#: RFC 8628 section 3.5: each ``slow_down`` adds 5 seconds to the interval.
SLOW_DOWN_STEP = 5
#: Longest text taken as a typed user code (a screenful; a code is 9 characters with its dash).
_TYPED_CODE_LENGTH = 64


@dataclass(frozen=True)
class DeviceAuthorization:
    """The answer to a device authorization request (RFC 8628 section 3.2), raw codes included.

    Attributes:
        device_code: the device's secret (polls with it); not stored anywhere.
        user_code: the code the user types, displayed as ``XXXX-XXXX``.
        expires_at: when both codes expire.
        interval: the minimum number of seconds between two polls.
        flow_id: the request's row id.
    """

    device_code: str
    user_code: str
    expires_at: datetime
    interval: int
    flow_id: uuid.UUID

    def __repr__(self) -> str:
        return f"DeviceAuthorization(flow_id={self.flow_id}, expires_at={self.expires_at})"


def new_user_code() -> str:
    """A random user code: 8 characters of :data:`USER_CODE_ALPHABET`, undashed."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """The display form of a user code: ``BCDFGHJK`` -> ``BCDF-GHJK``.

    Raises:
        InvalidInputError: ``code`` is not text of at most 64 characters.
    """
    normal = normalize_user_code(_inputs.text(code, "code", max_length=_TYPED_CODE_LENGTH))
    half = len(normal) // 2
    return f"{normal[:half]}-{normal[half:]}"


# --- start -----------------------------------------------------------------------------------

_INSERT_FLOW = text(
    """
    INSERT INTO auth.device_flows
           (device_code_hash, user_code_hash, client_id, scope, expires_at, interval_seconds)
    VALUES (:device_code_hash, :user_code_hash, :client_id, :scope, now() + :ttl, :interval)
    ON CONFLICT DO NOTHING
    RETURNING id, expires_at, interval_seconds
    """
)


@database_errors
def start(db: Session, *, client_id: str, scope: str | None) -> DeviceAuthorization:
    """Start a device authorization request (RFC 8628 section 3.1).

    A user code equal to one of a pending request (unique among pending requests,
    ``uq_device_flows_user_code_hash_pending``) is drawn again; ``ON CONFLICT DO NOTHING``
    detects it without an error that would abort the caller's transaction. The purge time
    (``retention_expires_at``) is set by the table's trigger (revision 0007).

    Args:
        db: the session; the request is inserted in its transaction (nothing is committed).
        client_id: the OAuth client of the device.
        scope: the scopes it asks for (space-separated), if any.

    Returns:
        The raw device and user codes, their expiry and the polling interval.

    Raises:
        InvalidInputError: ``client_id`` is not text of 1 to 255 characters, or ``scope`` of
            1 to 2,000.
    """
    _inputs.text(client_id, "client_id", max_length=_inputs.MAX_CLIENT_ID_LENGTH)
    _inputs.optional_text(scope, "scope", max_length=_inputs.MAX_SCOPE_LENGTH)
    settings = settings_for(db)
    for _ in range(8):
        device_code, user_code = new_token(), new_user_code()
        row = db.execute(
            _INSERT_FLOW,
            {
                "device_code_hash": settings.hasher.digest(device_code),
                "user_code_hash": settings.hasher.digest(normalize_user_code(user_code)),
                "client_id": client_id,
                "scope": scope,
                "ttl": settings.device_code_ttl,
                "interval": settings.device_poll_interval,
            },
        ).first()
        if row is not None:
            return DeviceAuthorization(
                device_code=device_code,
                user_code=format_user_code(user_code),
                expires_at=row.expires_at,
                interval=row.interval_seconds,
                flow_id=row.id,
            )
    # 8 collisions in a row among 2.6e10 codes: the table is full of pending requests
    raise AuthModelsError(
        "no free user code was found: too many device requests are pending; purge expired ones"
    )


# --- approve / deny --------------------------------------------------------------------------

_LOCK_USER_ATTEMPTS = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_RECENT_WRONG_CODES = text(
    """
    SELECT count(*) AS wrong, min(created_at) + :window - now() AS wait
      FROM auth.audit_logs
     WHERE user_id = :user_id AND event_type = 'device_flow_user_code_rejected'
       AND event_status = 'failure' AND created_at > now() - :window
    """
)
_PENDING_BUT_EXPIRED = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM auth.device_flows
         WHERE user_code_hash = ANY(:candidates) AND status = 'pending' AND expires_at <= now()
    )
    """
)


@database_errors
def approve(db: Session, user_code: str, user: User | uuid.UUID) -> DeviceFlow:
    """The signed-in ``user`` approves the pending request showing ``user_code``.

    Args:
        db: the session; the approval is written in its transaction (not committed).
        user_code: the code as the user typed it (any case, with or without the dash).
        user: the user (or user id) approving; the device gets tokens for this user.

    Returns:
        The approved request (client and scope, to confirm to the user).

    Raises:
        TooManyUserCodeAttempts: the user typed too many wrong codes recently (audited as
            ``blocked`` and committed).
        InvalidUserCode: no pending request has this code (counted, audited and committed);
            or what was typed is not a code at all (not 8 letters of the alphabet): refused
            before the database, not counted.
        ExpiredToken: the request with this code expired (the device must start again).
        InvalidInputError: ``user`` is neither a user nor an id.
    """
    return _decide(db, user_code, user, "approved")


@database_errors
def deny(db: Session, user_code: str, user: User | uuid.UUID) -> DeviceFlow:
    """The signed-in ``user`` denies the pending request showing ``user_code``.

    The device's next poll gets :class:`~authmodels.errors.AccessDenied`. Arguments, limits and
    errors are those of :func:`approve`.
    """
    return _decide(db, user_code, user, "denied")


def _decide(db: Session, user_code: str, user: User | uuid.UUID, status: str) -> DeviceFlow:
    user_id = _inputs.user_id_of(user)
    typed = _inputs.presented(
        user_code, "user code", error=InvalidUserCode, max_length=_TYPED_CODE_LENGTH
    )
    code = normalize_user_code(typed)
    if _USER_CODE.fullmatch(code) is None:
        # it cannot match a code: refused without counting an attempt
        raise InvalidUserCode(
            f"{typed[:20]!r} is not a code a device shows: codes are {USER_CODE_LENGTH} "
            "letters such as BCDF-GHJK; check the code on the device"
        )
    settings = settings_for(db)

    # 1. The guess limit (RFC 8628 5.1), checked before the code: this user's attempts queue on
    #    one advisory lock (held to the end of the transaction), then the wrong ones are counted.
    db.execute(_LOCK_USER_ATTEMPTS, {"key": f"authmodels.device_flow.user_code:{user_id}"})
    recent = db.execute(
        _RECENT_WRONG_CODES, {"user_id": user_id, "window": settings.user_code_window}
    ).one()
    if recent.wrong >= settings.user_code_attempts:
        details = {"attempts": recent.wrong, "window_seconds": _seconds(settings.user_code_window)}
        with durable(db) as side:  # kept even if the caller rolls back
            audit.record(side, "device_flow_user_code_rejected", user_id=user_id,
                         status="blocked", details=details)  # fmt: skip
            security_events.record(
                side, "device_flow.user_code_attempts_exceeded", SecurityEventSeverity.MEDIUM,
                user_id=user_id, details=details,
            )  # fmt: skip
        retry_after = max(1, _seconds(recent.wait))
        raise TooManyUserCodeAttempts(
            f"too many wrong codes were typed: try again in {retry_after} seconds",
            retry_after=retry_after,
        )

    # 2. The decision: only a pending, unexpired request can be decided, and only once.
    candidates = settings.hasher.candidates(code)
    decided = {"status": status, "user_id": user_id}
    if status == "approved":
        decided["approved_at"] = func.now()
    flow = db.execute(
        update(DeviceFlow)
        .where(
            DeviceFlow.user_code_hash == any_(bindparam("c", candidates, ARRAY(LargeBinary))),
            DeviceFlow.status == "pending",
            DeviceFlow.expires_at > func.now(),
        )
        .values(decided)
        .returning(DeviceFlow)
        .execution_options(populate_existing=True, synchronize_session=False),
    ).scalar_one_or_none()

    if flow is None:
        if db.execute(_PENDING_BUT_EXPIRED, {"candidates": candidates}).scalar_one():
            raise ExpiredToken("this code has expired: start again on the device to get a new one")
        with durable(db) as side:  # the attempt counts even if the caller rolls back
            audit.record(
                side,
                "device_flow_user_code_rejected",
                user_id=user_id,
                status="failure",
                details={"attempt": recent.wrong + 1, "limit": settings.user_code_attempts},
            )
        raise InvalidUserCode(
            "no pending device request has this code: check the code shown on the device "
            f"({settings.user_code_attempts - recent.wrong - 1} attempts left)"
        )

    audit.record(
        db,
        f"device_flow_{status}",
        user_id=user_id,
        details={"flow_id": str(flow.id), "client_id": flow.client_id, "scope": flow.scope},
    )
    return flow


# --- poll ------------------------------------------------------------------------------------

_CONSUME = text(
    """
    UPDATE auth.device_flows
       SET status = 'consumed', last_polled_at = now(), poll_count = poll_count + 1
     WHERE device_code_hash = ANY(:candidates) AND status = 'approved' AND expires_at > now()
    RETURNING id, user_id, client_id, scope
    """
)
_INSPECT_FLOW = text(
    """
    SELECT id, status, expires_at <= now() AS expired
      FROM auth.device_flows
     WHERE device_code_hash = ANY(:candidates)
    """
)
# In a transaction of its own: polls of one request are counted one by one (the row lock), and
# only while it is still pending (an approval committed meanwhile is consumed by the next pass).
_LOCK_PENDING = text(
    """
    SELECT coalesce(last_polled_at > now() - make_interval(secs => interval_seconds), false)
               AS too_soon
      FROM auth.device_flows
     WHERE id = :id AND status = 'pending'
       FOR UPDATE
    """
)
_RECORD_POLL = text(
    """
    UPDATE auth.device_flows
       SET last_polled_at = now(), poll_count = poll_count + 1,
           interval_seconds = interval_seconds + :step
     WHERE id = :id
    RETURNING interval_seconds
    """
)


@database_errors
def poll(db: Session, device_code: str, *, dpop_jkt: str | None = None) -> IssuedTokens:
    """The device asks for its tokens (RFC 8628 section 3.4).

    Once the request is approved, the first poll consumes it and gets a new session (lifetime
    ``FlowSettings.device_session_ttl``) with a token pair; the access token carries the
    request's client id and scope. That poll writes in the caller's transaction and commits
    nothing. The other outcomes are errors; the pending ones commit the polling telemetry in a
    transaction of their own.

    Args:
        db: the session.
        device_code: the raw device code.
        dpop_jkt: the thumbprint of the device's verified DPoP proof, to bind the session and its
            tokens to (RFC 9449), if any.

    Returns:
        The access and refresh tokens, raw.

    Raises:
        AuthorizationPending: not decided yet (poll recorded and committed).
        SlowDown: polled sooner than the interval; the interval grew by 5 s (committed).
        AccessDenied: the user denied the request.
        ExpiredToken: the request expired.
        InvalidTokenError: no request has this device code, or its tokens were already issued.
        InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
    """
    _inputs.presented(device_code, "device code", hint=": start again on the device")
    _inputs.jkt(dpop_jkt)
    settings = settings_for(db)
    candidates = settings.hasher.candidates(device_code)
    for _ in range(2):  # a second pass only if the request was approved between the statements
        # 1. The rule: an approved request yields tokens once.
        approved = db.execute(_CONSUME, {"candidates": candidates}).first()
        if approved is not None:
            issued = create_session(
                db, approved.user_id, ttl=settings.device_session_ttl, dpop_jkt=dpop_jkt
            )
            access = insert_access_token(
                db,
                token_id=issued.refresh_token_id,  # a pair shares its id
                raw=new_token(),
                user_id=approved.user_id,
                ttl=settings.access_token_ttl,
                session_id=issued.session.id,
                client_id=approved.client_id,
                scope=approved.scope,
                dpop_jkt=dpop_jkt,
                rotated_from=None,
            )
            audit.record(
                db,
                "device_flow_tokens_issued",
                user_id=approved.user_id,
                details={
                    "flow_id": str(approved.id),
                    "client_id": approved.client_id,
                    "session_id": str(issued.session.id),
                },
            )
            return IssuedTokens(
                access_token=access.token,
                refresh_token=issued.refresh_token,
                token_type=access.token_type,
                expires_at=access.expires_at,
                refresh_expires_at=issued.refresh_expires_at,
                pair_id=issued.refresh_token_id,
                session_id=issued.session.id,
                user_id=approved.user_id,
                scope=approved.scope,
            )

        # 2. Not approved: find out why; a pending request has its poll counted on its own.
        flow = db.execute(_INSPECT_FLOW, {"candidates": candidates}).first()
        if flow is None:
            raise InvalidTokenError("the device code is not valid: start again on the device")
        if flow.status == "consumed":
            raise InvalidTokenError(
                "this device code was already exchanged for tokens: start again on the device"
            )
        if flow.status == "denied":
            raise AccessDenied("the user denied the request")
        if flow.status == "expired" or flow.expired:
            raise ExpiredToken("the device code expired: start again on the device")
        if flow.status == "approved":
            continue  # approved since statement 1: consume it now
        with durable(db) as side:  # the poll counts even if the caller rolls back
            too_soon = side.execute(_LOCK_PENDING, {"id": flow.id}).scalar_one_or_none()
            if too_soon is not None:
                step = SLOW_DOWN_STEP if too_soon else 0
                interval = side.execute(_RECORD_POLL, {"id": flow.id, "step": step}).scalar_one()
        if too_soon is None:
            continue  # decided since the inspection: find out how
        if too_soon:
            raise SlowDown(
                f"the device polled too often: wait {interval} seconds between polls",
                interval=interval,
            )
        raise AuthorizationPending("the user has not approved the request yet: poll again")
    raise InvalidTokenError("the device code could not be used: start again on the device")


def _seconds(value: timedelta | None) -> int:
    return 0 if value is None else int(value.total_seconds())
