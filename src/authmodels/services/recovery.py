"""Account recovery: back into an account whose password (and perhaps second factor) is lost,
through a verified channel or a recovery code, then a cooling-off.

**The model.** A password reset assumes the owner still reads their mail and holds their other
factors; recovery is for the owner who lost more, and it is also what an attacker tries after a
mailbox or a phone number was taken over. So:

1. **Proof** -- one of two, each a row of ``auth.account_recovery`` (one ``pending`` request per
   account: a new one cancels the older), valid ``FlowSettings.recovery_ttl`` (an hour):

   - a **verified channel** (:func:`start`): a link to the account's address, *only if the
     address is verified* (``method = 'email'``), or to a phone number the service has verified
     for the account (``method = 'sms'``; authmodels keeps no phone numbers, so the service
     passes it). The request answers an unknown or unverified address as a known one, under the
     same limits, like a reset request;
   - a **recovery code** (:func:`start_with_code`): the account's address and one of its
     single-use backup codes (:mod:`authmodels.services.mfa`), spent; the answer is a recovery
     token at once (``method = 'backup_code'``). A wrong code or an unknown address get the same
     refusal (:class:`~authmodels.errors.InvalidCredentialsError`), and each attempt counts
     towards the per-address and per-client limits, which bound guessing.

2. **Completion** (:func:`complete`): the token is spent once (a conditional UPDATE, ``pending``
   to ``completed``); the new password is set (policy and history apply), every session is
   revoked, the lockout cleared, outstanding reset and magic links deleted, the address marked
   verified when the proof came by e-mail; an ``account_recovered`` audit entry and a ``medium``
   ``account.recovered`` security event are written, and a notice is logged to the account's
   address (``account_recovered_notice``), which the service sends with a way to react. The
   second factor stays as it is: an owner who lost it signs in with a backup code, or asks an
   administrator (``method = 'admin'``, outside these flows).

3. **Cooling-off** (``FlowSettings.recovery_cooling_off``, 24 hours): the recovered account
   signs in with its new password, but its credentials cannot change -- password (signed in),
   e-mail address, second factors, passkeys, trusted devices, API keys -- until it ends
   (:class:`~authmodels.errors.RecoveryCoolingOffError`). Someone who recovered an account that
   is not theirs cannot lock the owner out at once; the owner, told by the notice, can take it
   back with a password reset (which the cooling-off does not block) and new recoveries, and,
   before completion, can cancel a pending request while signed in (:func:`cancel`).

Under row-level security :func:`start`, :func:`start_with_code` and :func:`complete` run on the
service path (:func:`authmodels.rls.service_role`); :func:`cancel` as the signed-in user
(revision 0034's ``account_recovery_owner_cancel``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    InvalidBackupCodeError,
    InvalidCredentialsError,
    InvalidInputError,
    InvalidTokenError,
    TokenAlreadyUsedError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.security.privacy import normalize_phone
from authmodels.services import _inputs, _request_limits, audit, delivery, mfa, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services.delivery import Delivery
from authmodels.services.passwords import DEFAULT_HISTORY, check_new_password, replace_password
from authmodels.services.settings import settings_for

__all__ = [
    "Recovered",
    "RecoveryStarted",
    "cancel",
    "complete",
    "start",
    "start_with_code",
]

TEMPLATE = "account_recovery"
RECOVERED_NOTICE_TEMPLATE = "account_recovered_notice"
#: Longest recovery code accepted as typed (backup codes are 10 characters, with dashes).
MAX_CODE_LENGTH = 64


@dataclass(frozen=True)
class RecoveryStarted:
    """What a recovery request produced, for the service (tell the client nothing of it).

    Attributes:
        token: the raw recovery token for the link or the text; None when no live account has
            a verified address of this value.
        expires_at: end of the token's lifetime (None with no token).
        message: the pending delivery (e-mail or text message); None with no token.
    """

    token: str | None
    expires_at: datetime | None
    message: Delivery | None

    def __repr__(self) -> str:
        return f"RecoveryStarted(expires_at={self.expires_at}, {self.message!r}, token=<hidden>)"


@dataclass(frozen=True)
class Recovered:
    """A recovery completed.

    Attributes:
        user_id: the account.
        method: how the owner proved it (``email``, ``sms``, ``backup_code``).
        sessions_revoked: how many sessions were signed out.
        cooling_off_until: until when the account's credentials cannot change.
        notice: the pending notice to the account's address (send it).
    """

    user_id: uuid.UUID
    method: str
    sessions_revoked: int
    cooling_off_until: datetime
    notice: Delivery


_FIND_ACCOUNT = text(
    """
    SELECT id, email_verified FROM auth.users
     WHERE lower(email) = :email AND deleted_at IS NULL
    """
)
# one pending request per account: the older are cancelled, the new one stored (for no
# account, nothing)
_ISSUE = text(
    """
    WITH superseded AS (
        UPDATE auth.account_recovery SET status = 'cancelled'
         WHERE user_id = :user_id AND status = 'pending'
    )
    INSERT INTO auth.account_recovery (user_id, method, token_hash, requested_ip_hash, expires_at)
    SELECT :user_id, CAST(:method AS auth.account_recovery_method), :token_hash, :ip_hash,
           now() + :ttl
     WHERE CAST(:user_id AS uuid) IS NOT NULL
    RETURNING expires_at
    """
)


def _issue(
    db: Session, user_id: uuid.UUID | None, method: str, ip: str | IPv4Address | IPv6Address | None
) -> tuple[str, datetime | None]:
    settings = settings_for(db)
    raw = new_token()
    expires_at = db.execute(
        _ISSUE,
        {
            "user_id": user_id,
            "method": method,
            "token_hash": settings.hasher.digest(raw),
            "ip_hash": None if ip is None else settings.privacy.ip_hash(ip),
            "ttl": settings.recovery_ttl,
        },
    ).scalar()
    return raw, expires_at


@database_errors
def start(
    db: Session,
    email: str,
    *,
    channel: str = "email",
    phone: str | None = None,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> RecoveryStarted:
    """Ask for a recovery through a verified channel: a link to the account's verified address,
    or a text to the verified ``phone`` the service holds for it.

    For no live account with a *verified* address of this value, nothing is sent, at the same
    cost (the same statements; see :mod:`authmodels.services.password_reset`). The request is
    counted first, in a transaction of its own; the rest is written in the caller's transaction
    (nothing is committed): the request (older pending ones cancelled), the pending delivery
    (``account_recovery``), an ``account_recovery_requested`` audit entry (status ``failure``
    and no user when nothing is sent).

    Args:
        db: the session (on the service path under row-level security).
        email: the account's address, as typed.
        channel: ``"email"``, or ``"sms"`` with ``phone``.
        phone: for ``sms``, the account's verified number (E.164), from the service's records.
        ip: the client's address (keyed hash; counted towards the per-client limit).
        user_agent: the client's ``User-Agent`` (keyed hash in the audit entry).

    Returns:
        The :class:`RecoveryStarted`; answer the client the same way in both cases.

    Raises:
        TooManyRequestsError: the per-address or per-client limit is reached (its security
            event is committed; nothing else is written).
        InvalidInputError: ``email`` is not an address an account can have, ``channel`` not
            ``email`` or ``sms``, ``phone`` missing for ``sms`` (or given for ``email``) or not
            E.164, ``user_agent`` not text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    address = _inputs.email_address(email)
    if not isinstance(channel, str) or channel not in ("email", "sms"):
        raise InvalidInputError(
            f"channel must be 'email' or 'sms', not {str(channel)[:20]!r}", field="channel"
        )
    if (phone is None) != (channel == "email"):
        raise InvalidInputError(
            "phone is the verified number a text goes to: give it with channel='sms' only",
            field="phone",
        )
    number = None if phone is None else normalize_phone(_inputs.text(phone, "phone", max_length=64))
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    account = db.execute(_FIND_ACCOUNT, {"email": address}).first()
    # only a verified address is a channel: an unverified one proves nothing
    user_id = account.id if account is not None and account.email_verified else None
    _request_limits.admit(db, "account_recovery", email=address, ip=ip, user_id=user_id)
    raw, expires_at = _issue(db, user_id, channel, ip)
    message = delivery.write_if(
        db, channel, number or address, send=user_id is not None, template=TEMPLATE,
        user_id=user_id,
    )  # fmt: skip
    audit.record(
        db, "account_recovery_requested", user_id=user_id,
        status="success" if user_id is not None else "failure", ip=ip, user_agent=user_agent,
        details={"method": channel},
    )  # fmt: skip
    if user_id is None:
        return RecoveryStarted(None, None, None)
    return RecoveryStarted(raw, expires_at, message)


