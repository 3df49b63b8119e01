"""Passwords: login attempts recorded, the counter counted before the check and kept through a
rollback, lockout within the schema's bound, constant time for unknown e-mails, rehash on
parameter change; password changes refuse recent passwords and revoke sessions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import bcrypt
import pytest
from passlib.hash import django_pbkdf2_sha256, pbkdf2_sha256
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    AccountDeletedError,
    AccountLockedError,
    ConfigurationError,
    InvalidCredentialsError,
    PasswordReusedError,
)
from authmodels.models import User
from authmodels.security.passwords import PasswordHasher
from authmodels.services import FlowSettings, passwords, sessions, use_settings
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER
from tests.services.helpers import audit_events, count, snapshot

IP, UA = "203.0.113.7", "Mozilla/5.0 (test)"
WRONG = "not the password"


@pytest.fixture
def cheap(db: Session, settings: FlowSettings) -> Session:
    """The session with the test hasher (no rehash on login, fast)."""
    return use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))


def attempts(db: Session) -> list[tuple[str, str | None]]:
    return [
        (r.attempt_result, r.failure_reason)
        for r in db.execute(
            text(
                "SELECT attempt_result::text, failure_reason FROM auth.login_attempts "
                "ORDER BY created_at, ctid"
            )
        )
    ]


def state(db: Session, user: User) -> tuple[int, bool]:
    row = db.execute(
        text(
            "SELECT failed_login_attempts, account_locked_until > now() AS locked "
            "FROM auth.users WHERE id = :id"
        ),
        {"id": user.id},
    ).one()
    return row.failed_login_attempts, bool(row.locked)


# --- authenticate ----------------------------------------------------------------------------


def test_successful_login_records_the_attempt_with_hashed_ip_and_rehashes(
    db: Session, user: User, settings: FlowSettings
) -> None:
    old_hash = user.password_hash  # made with the cheap test parameters

    found = passwords.authenticate(
        db, f"  {user.email.upper()} ", DEFAULT_PASSWORD, ip=IP, user_agent=UA
    )

    assert found.id == user.id and found.last_login_at is not None
    assert found.password_hash != old_hash and "m=19456,t=2" in found.password_hash
    row = db.execute(text("SELECT * FROM auth.login_attempts")).one()
    assert row.user_id == user.id and row.attempt_result == "success"
    assert row.ip_hash == settings.privacy.ip_hash(IP) and row.ua_hash == settings.privacy.ua_hash(
        UA
    )
    assert row.identifier_hash == settings.hasher.digest(user.email.lower())
    assert passwords.authenticate(db, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA)


def test_no_rehash_when_parameters_are_unchanged(cheap: Session, user: User) -> None:
    old_hash = user.password_hash
    assert (
        passwords.authenticate(
            cheap, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA
        ).password_hash
        == old_hash
    )


def test_wrong_password_is_counted_and_recorded(cheap: Session, user: User) -> None:
    old_hash = user.password_hash
    with pytest.raises(InvalidCredentialsError, match="e-mail address or the password"):
        passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    assert state(cheap, user) == (1, False)
    assert attempts(cheap) == [("failed_password", "wrong password")]
    assert (
        cheap.execute(
            text("SELECT password_hash FROM auth.users WHERE id = :id"), {"id": user.id}
        ).scalar()
        == old_hash
    )

    passwords.authenticate(cheap, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA)
    assert state(cheap, user) == (0, False)


def test_unknown_email_costs_a_verification_and_is_recorded_without_a_user(
    cheap: Session, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = PasswordHasher.verify_dummy
    monkeypatch.setattr(
        PasswordHasher, "verify_dummy", lambda self, pw: calls.append(pw) or original(self, pw)
    )
    before = snapshot(cheap, "users")

    with pytest.raises(InvalidCredentialsError):
        passwords.authenticate(cheap, "nobody@example.test", WRONG, ip=IP, user_agent=UA)

    assert calls == [WRONG]
    assert attempts(cheap) == [("failed_unknown_identifier", "unknown identifier")]
    assert count(cheap, "login_attempts", "user_id IS NULL") == 1
    assert snapshot(cheap, "users") == before


def test_deleted_account_is_refused_with_its_own_error(cheap: Session, user: User) -> None:
    cheap.execute(text("UPDATE auth.users SET deleted_at = now() WHERE id = :id"), {"id": user.id})
    with pytest.raises(AccountDeletedError):
        passwords.authenticate(cheap, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA)
    assert state(cheap, user) == (0, False)
    assert attempts(cheap) == [("blocked", "account deleted")]


def test_account_locks_after_the_configured_failures(cheap: Session, user: User) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    assert state(cheap, user) == (5, True)
    assert ("account_locked", "success") in audit_events(cheap, user.id)

    with pytest.raises(AccountLockedError, match="locked until") as refused:
        passwords.authenticate(cheap, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA)
    assert refused.value.locked_until is not None
    assert state(cheap, user) == (5, True)  # a refused attempt is not counted again
    assert attempts(cheap)[-1] == ("failed_locked", "locked")


def test_a_correct_password_on_the_last_allowed_attempt_unlocks(cheap: Session, user: User) -> None:
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    passwords.authenticate(cheap, user.email, DEFAULT_PASSWORD, ip=IP, user_agent=UA)
    assert state(cheap, user) == (0, False)


def test_counter_never_exceeds_the_schema_bound_and_restarts_after_the_lock(
    cheap: Session, user: User, settings: FlowSettings
) -> None:
    use_settings(
        cheap, settings.replace(password_hasher=TEST_PASSWORD_HASHER, max_failed_logins=10)
    )
    for _ in range(10):
        with pytest.raises(InvalidCredentialsError):
            passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    for _ in range(2):
        with pytest.raises(AccountLockedError):
            passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    assert state(cheap, user) == (10, True)

    cheap.execute(
        text(
            "UPDATE auth.users SET account_locked_until = now() - interval '1 second' "
            "WHERE id = :id"
        ),
        {"id": user.id},
    )
    with pytest.raises(InvalidCredentialsError):
        passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    assert state(cheap, user) == (1, False)


def test_max_failed_logins_beyond_the_schema_bound_is_refused(settings: FlowSettings) -> None:
    with pytest.raises(ConfigurationError, match="between 1 and 10"):
        settings.replace(max_failed_logins=11)


def test_counted_failure_survives_the_callers_rollback(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER)
    with factory() as db:
        with pytest.raises(InvalidCredentialsError):
            passwords.authenticate(db, fresh_user.email, WRONG, ip=IP, user_agent=UA)
        db.rollback()
    with factory() as db:
        assert state(db, fresh_user) == (1, False)
        assert attempts(db) == [("failed_password", "wrong password")]


# --- set_password ----------------------------------------------------------------------------


def test_set_password_keeps_history_and_revokes_every_session(cheap: Session, user: User) -> None:
    first = sessions.create_session(cheap, user, ttl=timedelta(hours=1))
    second = sessions.create_session(cheap, user, ttl=timedelta(hours=1))
    old_hash = user.password_hash

    revoked = passwords.set_password(
        cheap, user, "a new long passphrase", except_session=second.session.id
    )

    assert revoked == 1
    assert (
        count(
            cheap, "sessions", "id = :s AND revoked_reason = 'password_change'", s=first.session.id
        )
        == 1
    )
    assert count(cheap, "sessions", "id = :s AND revoked_at IS NULL", s=second.session.id) == 1
    assert (
        cheap.execute(text("SELECT password_hash FROM auth.password_history")).scalar_one()
        == old_hash
    )
    assert user.password_changed_at is not None
    assert ("password_change", "success") in audit_events(cheap, user.id)
    assert passwords.authenticate(cheap, user.email, "a new long passphrase", ip=IP, user_agent=UA)


def test_set_password_refuses_the_current_and_the_last_five(cheap: Session, user: User) -> None:
    used = [DEFAULT_PASSWORD, *(f"passphrase number {i}" for i in range(1, 7))]
    for new in used[1:]:
        passwords.set_password(cheap, user, new)
    # current: number 6; history, newest first: 5, 4, 3, 2, 1, DEFAULT
    before = snapshot(cheap, "users", "password_history", "sessions", "audit_logs")
    for reused in used[1:]:
        with pytest.raises(PasswordReusedError, match="choose another"):
            passwords.set_password(cheap, user, reused)
    assert snapshot(cheap, "users", "password_history", "sessions", "audit_logs") == before

    passwords.set_password(cheap, user, used[0])  # six passwords ago: allowed again
    # current: DEFAULT; history: 6, 5, 4, ...
    with pytest.raises(PasswordReusedError):
        passwords.set_password(cheap, user, used[5], history=2)
    passwords.set_password(cheap, user, used[4], history=2)


def test_concurrent_wrong_passwords_are_all_counted_and_only_the_allowed_ones_verified(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER, max_failed_logins=3)
    threads = 8
    barrier = threading.Barrier(threads)
    outcomes: list[object] = [None] * threads

    def guess(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                passwords.authenticate(db, fresh_user.email, WRONG, ip=IP, user_agent=UA)
            except (InvalidCredentialsError, AccountLockedError) as exc:
                outcomes[index] = exc

    workers = [threading.Thread(target=guess, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)

    # three passwords were checked (the limit), the other five found the account locked
    assert sum(type(o) is InvalidCredentialsError for o in outcomes) == 3, outcomes
    assert sum(type(o) is AccountLockedError for o in outcomes) == threads - 3
    with factory() as db:
        assert state(db, fresh_user) == (3, True)
        assert count(db, "login_attempts") == threads


# --- legacy hashes brought from another system -----------------------------------------------

BCRYPT_12 = bcrypt.hashpw(b"seed 004 password", bcrypt.gensalt(12)).decode()  # seed 004: 12+


def _legacy_user(db: Session, stored: str) -> User:
    """An account moved from another system, with the hash it had there."""
    user = User(email=f"moved-{uuid.uuid4().hex[:12]}@example.com", password_hash=stored)
    db.add(user)
    db.flush()
    return user


def test_a_bcrypt_account_signs_in_and_its_hash_becomes_argon2id_in_that_transaction(
    cheap: Session,
) -> None:
    user = _legacy_user(cheap, BCRYPT_12)
    before = passwords.password_hash_schemes(cheap)

    signed_in = passwords.authenticate(cheap, user.email, "seed 004 password", ip=IP,
                                       user_agent=UA)  # fmt: skip

    stored = cheap.execute(
        text("SELECT password_hash FROM auth.users WHERE id = :u"), {"u": user.id}
    ).scalar_one()
    assert signed_in.id == user.id and stored.startswith("$argon2id$")
    assert TEST_PASSWORD_HASHER.verify(stored, "seed 004 password")
    after = passwords.password_hash_schemes(cheap)
    assert (after.get("bcrypt", 0), after["argon2"]) == (
        before["bcrypt"] - 1,
        before.get("argon2", 0) + 1,
    )


def test_a_wrong_password_leaves_a_legacy_hash_as_it_is(cheap: Session) -> None:
    stored = django_pbkdf2_sha256.using(rounds=1000).hash("django password")
    user = _legacy_user(cheap, stored)
    with pytest.raises(InvalidCredentialsError):
        passwords.authenticate(cheap, user.email, WRONG, ip=IP, user_agent=UA)
    assert passwords.authenticate(cheap, user.email, "django password", ip=IP, user_agent=UA)
    assert cheap.execute(
        text("SELECT password_hash LIKE '$argon2id$%' FROM auth.users WHERE id = :u"),
        {"u": user.id},
    ).scalar_one()


def test_password_hash_schemes_counts_each_scheme_of_live_accounts(cheap: Session) -> None:
    before = passwords.password_hash_schemes(cheap)
    made = [
        BCRYPT_12,
        "pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=",
        pbkdf2_sha256.using(rounds=1000).hash("x"),
        "argon2" + TEST_PASSWORD_HASHER.hash("x"),
        "md5$1$abc",
        "!unusable",
    ]
    for stored in made:
        _legacy_user(cheap, stored)
    deleted = _legacy_user(cheap, BCRYPT_12)
    cheap.execute(text("UPDATE auth.users SET deleted_at = now() WHERE id = :u"), {"u": deleted.id})

    after = passwords.password_hash_schemes(cheap)
    grown = {scheme: after[scheme] - before.get(scheme, 0) for scheme in after}
    assert {scheme: n for scheme, n in grown.items() if n} == {
        "bcrypt": 1,
        "django_pbkdf2_sha256": 1,
        "passlib_pbkdf2_sha256": 1,
        "django_argon2": 1,
        "unknown": 1,
        "unusable": 1,
    }


def test_a_password_change_keeps_a_legacy_hash_in_the_history_and_refuses_it(
    cheap: Session,
) -> None:
    stored = pbkdf2_sha256.using(rounds=1000).hash("old pbkdf2 password")
    user = _legacy_user(cheap, stored)
    passwords.set_password(cheap, user, "a brand new password")
    assert cheap.execute(
        text("SELECT password_hash FROM auth.password_history WHERE user_id = :u"), {"u": user.id}
    ).scalars().all() == [stored]
    with pytest.raises(PasswordReusedError):
        passwords.set_password(cheap, user, "old pbkdf2 password")
