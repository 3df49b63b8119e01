"""E-mail verification and e-mail change: an address is the account's only once proven.

A verification link proves control of an address: the account's own (after a sign-up, or a new
link asked for with :func:`request_verification`), or a new one the signed-in user wants to move
to (:func:`request_email_change`). :func:`verify` spends the link.

Decisions:

- **Single use, one outstanding link per account.** The token is random, returned raw once and
  stored as a keyed digest (``email_verification_tokens``, lifetime
  ``FlowSettings.email_verification_ttl``, 24 hours). A new request deletes the account's links
  not yet used (the latest request wins: a link in an older mail is simply not valid any more).
  :func:`verify` spends it with one conditional UPDATE (``WHERE verified_at IS NULL AND
  expires_at > now()``): of concurrent uses exactly one succeeds.
- **A new address replaces the old only once verified**, and **uniqueness is checked at that
  moment**, by the unique index itself (``uq_users_email_identity``, revision 0023): the UPDATE
  of ``users.email`` runs in a SAVEPOINT and a conflict raises
  :class:`~authmodels.errors.EmailTakenError`. Asking for a change says nothing about whether
  another account has the address (a signed-in user cannot probe addresses with it).
- **The old address is told** (a pending delivery ``email_changed_notice`` to the old address,
  returned in :class:`Verified` for the service to send), a ``medium`` security event
  ``account.email_changed`` is recorded, and the links sent to the old address that are still
  outstanding (password reset, magic links) are deleted: they were sent to an address that is
  not the account's any more. So are the verification rows that name the old address: the
  old address is kept nowhere (the audit entry and the event name it masked).
- **Cooling-off**: an account recovered recently cannot change its address
  (:class:`~authmodels.errors.RecoveryCoolingOffError`, see :mod:`authmodels.services.recovery`).
- **Limits**: asking for a link counts towards the per-address and per-client limits of the
  flows that send messages (:class:`~authmodels.errors.TooManyRequestsError`), like a sign-up.

Under row-level security: :func:`request_verification` and :func:`request_email_change` run as
the signed-in user (or on the service path); :func:`verify` runs on the service path
(:func:`authmodels.rls.service_role`): the link is presented before anyone is signed in, and it
sets ``users.email_verified``, which a user may not set on their own row (revision 0017).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authmodels.errors import (
    AccountDeletedError,
    EmailTakenError,
    InvalidInputError,
    InvalidTokenError,
    TokenAlreadyUsedError,
    TokenExpiredError,
)
from authmodels.locking import RowNotFoundError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.tokens import token_lookup_params, token_lookup_sql
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.security.privacy import mask_email
from authmodels.services import _inputs, _request_limits, audit, delivery, security_events
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services.delivery import Delivery
from authmodels.services.settings import settings_for

__all__ = [
    "VerificationLink",
    "Verified",
    "request_email_change",
    "request_verification",
    "verify",
]

#: Templates of the messages this flow logs.
VERIFY_TEMPLATE = "email_verification"
CHANGE_TEMPLATE = "email_change"
CHANGED_NOTICE_TEMPLATE = "email_changed_notice"


@dataclass(frozen=True)
class VerificationLink:
    """A verification link to send: the raw token (put it in the link) and the message.

    Attributes:
        token: the raw token; only its digest is stored.
        expires_at: end of the link's lifetime.
        message: the pending delivery (to the address being verified).
    """

    token: str
    expires_at: datetime
    message: Delivery

    def __repr__(self) -> str:
        return f"VerificationLink(expires_at={self.expires_at}, {self.message!r}, token=<hidden>)"


@dataclass(frozen=True)
class Verified:
    """A link spent.

    Attributes:
        user: the account, refreshed.
        changed: True when the link moved the account to a new address (an e-mail change).
        notice: for a change, the pending notice to the *old* address (send it); else None.
    """

    user: User
    changed: bool
    notice: Delivery | None


# the latest request wins: the account's links not used yet go, then the new one
_ISSUE = text(
    """
    WITH superseded AS (
        DELETE FROM auth.email_verification_tokens
         WHERE user_id = :user_id AND verified_at IS NULL
    )
    INSERT INTO auth.email_verification_tokens (user_id, email, token_hash, expires_at)
    VALUES (:user_id, :email, :token_hash, now() + :ttl)
    RETURNING expires_at
    """
)


def issue(
    db: Session,
    user_id: uuid.UUID,
    email: str,
    *,
    template: str = VERIFY_TEMPLATE,
) -> VerificationLink:
    """Store a new link for ``email`` (normalised) and log its message (arguments checked)."""
    settings = settings_for(db)
    raw = new_token()
    expires_at = db.execute(
        _ISSUE,
        {
            "user_id": user_id,
            "email": email,
            "token_hash": settings.hasher.digest(raw),
            "ttl": settings.email_verification_ttl,
        },
    ).scalar_one()
    message = delivery.write(db, "email", email, template=template, user_id=user_id)
    return VerificationLink(raw, expires_at, message)


_ACCOUNT = text("SELECT email, email_verified, deleted_at IS NOT NULL AS deleted FROM auth.users "
                "WHERE id = :id")  # fmt: skip


@database_errors
def request_verification(
    db: Session,
    user: User | uuid.UUID,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
) -> VerificationLink | None:
    """A new link verifying the account's current address (after a lost or expired one).

    Writes the link's digest and its pending delivery (``email_verification``) in the caller's
    transaction; older links of the account stop working.

    Args:
        db: the session (as the user under row-level security).
        user: the account (or its id).
        ip: the client's address (counted towards the per-client limit, as a keyed hash).

    Returns:
        The link to send, or None if the address is verified already (nothing is written).

    Raises:
        TooManyRequestsError: the per-address or per-client limit is reached (committed:
            the refusal's security event).
        AccountDeletedError: the account was deleted.
        RowNotFoundError: no account has this id (or it is not visible to this transaction).
        InvalidInputError: ``user`` is not a user or an id.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    user_id = _inputs.user_id_of(user)
    _inputs.ip_address(ip)
    account = db.execute(_ACCOUNT, {"id": user_id}).first()
    if account is None:
        raise RowNotFoundError(f"User {user_id} does not exist: nothing was sent")
    if account.deleted:
        raise AccountDeletedError("this account was deleted: its address cannot be verified")
    if account.email_verified:
        return None
    _request_limits.admit(
        db, "email_verification", email=account.email.lower(), ip=ip, user_id=user_id
    )
    return issue(db, user_id, account.email.lower())


@database_errors
def request_email_change(
    db: Session,
    user: User | uuid.UUID,
    new_email: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
) -> VerificationLink:
    """Ask to move the account to ``new_email``: a link to the new address; nothing changes
    until it is used (:func:`verify`).

    Writes the link (for ``new_email``), its pending delivery (``email_change``, to the new
    address) and an ``email_change_requested`` audit entry in the caller's transaction; older
    links of the account stop working. Whether another account has the address is not checked
    here (that would let a signed-in user probe addresses) but when the link is used.

    Args:
        db: the session (as the user under row-level security).
        user: the account (or its id).
        new_email: the address to move to (case and surrounding spaces ignored).
        ip: the client's address (counted towards the per-client limit, as a keyed hash).

    Returns:
        The link to send to the new address.

    Raises:
        InvalidInputError: ``new_email`` is not an address an account can have, or is the
            account's address already; ``user`` is not a user or an id.
        RecoveryCoolingOffError: the account was recovered recently (committed: its event).
        TooManyRequestsError: the per-address or per-client limit is reached (committed: its
            event).
        AccountDeletedError: the account was deleted.
        RowNotFoundError: no account has this id (or it is not visible to this transaction).
        InvalidIPAddressError: ``ip`` is not an address.
    """
    user_id = _inputs.user_id_of(user)
    address = _inputs.email_address(new_email, "new_email")
    _inputs.ip_address(ip)
    account = db.execute(_ACCOUNT, {"id": user_id}).first()
    if account is None:
        raise RowNotFoundError(f"User {user_id} does not exist: nothing was changed")
    if account.deleted:
        raise AccountDeletedError("this account was deleted: its address cannot change")
    if account.email.lower() == address:
        raise InvalidInputError("new_email is the account's address already", field="new_email")
    refuse_during_cooling_off(db, user_id, "the e-mail address")
    _request_limits.admit(db, "email_change", email=address, ip=ip, user_id=user_id)
    link = issue(db, user_id, address, template=CHANGE_TEMPLATE)
    audit.record(
        db, "email_change_requested", user_id=user_id, ip=ip,
        details={"to": mask_email(address)},
    )  # fmt: skip
    return link


# the rule: a link is used once, while it lives, by an account that lives
_SPEND = text(
    f"""
    UPDATE auth.email_verification_tokens AS t SET verified_at = now()
      FROM auth.users AS u
     WHERE {token_lookup_sql("t")}
       AND t.verified_at IS NULL AND t.expires_at > now()
       AND u.id = t.user_id AND u.deleted_at IS NULL
    RETURNING t.id, t.user_id, t.email
    """  # noqa: S608 (constant fragments, no input)
)
_WHY_NOT = text(
    f"""
    SELECT t.verified_at IS NOT NULL AS used, t.expires_at <= now() AS expired,
           u.deleted_at IS NOT NULL AS deleted
      FROM auth.email_verification_tokens AS t JOIN auth.users AS u ON u.id = t.user_id
     WHERE {token_lookup_sql("t")}
    """  # noqa: S608 (constant fragments, no input)
)
# the lock of the UPDATE that follows: ``email`` is in no index a foreign key can use, so it is
# not a key column; a security event committed on its own meanwhile can still name the account
_LOCK_ACCOUNT = text("SELECT email FROM auth.users WHERE id = :id FOR NO KEY UPDATE")
_MARK_VERIFIED = text(
    """
    UPDATE auth.users
       SET email_verified = true, email_verified_at = coalesce(email_verified_at, now())
     WHERE id = :id
    """
)
_CHANGE_ADDRESS = text(
    """
    UPDATE auth.users SET email = :email, email_verified = true, email_verified_at = now()
     WHERE id = :id
    """
)
# what still points at the old address: the outstanding links sent to it, and the verification
# rows that name it (the address is the account's no more: it is not kept)
_FORGET_OLD_ADDRESS = text(
    """
    WITH resets AS (
        DELETE FROM auth.password_reset_tokens WHERE user_id = :id AND used_at IS NULL
    ), links AS (
        DELETE FROM auth.magic_link_tokens WHERE user_id = :id AND used_at IS NULL
    )
    DELETE FROM auth.email_verification_tokens WHERE user_id = :id AND lower(email) = :old
    """
)


@database_errors
def verify(
    db: Session,
    token: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> Verified:
    """Spend a verification link: the account's address is verified, or replaced by the new
    one it proves.

    In the caller's transaction (nothing is committed): the link is spent; for the account's own
    address, ``email_verified`` is set and an ``email_verification`` audit entry written; for a
    change, the address is replaced (verified), the outstanding reset and magic links and the
    verification rows of the old address are deleted, a notice to the old address is logged,
    and an ``email_changed`` audit entry and a ``medium`` ``account.email_changed`` security
    event are written.

    Args:
        db: the session (on the service path under row-level security).
        token: the raw token from the link.
        ip: the client's address (keyed hash in the audit entry).
        user_agent: the client's ``User-Agent`` (keyed hash in the audit entry).

    Returns:
        The account, whether its address changed, and the notice to the old address.

    Raises:
        InvalidTokenError: no link has this token.
        TokenAlreadyUsedError: the link was used already (by this or a concurrent request).
        TokenExpiredError: the link's lifetime ended.
        AccountDeletedError: the account was deleted.
        EmailTakenError: another live account has the new address now (nothing is changed: roll
            back; the link stays unused).
        RecoveryCoolingOffError: the account was recovered since the change was asked for
            (committed: its event).
        InvalidInputError: ``user_agent`` is not text of at most 8,192 characters.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    _inputs.presented(token, "verification link", hint=": ask for a new link")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    lookup = token_lookup_params(settings.hasher, token)
    spent = db.execute(_SPEND, lookup).first()
    if spent is None:
        why = db.execute(_WHY_NOT, lookup).first()
        if why is None:
            raise InvalidTokenError("the verification link is not valid: ask for a new link")
        if why.deleted:
            raise AccountDeletedError("this account was deleted: its address cannot be verified")
        if why.used:
            raise TokenAlreadyUsedError("the verification link was used already")
        raise TokenExpiredError("the verification link expired: ask for a new link")
    user_id: uuid.UUID = spent.user_id
    old = str(db.execute(_LOCK_ACCOUNT, {"id": user_id}).scalar_one())
    if old.lower() == spent.email.lower():
        db.execute(_MARK_VERIFIED, {"id": user_id})
        audit.record(db, "email_verification", user_id=user_id, ip=ip, user_agent=user_agent)
        return Verified(_reload(db, user_id), False, None)

    refuse_during_cooling_off(db, user_id, "the e-mail address")  # its event names the account
    try:
        with db.begin_nested():  # the unique index decides, now
            db.execute(_CHANGE_ADDRESS, {"id": user_id, "email": spent.email})
    except IntegrityError as exc:
        if "email" not in str(exc.orig):
            raise
        raise EmailTakenError(
            "another account has this address now: the change cannot complete"
        ) from None
    db.execute(_FORGET_OLD_ADDRESS, {"id": user_id, "old": old.lower()})
    notice = delivery.write(db, "email", old, template=CHANGED_NOTICE_TEMPLATE, user_id=user_id)
    details = {"from": mask_email(old), "to": mask_email(spent.email)}
    audit.record(
        db, "email_changed", user_id=user_id, ip=ip, user_agent=user_agent, details=details
    )
    security_events.record(
        db, "account.email_changed", SecurityEventSeverity.MEDIUM, user_id=user_id, ip=ip,
        user_agent=user_agent, details=details,
    )  # fmt: skip
    return Verified(_reload(db, user_id), True, notice)


def _reload(db: Session, user_id: uuid.UUID) -> User:
    user = db.get(User, user_id, populate_existing=True)
    assert user is not None  # locked above
    return user