@database_errors
def start_with_code(
    db: Session,
    email: str,
    code: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> str:
    """Prove an account with one of its recovery (backup) codes: a recovery token at once.

    The attempt is counted first, in a transaction of its own (the per-address and per-client
    limits bound guessing). Then, in the caller's transaction (nothing is committed): the code is
    spent, the request stored (``method = 'backup_code'``, older pending ones cancelled), an
    ``account_recovery_requested`` audit entry written.

    Args:
        db: the session (on the service path under row-level security).
        email: the account's address, as typed.
        code: one of the account's unused backup codes (case, dashes and spaces ignored).
        ip: the client's address (keyed hash; counted towards the per-client limit).
        user_agent: the client's ``User-Agent`` (keyed hash in the audit entry).

    Returns:
        The raw recovery token: pass it to :func:`complete` with the new password.

    Raises:
        InvalidCredentialsError: no live account has this address, or the code is not one of
            its unused codes (the message does not say which).
        TooManyRequestsError: the per-address or per-client limit is reached (its security
            event is committed).
        InvalidInputError: ``email`` is not an address an account can have, ``user_agent`` not
            text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    address = _inputs.email_address(email)
    typed = _inputs.presented(
        code, "recovery code", error=InvalidCredentialsError, max_length=MAX_CODE_LENGTH
    )
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    account = db.execute(_FIND_ACCOUNT, {"email": address}).first()
    user_id = None if account is None else account.id
    _request_limits.admit(db, "account_recovery_code", email=address, ip=ip, user_id=user_id)
    refused = InvalidCredentialsError("the e-mail address or the recovery code is wrong")
    if user_id is None:
        raise refused
    try:
        mfa.use_backup_code(db, user_id, typed)
    except InvalidBackupCodeError:
        raise refused from None
    raw, _ = _issue(db, user_id, "backup_code", ip)
    audit.record(
        db, "account_recovery_requested", user_id=user_id, ip=ip, user_agent=user_agent,
        details={"method": "backup_code"},
    )  # fmt: skip
    return raw


# the rule: a request is completed once, while it is pending and alive, for an account alive
_SPEND = text(
    """
    UPDATE auth.account_recovery AS r SET status = 'completed', completed_at = now()
      FROM auth.users AS u
     WHERE r.token_hash = ANY(:candidates)
       AND r.status = 'pending' AND r.expires_at > now()
       AND u.id = r.user_id AND u.deleted_at IS NULL
    RETURNING r.id, r.user_id, r.method::text AS method, lower(u.email) AS email,
              r.completed_at + :cooling_off AS cooling_off_until
    """
)
_WHY_NOT = text(
    """
    SELECT r.user_id, r.status::text AS status, r.expires_at <= now() AS expired
      FROM auth.account_recovery AS r JOIN auth.users AS u ON u.id = r.user_id
     WHERE r.token_hash = ANY(:candidates) AND u.deleted_at IS NULL
    """
)
_AFTER_RECOVERY = text(
    """
    WITH others AS (
        UPDATE auth.account_recovery SET status = 'cancelled'
         WHERE user_id = :user_id AND status = 'pending'
    ), resets AS (
        DELETE FROM auth.password_reset_tokens WHERE user_id = :user_id AND used_at IS NULL
    ), links AS (
        DELETE FROM auth.magic_link_tokens WHERE user_id = :user_id AND used_at IS NULL
    )
    UPDATE auth.users
       SET email_verified = email_verified OR :by_email,
           email_verified_at = CASE WHEN :by_email THEN coalesce(email_verified_at, now())
                                    ELSE email_verified_at END
     WHERE id = :user_id
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
) -> Recovered:
    """Complete a recovery: the new password, everyone signed out, the cooling-off begins.

    See the module docstring for what is written (in the caller's transaction; nothing is
    committed but the refusal of a used token's security event).

    Args:
        db: the session (on the service path under row-level security).
        token: the raw recovery token (from the link, the text, or :func:`start_with_code`).
        new_password: the new password, as typed.
        ip: the client's address (keyed hash).
        user_agent: the client's ``User-Agent`` (keyed hash).

    Returns:
        The :class:`Recovered`: send its ``notice``.

    Raises:
        WeakPasswordError: the password is shorter than the policy's minimum (checked first).
        InvalidTokenError: no request of a live account has this token.
        TokenAlreadyUsedError: the recovery was completed already, by this or a concurrent
            request (its security event is committed).
        TokenRevokedError: the request was cancelled (by a newer one, or by the owner).
        TokenExpiredError: the request's lifetime ended.
        PasswordReusedError: the password is the current one or a recent one (roll back: the
            token stays usable).
        InvalidInputError: ``new_password`` not text of 1 to 4,096 characters, ``user_agent``
            not text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    password = check_new_password(db, new_password)
    _inputs.presented(token, "recovery token", hint=": start the recovery again")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    candidates = settings.hasher.candidates(token)
    spent = db.execute(
        _SPEND, {"candidates": candidates, "cooling_off": settings.recovery_cooling_off}
    ).first()
    if spent is None:
        why = db.execute(_WHY_NOT, {"candidates": candidates}).first()
        if why is None:
            raise InvalidTokenError("the recovery token is not valid: start the recovery again")
        if why.status == "completed":
            security_events.report(
                db, "recovery.token_reused", SecurityEventSeverity.MEDIUM, user_id=why.user_id,
                ip=ip, user_agent=user_agent,
            )  # fmt: skip
            raise TokenAlreadyUsedError("this recovery was completed already")
        if why.status == "cancelled":
            raise TokenRevokedError(
                "this recovery was cancelled (a newer one was asked for, or the owner cancelled "
                "it): start the recovery again"
            )
        raise TokenExpiredError("the recovery token expired: start the recovery again")

    user_id: uuid.UUID = spent.user_id
    revoked = replace_password(
        db, user_id, password, history=DEFAULT_HISTORY, reason="account_recovery", unlock=True
    )
    db.execute(_AFTER_RECOVERY, {"user_id": user_id, "by_email": spent.method == "email"})
    details = {
        "method": spent.method,
        "sessions_revoked": revoked,
        "cooling_off_until": spent.cooling_off_until.isoformat(),
    }
    audit.record(
        db, "account_recovered", user_id=user_id, ip=ip, user_agent=user_agent, details=details
    )
    security_events.record(
        db, "account.recovered", SecurityEventSeverity.MEDIUM, user_id=user_id, ip=ip,
        user_agent=user_agent, details=details,
    )  # fmt: skip
    notice = delivery.write(
        db, "email", spent.email, template=RECOVERED_NOTICE_TEMPLATE, user_id=user_id
    )
    return Recovered(user_id, spent.method, revoked, spent.cooling_off_until, notice)


_CANCEL = text(
    """
    UPDATE auth.account_recovery SET status = 'cancelled'
     WHERE user_id = :user_id AND status = 'pending'
    RETURNING id
    """
)


@database_errors
def cancel(db: Session, user: User | uuid.UUID) -> int:
    """Cancel the account's pending recovery requests ("this was not me"): their tokens stop
    working.

    Args:
        db: the session (as the signed-in user under row-level security); the change and an
            ``account_recovery_cancelled`` audit entry are written in its transaction.
        user: the account (or its id).

    Returns:
        How many requests were cancelled.

    Raises:
        InvalidInputError: ``user`` is not a user or an id.
    """
    user_id = _inputs.user_id_of(user)
    cancelled = len(db.execute(_CANCEL, {"user_id": user_id}).all())
    if cancelled:
        audit.record(
            db, "account_recovery_cancelled", user_id=user_id, details={"requests": cancelled}
        )
    return cancelled
