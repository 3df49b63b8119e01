"""Passwords: set (with history and session revocation) and authenticate (attempts, lockout).

Decisions:

- **Counter first** (Ory Kratos' order): :func:`authenticate` increments
  ``users.failed_login_attempts`` in its own statement and **commits** it, in a transaction of
  its own (:func:`authmodels.services.durable.durable`), *before* the password is verified. A
  crash, a timeout or a caller rolling back cannot undo a counted attempt, concurrent guesses
  are counted one by one by the row lock of that UPDATE, and the caller's transaction is left
  alone (nothing the caller did before is committed, its service-path role stays in force).
- **Lockout**: the attempt that brings the counter to ``FlowSettings.max_failed_logins`` (5)
  sets ``account_locked_until = now() + lockout_duration`` (15 minutes) in that same statement,
  before its password is checked; a correct password clears it again. So while that attempt's
  hash is being verified, concurrent attempts already find the account locked: at most
  ``max_failed_logins`` passwords are ever verified per lockout period, however many requests
  arrive at once. The counter never exceeds the schema's bound (``ck_users_failed_login_attempts
  _range``, 0 to 10: ``least(..., 10)``, and the setting is checked against it); a lock that has
  ended restarts the count at 1.
- **Every attempt is recorded** in ``login_attempts`` (result, reason; the e-mail typed as a
  keyed digest, the address and user agent as ``PrivacyHasher`` hashes, as the table stores
  them): these rows answer brute-force and credential-stuffing questions. Refusals commit their
  row in their own transaction before raising, with a security event where one happens
  (:mod:`authmodels.services.security_events`: the attempt that locks an account, an attempt on
  a locked or deleted account); a success writes it in the caller's transaction.
- **Constant time** for unknown e-mails and deleted accounts: ``PasswordHasher.verify_dummy``
  spends the time of a real verification. A locked account is refused without any
  verification (its error says so anyway).
- **Rehash** on success when the stored hash was made with other parameters, or is a legacy
  hash brought from another system (bcrypt, Django's or passlib's PBKDF2-SHA256, Django's
  Argon2: :mod:`authmodels.security.passwords`), in the same UPDATE that resets the counter: a
  legacy hash is replaced by Argon2id at its account's first successful login.
  :func:`password_hash_schemes` counts what remains.
- :func:`set_password` refuses the current password and the last ``history`` ones (verified
  with the hasher, whatever their scheme), keeps the replaced hash in ``password_history`` and
  revokes every session (:func:`authmodels.services.sessions.revoke_all_sessions`).
- **The password policy** has one home, :func:`check_new_password`: at least
  ``FlowSettings.password_min_length`` characters (8, NIST SP 800-63B's minimum), at most 4,096;
  no composition rules (800-63B advises against them). Sign-up, password changes, resets and
  recoveries apply it, with the history check.
- **Cooling-off**: while an account cools off after a recovery (:mod:`authmodels.services.
  recovery`), :func:`set_password` refuses (:class:`~authmodels.errors.RecoveryCoolingOffError`);
  a reset by e-mail link still works, so the owner can take back an account someone else
  recovered.

Under row-level security :func:`authenticate` reads ``users`` before the user is known: run it
on the service path (:func:`authmodels.rls.service_role`); its own transactions run as the
caller's runs. :func:`set_password` works on a known user: as that user, or on the service path.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, NoReturn

from sqlalchemy import case, func, literal, or_, select, text
from sqlalchemy.orm import Session

from authmodels.email_identity import MAX_EMAIL_LENGTH, normalize_email
from authmodels.errors import (
    AccountDeletedError,
    AccountLockedError,
    InvalidCredentialsError,
    PasswordReusedError,
    WeakPasswordError,
)
from authmodels.locking import RowNotFoundError
from authmodels.models.enums import LoginAttemptResult, SecurityEventSeverity
from authmodels.models.users import MAX_FAILED_LOGIN_ATTEMPTS, User
from authmodels.security.passwords import SCHEME_PREFIXES, hash_scheme, is_usable
from authmodels.services import _inputs, audit, security_events
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services._off_loop import off_loop
from authmodels.services.durable import durable
from authmodels.services.sessions import revoke_all_sessions
from authmodels.services.settings import settings_for

__all__ = [
    "DEFAULT_HISTORY",
    "authenticate",
    "normalize_email",
    "password_hash_schemes",
    "set_password",
]

#: Former passwords refused by :func:`set_password` (besides the current one).
DEFAULT_HISTORY = 5
#: Most former passwords :func:`set_password` checks (each costs one Argon2 verification; 24 is
#: the largest password history Windows enforces).
MAX_HISTORY = 24
#: Longest password accepted (Argon2 takes any length; this bounds the work one request causes).
MAX_PASSWORD_LENGTH = 4096

# --- set_password --------------------------------------------------------------------------

# FOR NO KEY UPDATE, the lock of the UPDATE that follows (no key column changes): concurrent
# changes still run one after the other, and a foreign key check of another transaction (a
# refusal's security event, committed on its own while this transaction is open) can still
# take its KEY SHARE lock on the account's row instead of waiting for this one to end
_LOCK_USER = text("SELECT password_hash FROM auth.users WHERE id = :id FOR NO KEY UPDATE")
_RECENT_HASHES = text(
    """
    SELECT password_hash FROM auth.password_history
     WHERE user_id = :id ORDER BY created_at DESC LIMIT :n
    """
)
# clock_timestamp(): several changes in one transaction keep their order (now() would tie)
_KEEP_OLD_HASH = text(
    """
    INSERT INTO auth.password_history (user_id, password_hash, created_at)
    VALUES (:id, :h, clock_timestamp())
    """
)
_SET_HASH = text(
    """
    UPDATE auth.users SET password_hash = :h, password_changed_at = now()
     WHERE id = :id
    """
)
_UNLOCK_AND_SET_HASH = text(
    """
    UPDATE auth.users
       SET password_hash = :h, password_changed_at = now(),
           failed_login_attempts = 0, account_locked_until = NULL
     WHERE id = :id
    """
)


def check_new_password(db: Session, value: object, field: str = "new_password") -> str:
    """``value`` if it can be a new password: text of 1 to 4,096 characters PostgreSQL can hold,
    and at least ``FlowSettings.password_min_length`` of them (the one home of the policy:
    sign-up, password changes, resets and recoveries apply it).

    Raises:
        InvalidInputError: not text, empty, over 4,096 characters, a NUL or an unpaired
            surrogate.
        WeakPasswordError: shorter than the policy's minimum.
    """
    password = _inputs.text(value, field, max_length=MAX_PASSWORD_LENGTH)
    minimum = settings_for(db).password_min_length
    if len(password) < minimum:
        raise WeakPasswordError(
            f"a password needs at least {minimum} characters (this one has {len(password)}): "
            "a longer passphrase is both easier to remember and harder to guess",
            min_length=minimum,
        )
    return password


@database_errors
def set_password(
    db: Session,
    user: User | uuid.UUID,
    new_password: str,
    *,
    history: int = DEFAULT_HISTORY,
    except_session: uuid.UUID | None = None,
) -> int:
    """Change a user's password, refusing recent ones, and sign them out everywhere.

    Locks the user's row (concurrent changes run one after the other), then, in the caller's
    transaction (nothing is committed): the old hash goes to ``password_history``, the new one to
    ``users``, every session is revoked (``reason = "password_change"``) and a
    ``password_change`` audit entry is written.

    Args:
        db: the session.
        user: the user (or user id).
        new_password: the new password, as typed.
        history: how many former passwords to refuse besides the current one (0: only the
            current one).
        except_session: a session to keep signed in (the one that changed the password).

    Returns:
        How many sessions were revoked.

    Raises:
        PasswordReusedError: the password is the current one or one of the last ``history``
            (nothing is written).
        WeakPasswordError: the password is shorter than ``FlowSettings.password_min_length``.
        RecoveryCoolingOffError: the account was recovered within
            ``FlowSettings.recovery_cooling_off`` (the refusal's security event is committed).
        RowNotFoundError: no user has this id (or it is not visible to this transaction).
        InvalidInputError: ``new_password`` is not text of 1 to 4,096 characters (NUL and
            unpaired surrogates refused), ``history`` not an integer from 0 to 24, ``user`` not
            a user or an id, ``except_session`` not a UUID.
    """
    new_password = check_new_password(db, new_password)
    _inputs.integer(history, "history", minimum=0, maximum=MAX_HISTORY)
    user_id = _inputs.user_id_of(user)
    _inputs.optional_identifier(except_session, "except_session")
    refuse_during_cooling_off(db, user_id, "the password")
    revoked = replace_password(
        db, user_id, new_password, history=history, except_session=except_session,
        reason="password_change",
    )  # fmt: skip
    if isinstance(user, User) and user in db:
        db.refresh(user)
    return revoked


def replace_password(
    db: Session,
    user_id: uuid.UUID,
    new_password: str,
    *,
    history: int = DEFAULT_HISTORY,
    except_session: uuid.UUID | None = None,
    reason: str,
    audit_event: str = "password_change",
    unlock: bool = False,
) -> int:
    """The change itself, arguments checked (:func:`set_password`, a reset, a recovery).

    ``reason`` goes to the revoked sessions, ``audit_event`` names the audit entry; ``unlock``
    also clears the lockout (a reset or a recovery proved the owner's control of the account).

    Raises:
        PasswordReusedError: the password is the current one or one of the last ``history``.
        RowNotFoundError: no user has this id.
    """
    hasher = settings_for(db).password_hasher
    current = db.execute(_LOCK_USER, {"id": user_id}).scalar_one_or_none()
    if current is None:
        raise RowNotFoundError(f"User {user_id} does not exist: nothing was changed")
    former = list(db.execute(_RECENT_HASHES, {"id": user_id, "n": history}).scalars())
    readable = {"argon2", *hasher.legacy_schemes}

    for stored in [current, *former]:
        if hash_scheme(stored) in readable and off_loop(hasher.verify, stored, new_password):
            raise PasswordReusedError(
                f"this password was used recently (the current one or one of the last {history})"
                ": choose another"
            )

    if is_usable(current):
        db.execute(_KEEP_OLD_HASH, {"id": user_id, "h": current})
    db.execute(
        _UNLOCK_AND_SET_HASH if unlock else _SET_HASH,
        {"id": user_id, "h": off_loop(hasher.hash, new_password)},
    )
    revoked = revoke_all_sessions(db, user_id, reason=reason, except_session=except_session)
    audit.record(db, audit_event, user_id=user_id, details={"sessions_revoked": revoked})
    return revoked


# --- authenticate --------------------------------------------------------------------------


# the e-mail identity: lower(email), unique among live accounts (uq_users_email_identity,
# revision 0023), so at most one live account matches; a deleted one only when no live one does
_FIND_ACCOUNT = text(
    """
    SELECT id, deleted_at IS NOT NULL AS deleted FROM auth.users
     WHERE lower(email) = :email
     ORDER BY deleted_at IS NOT NULL
     LIMIT 1
    """
)
# the counter, in its own statement, before the password is checked; the attempt that reaches
# the limit locks the account right away (a correct password unlocks it again). Every value is
# computed from the row itself (no CTE, no value read earlier): when concurrent attempts queue on
# the row lock, PostgreSQL re-evaluates the SET on the newest row version, so none is lost.
_FAILURES_AFTER = (
    "least(CASE WHEN account_locked_until <= now() THEN 0 ELSE failed_login_attempts END + 1, "
    f"{MAX_FAILED_LOGIN_ATTEMPTS})"
)
_COUNT_ATTEMPT = text(
    f"""
    UPDATE auth.users
       SET failed_login_attempts = {_FAILURES_AFTER},
           account_locked_until = CASE WHEN {_FAILURES_AFTER} >= :max
                                       THEN now() + :lockout END
     WHERE id = :id AND deleted_at IS NULL
       AND (account_locked_until IS NULL OR account_locked_until <= now())
    RETURNING failed_login_attempts AS failures, account_locked_until AS locked_until,
              password_hash
    """  # noqa: S608 (constants, no input)
)
# why the counter was not incremented: a lock still running, or an account that only the
# caller's transaction sees (created in it and not committed yet)
_ACCOUNT_STATE = text(
    """
    SELECT account_locked_until AS locked_until,
           coalesce(account_locked_until > now(), false) AS locked,
           deleted_at IS NOT NULL AS deleted
      FROM auth.users WHERE id = :id
    """
)
_SUCCEEDED = text(
    """
    UPDATE auth.users
       SET failed_login_attempts = 0, account_locked_until = NULL, last_login_at = now(),
           password_hash = coalesce(:new_hash, password_hash)
     WHERE id = :id
    """
)
_RECORD_ATTEMPT = text(
    """
    INSERT INTO auth.login_attempts
           (user_id, identifier_hash, ip_hash, ua_hash, attempt_result, failure_reason)
    VALUES (:user_id, :identifier_hash, :ip_hash, :ua_hash, :result, :reason)
    """
)


@database_errors
def authenticate(
    db: Session,
    email: str,
    password: str,
    *,
    ip: str | IPv4Address | IPv6Address | None,
    user_agent: str | None,
) -> User:
    """Check an e-mail address and password; the account on success.

    See the module docstring for the order of the steps. Whenever a password is checked, the
    counted attempt (and a lock it sets) is **committed first, in a transaction of its own**;
    a refusal likewise commits its ``login_attempts`` row (and its security event) on its own
    before raising. The caller's transaction is never committed: a success resets the counter,
    rehashes when needed, sets ``last_login_at`` and records the attempt in it (a rollback
    leaves the attempt counted). Creating the session is the caller's next step
    (:func:`authmodels.services.sessions.create_session`, which audits the login).

    Args:
        db: the session (on the service path under row-level security).
        email: the e-mail address typed (case and surrounding spaces ignored).
        password: the password typed.
        ip: the client's address (stored only as a keyed hash).
        user_agent: the client's ``User-Agent`` (stored only as a keyed hash).

    Returns:
        The user's row, refreshed.

    Raises:
        InvalidCredentialsError: no account has this address, or the password is wrong (the
            message does not say which).
        AccountLockedError: too many failed logins; ``locked_until`` says until when.
        AccountDeletedError: the account was deleted.

    An ``email`` or ``password`` that no account can have (not text, empty, too long: 320 and
    4,096 characters; a NUL or an unpaired surrogate) is refused with
    :class:`~authmodels.errors.InvalidCredentialsError` before the database is touched: it is
    not counted, and nothing is written. A ``user_agent`` that is not text of at most 8,192
    characters raises :class:`~authmodels.errors.InvalidInputError`, an ``ip`` that is not an
    address :class:`~authmodels.errors.InvalidIPAddressError`, also before the database.
    """
    _inputs.presented(
        email,
        "e-mail address",
        error=InvalidCredentialsError,
        max_length=MAX_EMAIL_LENGTH,
        hint=": check the address",
    )
    _inputs.presented(
        password, "password", error=InvalidCredentialsError, max_length=MAX_PASSWORD_LENGTH
    )
    _inputs.user_agent(user_agent)
    settings = settings_for(db)
    hasher = settings.password_hasher
    identifier = normalize_email(email)
    attempt = _Attempt(
        identifier_hash=settings.hasher.digest(identifier),
        ip_hash=None if ip is None else settings.privacy.ip_hash(ip),  # checks the address
        ua_hash=None if user_agent is None else settings.privacy.ua_hash(user_agent),
        ip=ip,
        user_agent=user_agent,
    )

    account = db.execute(_FIND_ACCOUNT, {"email": identifier}).first()
    if account is None:
        off_loop(hasher.verify_dummy, password)
        with durable(db) as side:
            attempt.record(side, None, LoginAttemptResult.FAILED_UNKNOWN_IDENTIFIER,
                           "unknown identifier")  # fmt: skip
        raise InvalidCredentialsError("the e-mail address or the password is wrong")
    if account.deleted:
        off_loop(hasher.verify_dummy, password)
        _refuse_deleted(db, attempt, account.id)

    # the counter, committed before the password is checked
    count = {"id": account.id, "max": settings.max_failed_logins,
             "lockout": settings.lockout_duration}  # fmt: skip
    own_transaction = True
    with durable(db) as side:
        counted = side.execute(_COUNT_ATTEMPT, count).first()
    if counted is None:
        state = db.execute(_ACCOUNT_STATE, {"id": account.id}).one()
        if state.deleted:  # deleted since it was looked up
            _refuse_deleted(db, attempt, account.id)
        if state.locked:
            with durable(db) as side:
                attempt.record(side, account.id, LoginAttemptResult.FAILED_LOCKED, "locked")
                security_events.record(
                    side,
                    "login.locked_account_attempt",
                    SecurityEventSeverity.MEDIUM,
                    **attempt.event(account.id, locked_until=state.locked_until.isoformat()),
                )
            raise AccountLockedError(
                f"too many failed logins: the account is locked until "
                f"{state.locked_until:%Y-%m-%d %H:%M} UTC; try again later or reset the password",
                locked_until=state.locked_until,
            )
        # Neither locked nor deleted, yet not found by another transaction: the account was
        # created by the caller's transaction, which has not committed. Nothing outside it can
        # hold the count, so the attempt is counted (and refused) there.
        own_transaction = False
        counted = db.execute(_COUNT_ATTEMPT, count).one()

    ok, new_hash = off_loop(hasher.verify_and_update, counted.password_hash, password)
    if not ok:
        with durable(db) if own_transaction else nullcontext(db) as side:
            attempt.record(side, account.id, LoginAttemptResult.FAILED_PASSWORD, "wrong password")
            if counted.locked_until is not None:
                details = {"failed_attempts": counted.failures}
                audit.record(side, "account_locked", user_id=account.id, details=details)
                security_events.record(
                    side,
                    "login.account_locked",
                    SecurityEventSeverity.HIGH,
                    **attempt.event(
                        account.id, locked_until=counted.locked_until.isoformat(), **details
                    ),
                )
        raise InvalidCredentialsError("the e-mail address or the password is wrong")

    db.execute(_SUCCEEDED, {"id": account.id, "new_hash": new_hash})
    attempt.record(db, account.id, LoginAttemptResult.SUCCESS, None)
    user = db.get(User, account.id, populate_existing=True)
    assert user is not None
    return user


@dataclass(frozen=True)
class _Attempt:
    """One login attempt's keyed identifiers, as ``login_attempts`` and events store them."""

    identifier_hash: bytes
    ip_hash: bytes | None
    ua_hash: bytes | None
    ip: str | IPv4Address | IPv6Address | None
    user_agent: str | None

    def record(
        self, db: Session, user_id: uuid.UUID | None, result: LoginAttemptResult, reason: str | None
    ) -> None:
        db.execute(
            _RECORD_ATTEMPT,
            {
                "identifier_hash": self.identifier_hash,
                "ip_hash": self.ip_hash,
                "ua_hash": self.ua_hash,
                "user_id": user_id,
                "result": result.value,
                "reason": reason,
            },
        )

    def event(self, user_id: uuid.UUID, **details: Any) -> dict[str, Any]:
        """The keyword arguments of :func:`security_events.record` for this attempt."""
        return {"user_id": user_id, "ip": self.ip, "user_agent": self.user_agent,
                "details": details}  # fmt: skip


def _refuse_deleted(db: Session, attempt: _Attempt, user_id: uuid.UUID) -> NoReturn:
    with durable(db) as side:
        attempt.record(side, user_id, LoginAttemptResult.BLOCKED, "account deleted")
        security_events.record(
            side, "login.deleted_account_attempt", SecurityEventSeverity.MEDIUM,
            **attempt.event(user_id),
        )  # fmt: skip
    raise AccountDeletedError("this account was deleted: it cannot sign in")


# --- what remains to convert ------------------------------------------------------------------

# the schemes, told by the same prefixes as hash_scheme() in Python
_SCHEME = case(
    *(
        (or_(*(User.password_hash.startswith(p, autoescape=True) for p in prefixes)), scheme)
        for scheme, prefixes in SCHEME_PREFIXES.items()
    ),
    else_=literal("unknown"),
).label("scheme")
_SCHEMES = (
    select(_SCHEME, func.count().label("accounts"))
    .where(User.deleted_at.is_(None))
    .group_by(_SCHEME)
)


@database_errors
def password_hash_schemes(db: Session) -> dict[str, int]:
    """How many live accounts hold a password hash of each scheme.

    The names are those of :func:`authmodels.security.passwords.hash_scheme`: ``argon2``, the
    legacy schemes (``bcrypt``, ``django_pbkdf2_sha256``, ``passlib_pbkdf2_sha256``,
    ``django_argon2``: each is replaced at its account's next successful login), ``unusable``
    (no password) and ``unknown`` (a value no hasher reads: those accounts need a password
    reset). Under row-level security, run it on the service path (every account) or as the owner.
    """
    return {row.scheme: row.accounts for row in db.execute(_SCHEMES)}
