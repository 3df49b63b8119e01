"""TOTP enrolment with an encrypted seed bound to its row, confirmation, verification with replay
refusal (also between two concurrent requests), backup codes spent once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    DecryptionError,
    InvalidBackupCodeError,
    InvalidTotpCodeError,
    MfaAlreadyEnrolledError,
    MfaNotEnrolledError,
)
from authmodels.models import User
from authmodels.security import totp
from authmodels.security.encryption import aad_for
from authmodels.services import FlowSettings, mfa
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

TABLES = ("users", "two_factor_auth", "two_factor_backup_codes", "audit_logs")
NOW = int(time.time())


def enrolled(db: Session, user: User) -> tuple[mfa.TotpEnrollment, list[str]]:
    enrollment = mfa.enroll(db, user, issuer="authmodels")
    codes = mfa.confirm(db, user, totp.code_at(enrollment.secret, NOW - 30), now=NOW)
    return enrollment, codes


def test_enrolment_stores_the_seed_encrypted_and_bound_to_its_row(
    db: Session, user: User, settings: FlowSettings
) -> None:
    enrollment = mfa.enroll(db, user, issuer="authmodels")

    assert enrollment.provisioning_uri.startswith("otpauth://totp/authmodels:")
    row = db.execute(text("SELECT id, secret_encrypted FROM auth.two_factor_auth")).one()
    assert row.id == enrollment.enrollment_id
    assert enrollment.secret not in row.secret_encrypted
    assert (
        settings.cipher.decrypt(
            row.secret_encrypted, aad=aad_for("two_factor_auth", "secret_encrypted", row.id)
        )
        == enrollment.secret
    )
    with pytest.raises(DecryptionError):  # the envelope is worthless on another row
        settings.cipher.decrypt(
            row.secret_encrypted, aad=aad_for("two_factor_auth", "secret_encrypted", user.id)
        )


def test_confirmation_turns_two_factor_on_and_returns_backup_codes_once(
    db: Session, user: User
) -> None:
    _, codes = enrolled(db, user)

    assert len(codes) == mfa.BACKUP_CODE_COUNT == len(set(codes))
    assert count(db, "users", "id = :u AND two_factor_enabled", u=user.id) == 1
    assert count(db, "two_factor_auth", "confirmed_at IS NOT NULL") == 1
    assert count(db, "two_factor_backup_codes", "user_id = :u", u=user.id) == 10
    assert_no_raw_values(db, [*codes, *(totp.normalize_backup_code(c) for c in codes)],
                         ["two_factor_auth", "two_factor_backup_codes"])  # fmt: skip
    assert ("2fa_enabled", "success") in audit_events(db, user.id)


def test_wrong_confirmation_code_writes_nothing(db: Session, user: User) -> None:
    enrollment = mfa.enroll(db, user, issuer="authmodels")
    right = totp.code_at(enrollment.secret, NOW)
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidTotpCodeError):
        mfa.confirm(db, user, str((int(right) + 1) % 10**6).zfill(6), now=NOW)
    assert snapshot(db, *TABLES) == before


def test_a_pending_enrolment_is_replaced_a_confirmed_one_is_not(db: Session, user: User) -> None:
    first = mfa.enroll(db, user, issuer="authmodels")
    second = mfa.enroll(db, user, issuer="authmodels")
    assert count(db, "two_factor_auth") == 1 and first.secret != second.secret
    mfa.confirm(db, user, totp.code_at(second.secret, NOW), now=NOW)
    before = snapshot(db, *TABLES)
    with pytest.raises(MfaAlreadyEnrolledError):
        mfa.enroll(db, user, issuer="authmodels")
    assert snapshot(db, *TABLES) == before


def test_verification_accepts_a_step_once_and_never_an_earlier_one(db: Session, user: User) -> None:
    enrollment, _ = enrolled(db, user)
    code = totp.code_at(enrollment.secret, NOW)

    assert mfa.verify(db, user, code, now=NOW) == totp.time_step(NOW)
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidTotpCodeError, match="already used"):
        mfa.verify(db, user, code, now=NOW)
    with pytest.raises(InvalidTotpCodeError):  # an earlier step, still inside the window
        mfa.verify(db, user, totp.code_at(enrollment.secret, NOW - 30), now=NOW)
    assert snapshot(db, *TABLES) == before
    assert mfa.verify(db, user, totp.code_at(enrollment.secret, NOW + 30), now=NOW + 30)


def test_verification_needs_a_confirmed_enrolment(db: Session, user: User) -> None:
    with pytest.raises(MfaNotEnrolledError):
        mfa.verify(db, user, "123456")
    enrollment = mfa.enroll(db, user, issuer="authmodels")
    before = snapshot(db, *TABLES)
    with pytest.raises(MfaNotEnrolledError):
        mfa.verify(db, user, totp.code_at(enrollment.secret, NOW), now=NOW)
    assert snapshot(db, *TABLES) == before


def test_backup_codes_are_spent_once_and_only_by_their_owner(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    _, codes = enrolled(db, user)
    other = authmodels_user_factory()

    with pytest.raises(InvalidBackupCodeError):
        mfa.use_backup_code(db, other, codes[0])
    assert mfa.use_backup_code(db, user, codes[0].lower().replace("-", " ")) == 9
    before = snapshot(db, *TABLES)
    for wrong in (codes[0], "AAAAA-AAAAA", ""):
        with pytest.raises(InvalidBackupCodeError):
            mfa.use_backup_code(db, user, wrong)
    assert snapshot(db, *TABLES) == before


def test_regenerated_backup_codes_replace_the_old_ones(db: Session, user: User) -> None:
    _, old = enrolled(db, user)
    new = mfa.regenerate_backup_codes(db, user)
    with pytest.raises(InvalidBackupCodeError):
        mfa.use_backup_code(db, user, old[1])
    assert mfa.use_backup_code(db, user, new[1]) == 9


def test_disable_removes_enrolment_and_codes(db: Session, user: User) -> None:
    enrolled(db, user)
    assert mfa.disable(db, user) is True
    assert count(db, "two_factor_auth") == count(db, "two_factor_backup_codes") == 0
    assert count(db, "users", "id = :u AND NOT two_factor_enabled", u=user.id) == 1
    assert mfa.disable(db, user) is False


def _verify_twice_at_once(
    factory: sessionmaker[Session], user: User, code: str, at: int
) -> list[object]:
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def run(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                outcomes[index] = mfa.verify(db, user.id, code, now=at)
                db.commit()
            except InvalidTotpCodeError as exc:
                db.rollback()
                outcomes[index] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers)
    return outcomes


def test_two_concurrent_verifications_of_one_code_exactly_one_passes(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()
    with factory() as db:
        enrollment, _ = enrolled(db, fresh_user)
        db.commit()

    for round_ in range(5):  # several rounds, each with the code of a new step
        at = NOW + 30 * round_
        outcomes = _verify_twice_at_once(
            factory, fresh_user, totp.code_at(enrollment.secret, at), at
        )
        assert outcomes.count(totp.time_step(at)) == 1, outcomes
        assert sum(isinstance(o, InvalidTotpCodeError) for o in outcomes) == 1
    with factory() as db:
        assert db.execute(text("SELECT last_used_step FROM auth.two_factor_auth")).scalar() == (
            totp.time_step(NOW + 120)
        )
