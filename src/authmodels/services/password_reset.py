"""Password reset: a single-use link by e-mail, then a new password and everyone signed out.

Decisions:

- **Request** (:func:`request`): an unknown address and a known one give the same answer. The
  service answers the client "if an account has this address, a link is on its way" either way;
  :func:`request` returns a :class:`ResetRequest` whose ``token`` and ``message`` are None for
  an unknown (or deleted) account. Both paths run the same statements -- the lookup, the
  counted request (committed on its own), the statement that replaces the account's links and
  the one that logs the message (each writing nothing for an unknown address), an audit entry
  -- and commit writes (the audit entry), so they take the same time to within the rows written.
  Send the mail after answering (a queue), so the mail server's time is not the client's either.
- **Limits** per address typed and per client address (:class:`~authmodels.errors.
  TooManyRequestsError`), counted whether or not an account has the address, so a refusal says
  nothing about it either (:mod:`authmodels.services._request_limits`).
- **A new request invalidates the older links** of the account (they are deleted in the
  statement that stores the new one): only the latest mail works.
- **Complete** (:func:`complete`): the link is spent by one conditional UPDATE (``WHERE used_at
  IS NULL AND expires_at > now()``). Of concurrent completions of one link exactly one succeeds:
  the others wait on its row lock, then find it used (:class:`~authmodels.errors.
  TokenAlreadyUsedError`, a ``medium`` ``password_reset.token_reused`` security event, committed).
  Then, in the same transaction: the password policy and the history apply (the
  :func:`~authmodels.services.passwords.replace_password` of a password change: a reused
  password raises :class:`~authmodels.errors.PasswordReusedError`, and the caller's rollback
  leaves the link unused for another try), the lockout is cleared, the address is marked
  verified (the link proved it), every session is revoked (``password_reset``), a
  ``password_reset_complete`` audit entry and a ``low`` ``password_reset.completed`` security
  event are written, and a notice to the account's address is logged
  (``password_changed_notice``).
- A reset works during the cooling-off after an account recovery: it is how an owner takes back
  an account someone else recovered.

Under row-level security both run on the service path (:func:`authmodels.rls.service_role`):
nobody is signed in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidTokenError, TokenAlreadyUsedError, TokenExpiredError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.tokens import token_lookup_params, token_lookup_sql
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, _request_limits, audit, delivery, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services.delivery import Delivery
from authmodels.services.passwords import DEFAULT_HISTORY, check_new_password, replace_password
from authmodels.services.settings import settings_for

__all__ = ["ResetCompleted", "ResetRequest", "complete", "request"]

RESET_TEMPLATE = "password_reset"
CHANGED_NOTICE_TEMPLATE = "password_changed_notice"


@dataclass(frozen=True)
class ResetRequest:
    """What a reset request produced, for the service (tell the client nothing of it).

    Attributes:
        token: the raw token to put in the link; None when no live account has the address.
        expires_at: end of the link's lifetime (None with no token).
        message: the pending delivery of the link; None with no token.
    """

    token: str | None
    expires_at: datetime | None
    message: Delivery | None

    def __repr__(self) -> str:
        return f"ResetRequest(expires_at={self.expires_at}, {self.message!r}, token=<hidden>)"


@dataclass(frozen=True)
class ResetCompleted:
    """A reset done.

    Attributes:
        user_id: the account.
        sessions_revoked: how many sessions were signed out.
        notice: the pending notice to the account's address (send it).
    """

    user_id: uuid.UUID
    sessions_revoked: int
    notice: Delivery


# the account's links not used yet go, the new one is stored; for no account, nothing
_ISSUE = text(
    """
    WITH superseded AS (
        DELETE FROM auth.password_reset_tokens
         WHERE user_id = :user_id AND used_at IS NULL
    )
    INSERT INTO auth.password_reset_tokens (user_id, token_hash, expires_at, ip_hash, ua_hash)
    SELECT :user_id, :token_hash, now() + :ttl, :ip_hash, :ua_hash
     WHERE CAST(:user_id AS uuid) IS NOT NULL
    RETURNING expires_at
    """
)


@database_errors
def request(
    db: Session,
    email: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> ResetRequest:
    """Ask for a reset link: for a live account with this address, a new link (older ones stop
    working); for none, nothing, at the same cost.

    The request is counted first, in a transaction of its own; the rest is written in the
    caller's transaction (nothing is committed): the link's digest with the client's keyed
    hashes, the pending delivery (``password_reset``), and a ``password_reset_request`` audit
    entry (status ``failure`` and no user for an unknown address).

    Args:
        db: the session (on the service path under row-level security).
        email: the address typed (case and surrounding spaces ignored).
        ip: the client's address (keyed hash; counted towards the per-client limit).
        user_agent: the client's ``User-Agent`` (keyed hash).

    Returns:
        The :class:`ResetRequest`: send its ``message`` when there is one, and answer the
        client the same way in both cases.

    Raises:
        TooManyRequestsError: the per-address or per-client limit is reached (its security
            event is committed; nothing else is written).
        InvalidInputError: ``email`` is not an address an account can have (no account can have
            it, so saying so reveals nothing), ``user_agent`` not text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    address = _inputs.email_address(email)
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    user_id = _request_limits.live_account(db, address)
    _request_limits.admit(db, "password_reset", email=address, ip=ip, user_id=user_id)
    raw = new_token()
    expires_at = db.execute(
        _ISSUE,
        {
            "user_id": user_id,
            "token_hash": settings.hasher.digest(raw),
            "ttl": settings.password_reset_ttl,
            "ip_hash": None if ip is None else settings.privacy.ip_hash(ip),
            "ua_hash": None if user_agent is None else settings.privacy.ua_hash(user_agent),
        },
    ).scalar()
    message = delivery.write_if(
        db, "email", address, send=user_id is not None, template=RESET_TEMPLATE, user_id=user_id
    )
    audit.record(
        db, "password_reset_request", user_id=user_id,
        status="success" if user_id is not None else "failure", ip=ip, user_agent=user_agent,
    )  # fmt: skip
    if user_id is None:
        return ResetRequest(None, None, None)
    return ResetRequest(raw, expires_at, message)


