"""Account recovery: through a verified channel or a recovery code, completed once, then a
cooling-off during which the account's credentials cannot change (a reset still works), and a
pending request its owner can cancel."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    InvalidCredentialsError,
    InvalidInputError,
    InvalidTokenError,
    RecoveryCoolingOffError,
    StepUpTokenInvalid,
    TokenAlreadyUsedError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models import User
from authmodels.security import totp
from authmodels.services import (
    FlowSettings,
    api_keys,
    devices,
    email_verification,
    mfa,
    password_reset,
    passwords,
    recovery,
    sessions,
    step_up,
    use_settings,
)
from authmodels.testing.factories import TEST_PASSWORD_HASHER, UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

NEW = "a recovered passphrase"
IP = "198.51.100.90"
TABLES = ("account_recovery", "users", "sessions", "email_delivery_logs", "audit_logs")


@pytest.fixture
def cheap(db: Session, settings: FlowSettings) -> Session:
    return use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))


@pytest.fixture
def verified(authmodels_user_factory: UserFactory) -> User:
    return authmodels_user_factory(email_verified=True)


def _started(db: Session, user: User) -> str:
    token = recovery.start(db, user.email, ip=IP).token
    assert token is not None
    return token


def _codes(db: Session, user: User) -> list[str]:
    now = int(time.time())
    secret = mfa.enroll(db, user, issuer="Shop").secret
    return mfa.confirm(db, user, totp.code_at(secret, now - 30), now=now)


def test_only_a_verified_address_is_a_channel_and_unknowns_get_the_same_answer(
    cheap: Session, user: User, verified: User
) -> None:
    assert recovery.start(cheap, user.email).token is None  # unverified: it proves nothing
    assert recovery.start(cheap, "nobody@example.com").token is None
    started = recovery.start(cheap, verified.email, ip=IP)
    assert started.token is not None and started.message is not None
    assert (started.message.to, started.message.template) == (verified.email, "account_recovery")
    assert count(cheap, "account_recovery") == 1
    assert [s for _, s in audit_events(cheap) if _ == "account_recovery_requested"] == [
        "failure", "failure", "success",
    ]  # fmt: skip
    assert_no_raw_values(cheap, [started.token, IP], ["account_recovery"])


def test_completing_sets_the_password_signs_everyone_out_and_starts_the_cooling_off(
    cheap: Session, verified: User
) -> None:
    sessions.create_session(cheap, verified, ttl=timedelta(hours=1))
    token = _started(cheap, verified)

    done = recovery.complete(cheap, token, NEW, ip=IP)

    assert (done.user_id, done.method, done.sessions_revoked) == (verified.id, "email", 1)
    assert (done.notice.to, done.notice.template) == (verified.email, "account_recovered_notice")
    assert done.cooling_off_until > cheap.execute(text("SELECT now()")).scalar_one()
    assert passwords.authenticate(cheap, verified.email, NEW, ip=None, user_agent=None)
    assert ("account_recovered", "success") in audit_events(cheap, verified.id)
    with pytest.raises(TokenAlreadyUsedError):
        recovery.complete(cheap, token, "another passphrase here")


def test_during_the_cooling_off_credentials_cannot_change_but_a_reset_works(
    cheap: Session, verified: User
) -> None:
    codes_before = _codes(cheap, verified)  # a second factor, enrolled before
    device = devices.record_login(cheap, verified, "laptop").device
    recovery.complete(cheap, _started(cheap, verified), NEW)
    trust_token = step_up.issue(cheap, verified, ttl=timedelta(minutes=5), purpose="device.trust")
    before = snapshot(cheap, *TABLES, "two_factor_auth", "user_devices", "api_keys")
    changes: list[Callable[[], object]] = [
        lambda: passwords.set_password(cheap, verified, "a passphrase of the thief"),
        lambda: email_verification.request_email_change(cheap, verified, "thief@example.com"),
        lambda: mfa.disable(cheap, verified),
        lambda: mfa.regenerate_backup_codes(cheap, verified),
        lambda: devices.trust(cheap, verified, device, step_up_token=trust_token),
        lambda: api_keys.create(cheap, verified, name="persistence"),
    ]
    for change in changes:
        with pytest.raises(RecoveryCoolingOffError) as refused:
            change()
        assert "reset the password" in str(refused.value)
    # nothing changed but the security events of the refusals
    assert snapshot(cheap, *TABLES, "two_factor_auth", "user_devices", "api_keys") == before
    assert count(cheap, "security_events", "event_type = 'recovery.cooling_off_refused'") == 6
    assert mfa.use_backup_code(cheap, verified, codes_before[0]) == 9  # signing in still works

    reset = password_reset.request(cheap, verified.email).token  # the owner takes it back
    assert reset is not None
    password_reset.complete(cheap, reset, "the owner's passphrase")

    cheap.execute(  # the cooling-off ends
        text("UPDATE auth.account_recovery SET created_at = created_at - interval '2 days', "
             "expires_at = expires_at - interval '2 days', "
             "completed_at = completed_at - interval '2 days'"),
    )  # fmt: skip
    passwords.set_password(cheap, verified, "a changed passphrase")


def test_a_recovery_code_proves_the_account_and_is_spent(cheap: Session, user: User) -> None:
    codes = _codes(cheap, user)

    token = recovery.start_with_code(cheap, user.email, codes[0].lower(), ip=IP)

    assert count(cheap, "two_factor_backup_codes", "used_at IS NOT NULL") == 1
    done = recovery.complete(cheap, token, NEW)
    assert (done.method, done.user_id) == ("backup_code", user.id)
    cheap.refresh(user)
    assert not user.email_verified  # a code proves the account, not the address
    for email, code in [(user.email, codes[0]), (user.email, "WRONG-CODES"),
                        ("nobody@example.com", codes[1])]:  # fmt: skip
        with pytest.raises(InvalidCredentialsError, match="recovery code is wrong"):
            recovery.start_with_code(cheap, email, code)


def test_a_newer_request_or_the_owner_cancels_a_pending_one(cheap: Session, verified: User) -> None:
    older = _started(cheap, verified)
    newer = _started(cheap, verified)
    with pytest.raises(TokenRevokedError, match="cancelled"):
        recovery.complete(cheap, older, NEW)
    assert recovery.cancel(cheap, verified) == 1
    assert recovery.cancel(cheap, verified) == 0
    with pytest.raises(TokenRevokedError):
        recovery.complete(cheap, newer, NEW)
    assert ("account_recovery_cancelled", "success") in audit_events(cheap, verified.id)


def test_an_expired_or_unknown_token_is_refused_and_nothing_is_written(
    cheap: Session, verified: User
) -> None:
    token = _started(cheap, verified)
    cheap.execute(
        text("UPDATE auth.account_recovery SET created_at = now() - interval '3 hours', "
             "expires_at = now() - interval '2 hours'"),
    )  # fmt: skip
    before = snapshot(cheap, *TABLES)
    with pytest.raises(TokenExpiredError):
        recovery.complete(cheap, token, NEW)
    with pytest.raises(InvalidTokenError):
        recovery.complete(cheap, "y" * 43, NEW)
    assert snapshot(cheap, *TABLES) == before


def test_a_text_goes_to_the_verified_number_the_service_gives(
    cheap: Session, verified: User
) -> None:
    started = recovery.start(cheap, verified.email, channel="sms", phone="+44 20 7183 8750")
    assert started.message is not None
    assert (started.message.channel, started.message.to) == ("sms", "+442071838750")
    assert (
        cheap.execute(text("SELECT recipient_masked FROM auth.sms_delivery_logs")).scalar_one()
        == "+44********50"
    )
    with pytest.raises(InvalidInputError, match="phone"):
        recovery.start(cheap, verified.email, channel="sms")
    with pytest.raises(InvalidInputError, match="phone"):
        recovery.start(cheap, verified.email, phone="+442071838750")


def test_a_refusal_during_the_cooling_off_is_kept_when_the_caller_rolls_back(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER)
    with factory() as db:
        user = UserFactory(db)(email_verified=True)
        token = recovery.start(db, user.email).token
        assert token is not None
        recovery.complete(db, token, NEW)
        db.commit()
    with factory() as db, pytest.raises(RecoveryCoolingOffError), db.begin():
        step = step_up.issue(db, user, ttl=timedelta(minutes=5))
        passwords.set_password(db, user, "a passphrase of the thief")
    with factory() as db:
        assert count(db, "security_events", "event_type = 'recovery.cooling_off_refused'") == 1
        with pytest.raises(StepUpTokenInvalid):  # the caller's own writes were rolled back
            step_up.consume(db, user, step)
