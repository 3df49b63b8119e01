"""Second factor: TOTP enrolment, confirmation and verification, and single-use backup codes.

The TOTP seed is stored only encrypted (``two_factor_auth.secret_encrypted``, a ``FieldCipher``
envelope whose associated data ``aad_for("two_factor_auth", "secret_encrypted", id)`` binds it to
its row: an envelope copied to another user's row does not decrypt). Backup codes are stored only
as keyed digests, one row each.

Decisions:

- **Replay refusal** (RFC 6238 section 5.2): a code is accepted only for a time step later than
  ``last_used_step``, and the acceptance is one conditional ``UPDATE ... SET last_used_step =
  :step WHERE id = :id AND (last_used_step IS NULL OR last_used_step < :step)``. Two concurrent
  verifications of the same code both compute the step; the second UPDATE waits for the first's
  row lock, re-reads the row, no longer matches and is refused.
- **Clock drift**: ``FlowSettings.totp_window`` steps (1) on each side of the current one.
- **Backup codes**: 10 codes of 50 bits (``XXXXX-XXXXX``), returned once; each is spent by
  ``UPDATE ... SET used_at = now() WHERE code_hash = ANY(:candidates) AND user_id = :u AND
  used_at IS NULL``. Generating codes again replaces every previous one.
- A re-enrolment while one is pending (never confirmed) replaces it with a new seed; a confirmed
  enrolment must be disabled first.
- Wrong codes are not counted here: put the verification behind the caller's attempt limit (a
  6-digit code falls to about 330,000 guesses per accepted window on average).

Everything runs in the caller's transaction; nothing is committed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    InvalidBackupCodeError,
    InvalidInputError,
    InvalidTotpCodeError,
    MfaAlreadyEnrolledError,
    MfaNotEnrolledError,
)
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security import totp
from authmodels.security.encryption import aad_for
from authmodels.services import _inputs, audit, security_events
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = [
    "BACKUP_CODE_COUNT",
    "TOTP_DIGITS",
    "TotpEnrollment",
    "confirm",
    "disable",
    "enroll",
    "regenerate_backup_codes",
    "use_backup_code",
    "verify",
]

#: Backup codes generated at confirmation (and by :func:`regenerate_backup_codes`).
BACKUP_CODE_COUNT = 10
#: Digits of a TOTP code (RFC 6238's and every authenticator app's default).
TOTP_DIGITS = 6
#: Longest issuer or account name put in a provisioning URI (and shown by the app).
MAX_LABEL_LENGTH = 255
#: Longest text taken as a typed code (TOTP or backup code, with spaces or dashes).
_TYPED_CODE_LENGTH = 64
#: Latest Unix time :func:`verify` and :func:`confirm` accept as ``now`` (the year 9999).
_LATEST_TIMESTAMP = 253_402_300_799


def _label(value: object, field: str) -> str:
    """An issuer or account name of a provisioning URI: the label is ``issuer:account``."""
    label = _inputs.text(value, field, max_length=MAX_LABEL_LENGTH)
    if ":" in label:
        raise InvalidInputError(
            f"{field} must not contain ':' (authenticator apps split the label there): "
            f"{label[:80]!r}",
            field=field,
        )
    return label


def _typed_totp_code(code: object) -> str:
    """A typed TOTP code, or the refusal of a wrong code, before the enrolment is read."""
    typed = _inputs.presented(
        code, "code", error=InvalidTotpCodeError, max_length=_TYPED_CODE_LENGTH
    )
    digits = "".join(typed.split())
    if not (len(digits) == TOTP_DIGITS and digits.isascii() and digits.isdigit()):
        raise InvalidTotpCodeError(
            f"the code must be the {TOTP_DIGITS} digits the authenticator app shows"
        )
    return typed


def _check_now(now: object) -> None:
    if now is None or isinstance(now, datetime):
        _inputs.optional_moment(now, "now")
    else:
        _inputs.integer(now, "now", minimum=0, maximum=_LATEST_TIMESTAMP)


@dataclass(frozen=True)
class TotpEnrollment:
    """A new, unconfirmed TOTP enrolment: show the URI as a QR code, once.

    Attributes:
        enrollment_id: the ``two_factor_auth`` row.
        secret: the raw seed (for the authenticator app only; stored encrypted).
        provisioning_uri: the ``otpauth://`` URI carrying the seed.
    """

    enrollment_id: uuid.UUID
    secret: bytes
    provisioning_uri: str

    def __repr__(self) -> str:
        return f"TotpEnrollment(enrollment_id={self.enrollment_id}, secret=<hidden>)"


def _aad(enrollment_id: uuid.UUID) -> bytes:
    return aad_for("two_factor_auth", "secret_encrypted", enrollment_id)


_DROP_PENDING = text(
    "DELETE FROM auth.two_factor_auth WHERE user_id = :user_id AND confirmed_at IS NULL"
)
_INSERT_ENROLLMENT = text(
    """
    INSERT INTO auth.two_factor_auth (id, user_id, secret_encrypted)
    VALUES (:id, :user_id, :secret_encrypted)
    ON CONFLICT (user_id) DO NOTHING
    RETURNING id
    """
)


@database_errors
def enroll(
    db: Session, user: User | uuid.UUID, *, issuer: str, account_name: str | None = None
) -> TotpEnrollment:
    """Start a TOTP enrolment (a pending one of the user is replaced).

    Args:
        db: the session.
        user: the user (or id).
        issuer: the service name shown by authenticator apps.
        account_name: the account shown by the app; the user's e-mail when None (needs a
            :class:`User`).

    Returns:
        The raw seed and its provisioning URI (never stored in clear).

    Raises:
        MfaAlreadyEnrolledError: the user has a confirmed enrolment (nothing is written).
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
        MissingKeyError: no encryption key is configured.
        InvalidInputError: ``issuer`` or ``account_name`` is not text of 1 to 255 characters
            without ``':'``, ``account_name`` is missing while ``user`` is an id, or ``user`` is
            neither a user nor an id.
    """
    user_id = _inputs.user_id_of(user)
    _label(issuer, "issuer")
    if account_name is None:
        if not isinstance(user, User):
            raise InvalidInputError(
                "account_name is needed when user is an id (pass the User, or the name to show)",
                field="account_name",
            )
        account_name = user.email
    _label(account_name, "account_name")
    refuse_during_cooling_off(db, user_id, "the second factor")
    settings = settings_for(db)
    secret = totp.new_secret()
    uri = totp.provisioning_uri(
        secret, account_name=account_name, issuer=issuer, digits=TOTP_DIGITS
    )
    enrollment_id = uuid.uuid4()
    envelope = settings.cipher.encrypt(secret, aad=_aad(enrollment_id))

    db.execute(_DROP_PENDING, {"user_id": user_id})
    inserted = db.execute(
        _INSERT_ENROLLMENT,
        {"id": enrollment_id, "user_id": user_id, "secret_encrypted": envelope},
    ).scalar_one_or_none()
    if inserted is None:
        raise MfaAlreadyEnrolledError(
            "this account already has a confirmed authenticator: disable it before enrolling again"
        )
    return TotpEnrollment(enrollment_id, secret, uri)


_ENROLLMENT = text(
    """
    SELECT id, secret_encrypted, confirmed_at IS NOT NULL AS confirmed, last_used_step
      FROM auth.two_factor_auth WHERE user_id = :user_id
    """
)
# the rule: a time step is accepted once, and only after the last accepted one
_ACCEPT_STEP = text(
    """
    UPDATE auth.two_factor_auth
       SET last_used_step = :step, last_used_at = now(),
           confirmed_at = coalesce(confirmed_at, now())
     WHERE id = :id AND (last_used_step IS NULL OR last_used_step < :step)
    RETURNING id
    """
)


def _check_code(
    db: Session, user_id: uuid.UUID, code: str, now: int | datetime | None, *, confirmed: bool
) -> tuple[uuid.UUID, int]:
    """Find the enrolment, check the code and accept its step; (enrolment id, step)."""
    _typed_totp_code(code)
    _check_now(now)
    settings = settings_for(db)
    row = db.execute(_ENROLLMENT, {"user_id": user_id}).first()
    if row is None or row.confirmed != confirmed:
        if confirmed:
            raise MfaNotEnrolledError("this account has no confirmed authenticator: enrol first")
        if row is None:
            raise MfaNotEnrolledError("this account has no pending enrolment: enrol first")
        raise MfaAlreadyEnrolledError("this authenticator is already confirmed")
    secret = settings.cipher.decrypt(row.secret_encrypted, aad=_aad(row.id))
    at = int(time.time()) if now is None else now
    step = totp.verify(
        secret,
        code,
        now=at,
        window=settings.totp_window,
        last_used_step=row.last_used_step,
        digits=TOTP_DIGITS,
    )
    accepted = step is not None and db.execute(_ACCEPT_STEP, {"id": row.id, "step": step}).first()
    if step is None or not accepted:
        replayed = step is not None or (
            row.last_used_step is not None
            and (matched := totp.verify(secret, code, now=at, window=settings.totp_window))
            is not None
            and matched <= row.last_used_step
        )
        if replayed:  # a code already accepted once: someone else saw it (or a double submit)
            security_events.report(
                db, "mfa.totp_replayed", SecurityEventSeverity.HIGH, user_id=user_id,
                details={"enrollment_id": str(row.id)},
            )  # fmt: skip
        raise InvalidTotpCodeError(
            "the code is wrong, expired or was already used: wait for the next code and retry"
        )
    return row.id, step


@database_errors
def confirm(
    db: Session, user: User | uuid.UUID, code: str, *, now: int | datetime | None = None
) -> list[str]:
    """Confirm a pending enrolment with a first code; turn two-factor on; make backup codes.

    Args:
        db: the session.
        user: the user (or id).
        code: the code the app shows.
        now: the time to check the code at (tests); the clock when None.

    Returns:
        The raw backup codes: show them once, only their digests are stored.

    Raises:
        MfaNotEnrolledError: there is no pending enrolment.
        MfaAlreadyEnrolledError: the enrolment is already confirmed.
        InvalidTotpCodeError: the code is wrong (nothing is written).
    """
    user_id = _inputs.user_id_of(user)
    enrollment_id, _ = _check_code(db, user_id, code, now, confirmed=False)
    db.execute(
        text("UPDATE auth.users SET two_factor_enabled = true WHERE id = :id"), {"id": user_id}
    )
    codes = _replace_backup_codes(db, user_id)
    audit.record(db, "2fa_enabled", user_id=user_id, details={"enrollment_id": str(enrollment_id)})
    return codes


@database_errors
def verify(
    db: Session, user: User | uuid.UUID, code: str, *, now: int | datetime | None = None
) -> int:
    """Check a TOTP code of a confirmed enrolment; each time step is accepted once.

    Args:
        db: the session.
        user: the user (or id).
        code: the code typed.
        now: the time to check the code at (tests); the clock when None.

    Returns:
        The accepted time step.

    Raises:
        MfaNotEnrolledError: no confirmed enrolment.
        InvalidTotpCodeError: wrong code, outside the window, or its step (or a later one) was
            already used, also by a concurrent request (nothing is written).
    """
    return _check_code(db, _inputs.user_id_of(user), code, now, confirmed=True)[1]


_DELETE_BACKUP_CODES = text("DELETE FROM auth.two_factor_backup_codes WHERE user_id = :user_id")
_INSERT_BACKUP_CODES = text(
    """
    INSERT INTO auth.two_factor_backup_codes (user_id, code_hash)
    SELECT :user_id, unnest(CAST(:hashes AS bytea[]))
    """
)


def _replace_backup_codes(db: Session, user_id: uuid.UUID) -> list[str]:
    hasher = settings_for(db).hasher
    codes = totp.new_backup_codes(BACKUP_CODE_COUNT)
    db.execute(_DELETE_BACKUP_CODES, {"user_id": user_id})
    db.execute(
        _INSERT_BACKUP_CODES,
        {
            "user_id": user_id,
            "hashes": [hasher.digest(totp.normalize_backup_code(c)) for c in codes],
        },
    )
    return codes


@database_errors
def regenerate_backup_codes(db: Session, user: User | uuid.UUID) -> list[str]:
    """Replace every backup code of a confirmed enrolment with new ones (returned raw, once).

    Raises:
        MfaNotEnrolledError: no confirmed enrolment.
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
    """
    user_id = _inputs.user_id_of(user)
    row = db.execute(_ENROLLMENT, {"user_id": user_id}).first()
    if row is None or not row.confirmed:
        raise MfaNotEnrolledError("this account has no confirmed authenticator: enrol first")
    refuse_during_cooling_off(db, user_id, "the backup codes")
    return _replace_backup_codes(db, user_id)


# the rule: a code is spent once, by its owner
_SPEND_BACKUP_CODE = text(
    """
    UPDATE auth.two_factor_backup_codes SET used_at = now()
     WHERE code_hash = ANY(:candidates) AND user_id = :user_id AND used_at IS NULL
    RETURNING id
    """
)


_SPENT_BACKUP_CODE = text(
    """
    SELECT EXISTS (SELECT 1 FROM auth.two_factor_backup_codes
                    WHERE code_hash = ANY(:candidates) AND user_id = :user_id
                      AND used_at IS NOT NULL)
    """
)


@database_errors
def use_backup_code(db: Session, user: User | uuid.UUID, code: str) -> int:
    """Spend a backup code instead of a TOTP code.

    Args:
        db: the session.
        user: the user (or id).
        code: the code typed (case, dashes and spaces ignored).

    Returns:
        How many unused backup codes remain.

    Raises:
        InvalidBackupCodeError: unknown, another user's, or already spent (nothing is written).
        InvalidInputError: ``user`` is neither a user nor an id.
    """
    user_id = _inputs.user_id_of(user)
    typed = _inputs.presented(
        code, "backup code", error=InvalidBackupCodeError, max_length=_TYPED_CODE_LENGTH
    )
    normal = totp.normalize_backup_code(typed)
    settings = settings_for(db)
    spent = None
    if 0 < len(normal) <= 64:
        spent = db.execute(
            _SPEND_BACKUP_CODE,
            {"candidates": settings.hasher.candidates(normal), "user_id": user_id},
        ).first()
    if spent is None:
        if (
            normal
            and db.execute(
                _SPENT_BACKUP_CODE,
                {"candidates": settings.hasher.candidates(normal), "user_id": user_id},
            ).scalar()
        ):
            security_events.report(
                db, "mfa.backup_code_replayed", SecurityEventSeverity.HIGH, user_id=user_id
            )
        raise InvalidBackupCodeError("the backup code is wrong or was already used")
    remaining: int = db.execute(
        text(
            "SELECT count(*) FROM auth.two_factor_backup_codes "
            "WHERE user_id = :user_id AND used_at IS NULL"
        ),
        {"user_id": user_id},
    ).scalar_one()
    audit.record(
        db,
        "sensitive_action",
        user_id=user_id,
        action="mfa.backup_code_used",
        details={"remaining": remaining},
    )
    return remaining


@database_errors
def disable(db: Session, user: User | uuid.UUID) -> bool:
    """Remove the user's enrolment and backup codes and turn two-factor off.

    Returns:
        True if an enrolment existed.

    Raises:
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
    """
    user_id = _inputs.user_id_of(user)
    refuse_during_cooling_off(db, user_id, "the second factor")
    removed = db.execute(
        text("DELETE FROM auth.two_factor_auth WHERE user_id = :user_id RETURNING id"),
        {"user_id": user_id},
    ).first()
    db.execute(
        text(
            "UPDATE auth.users SET two_factor_enabled = false WHERE id = :id AND two_factor_enabled"
        ),
        {"id": user_id},
    )
    if removed is not None:
        audit.record(db, "2fa_disabled", user_id=user_id)
    return removed is not None