# the rule: a link is used once, while it lives, for an account that lives
_SPEND = text(
    f"""
    UPDATE auth.password_reset_tokens AS t SET used_at = now()
      FROM auth.users AS u
     WHERE {token_lookup_sql("t")}
       AND t.used_at IS NULL AND t.expires_at > now()
       AND u.id = t.user_id AND u.deleted_at IS NULL
    RETURNING t.id, t.user_id, u.email
    """  # noqa: S608 (constant fragments, no input)
)
_WHY_NOT = text(
    f"""
    SELECT t.user_id, t.used_at IS NOT NULL AS used, t.expires_at <= now() AS expired
      FROM auth.password_reset_tokens AS t JOIN auth.users AS u ON u.id = t.user_id
     WHERE {token_lookup_sql("t")} AND u.deleted_at IS NULL
    """  # noqa: S608 (constant fragments, no input)
)
_MARK_VERIFIED = text(
    """
    UPDATE auth.users
       SET email_verified = true, email_verified_at = coalesce(email_verified_at, now())
     WHERE id = :id AND NOT email_verified
    """
)


@database_errors
def complete(
    db: Session,
    token: str,
    new_password: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> ResetCompleted:
    """Spend a reset link and set the new password; every session is signed out.

    See the module docstring for what is written (in the caller's transaction; nothing is
    committed but the refusal of a used link's security event).

    Args:
        db: the session (on the service path under row-level security).
        token: the raw token from the link.
        new_password: the new password, as typed.
        ip: the client's address (keyed hash in the security event).
        user_agent: the client's ``User-Agent`` (keyed hash in the security event).

    Returns:
        The account, how many sessions were revoked, and the notice to send.

    Raises:
        WeakPasswordError: the password is shorter than the policy's minimum (checked first:
            the link is not spent).
        InvalidTokenError: no link of a live account has this token.
        TokenAlreadyUsedError: the link was used already, by this or a concurrent request (its
            security event is committed).
        TokenExpiredError: the link's lifetime ended.
        PasswordReusedError: the password is the current one or a recent one (roll back: the
            link stays unused).
        InvalidInputError: ``new_password`` not text of 1 to 4,096 characters, ``user_agent``
            not text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    password = check_new_password(db, new_password)
    _inputs.presented(token, "reset link", hint=": ask for a new link")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    lookup = token_lookup_params(settings.hasher, token)
    spent = db.execute(_SPEND, lookup).first()
    if spent is None:
        why = db.execute(_WHY_NOT, lookup).first()
        if why is None:
            raise InvalidTokenError("the reset link is not valid: ask for a new link")
        if why.used:
            security_events.report(
                db, "password_reset.token_reused", SecurityEventSeverity.MEDIUM,
                user_id=why.user_id, ip=ip, user_agent=user_agent,
            )  # fmt: skip
            raise TokenAlreadyUsedError("the reset link was used already: ask for a new link")
        raise TokenExpiredError("the reset link expired: ask for a new link")

    user_id: uuid.UUID = spent.user_id
    revoked = replace_password(
        db, user_id, password, history=DEFAULT_HISTORY, reason="password_reset",
        audit_event="password_reset_complete", unlock=True,
    )  # fmt: skip
    db.execute(_MARK_VERIFIED, {"id": user_id})
    security_events.record(
        db, "password_reset.completed", SecurityEventSeverity.LOW, user_id=user_id, ip=ip,
        user_agent=user_agent, details={"sessions_revoked": revoked},
    )  # fmt: skip
    notice = delivery.write(
        db, "email", spent.email.lower(), template=CHANGED_NOTICE_TEMPLATE, user_id=user_id
    )
    return ResetCompleted(user_id, revoked, notice)
