"""Password reset: an unknown address is answered as a known one; limits per address and per
client, exact under concurrency; a new request invalidates older links; a link is spent once
(of 32 concurrent completions exactly one succeeds), before it expires; the policy and the
history apply; every session is signed out; a security event and a notice."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    InvalidTokenError,
    PasswordReusedError,
    TokenAlreadyUsedError,
    TokenExpiredError,
    TooManyRequestsError,
    WeakPasswordError,
)
from authmodels.models import User
from authmodels.services import FlowSettings, password_reset, passwords, sessions, use_settings
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER, UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, race, snapshot

NEW = "a brand new passphrase"
IP, UA = "198.51.100.77", "Reset/1.0"
TABLES = ("password_reset_tokens", "email_delivery_logs", "users", "sessions", "audit_logs")


@pytest.fixture
def cheap(db: Session, settings: FlowSettings) -> Session:
    return use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))


def _link(db: Session, user: User) -> str:
    token = password_reset.request(db, user.email, ip=IP, user_agent=UA).token
    assert token is not None
    return token


def test_a_known_and_an_unknown_address_get_the_same_answer(cheap: Session, user: User) -> None:
    known = password_reset.request(cheap, user.email.upper(), ip=IP, user_agent=UA)
    unknown = password_reset.request(cheap, "nobody@example.com", ip=IP, user_agent=UA)

    assert known.token is not None and known.message is not None
    assert (known.message.to, known.message.template) == (user.email, "password_reset")
    assert (unknown.token, unknown.expires_at, unknown.message) == (None, None, None)
    assert count(cheap, "password_reset_tokens", "user_id = :u AND ip_hash IS NOT NULL",
                 u=user.id) == 1  # fmt: skip
    assert count(cheap, "password_reset_tokens") == 1
    assert count(cheap, "email_delivery_logs") == 1  # nothing is mailed to an unknown address
    assert count(cheap, "flow_requests") == 2  # both count towards the limits
    assert audit_events(cheap) == [
        ("password_reset_request", "success"),
        ("password_reset_request", "failure"),
    ]
    assert_no_raw_values(
        cheap, [known.token, IP, UA, "nobody@example.com"],
        ["password_reset_tokens", "email_delivery_logs", "flow_requests"],
    )  # fmt: skip


def test_a_new_request_invalidates_the_older_links(cheap: Session, user: User) -> None:
    older, newer = _link(cheap, user), _link(cheap, user)

    with pytest.raises(InvalidTokenError):
        password_reset.complete(cheap, older, NEW)
    assert password_reset.complete(cheap, newer, NEW).user_id == user.id


def test_completing_sets_the_password_and_signs_everyone_out(cheap: Session, user: User) -> None:
    for _ in range(2):
        sessions.create_session(cheap, user, ttl=timedelta(hours=1))
    cheap.execute(
        text("UPDATE auth.users SET failed_login_attempts = 5, account_locked_until = "
             "now() + interval '1 hour' WHERE id = :u"),
        {"u": user.id},
    )  # fmt: skip
    token = _link(cheap, user)

    done = password_reset.complete(cheap, token, NEW, ip=IP, user_agent=UA)

    assert (done.user_id, done.sessions_revoked) == (user.id, 2)
    assert (done.notice.to, done.notice.template) == (user.email, "password_changed_notice")
    assert count(cheap, "sessions", "user_id = :u AND revoked_reason = 'password_reset'",
                 u=user.id) == 2  # fmt: skip
    cheap.refresh(user)
    assert (user.failed_login_attempts, user.account_locked_until, user.email_verified) == (
        0, None, True,
    )  # fmt: skip
    assert passwords.authenticate(cheap, user.email, NEW, ip=None, user_agent=None)
    assert ("password_reset_complete", "success") in audit_events(cheap, user.id)
    assert cheap.execute(
        text("SELECT severity::text FROM auth.security_events "
             "WHERE event_type = 'password_reset.completed' AND user_id = :u"),
        {"u": user.id},
    ).scalar_one() == "low"  # fmt: skip
    assert_no_raw_values(cheap, [token, NEW], ["password_reset_tokens", "users"])


def test_a_link_is_used_once(cheap: Session, user: User) -> None:
    token = _link(cheap, user)
    password_reset.complete(cheap, token, NEW)
    before = snapshot(cheap, *TABLES)
    with pytest.raises(TokenAlreadyUsedError):
        password_reset.complete(cheap, token, "yet another passphrase")
    assert snapshot(cheap, *TABLES) == before


def test_an_expired_or_unknown_link_is_refused_and_nothing_is_written(
    cheap: Session, user: User
) -> None:
    token = _link(cheap, user)
    cheap.execute(
        text("UPDATE auth.password_reset_tokens SET created_at = now() - interval '2 hours', "
             "expires_at = now() - interval '1 hour'"),
    )  # fmt: skip
    before = snapshot(cheap, *TABLES)
    with pytest.raises(TokenExpiredError):
        password_reset.complete(cheap, token, NEW)
    with pytest.raises(InvalidTokenError):
        password_reset.complete(cheap, "x" * 43, NEW)
    assert snapshot(cheap, *TABLES) == before


def test_the_policy_and_the_history_apply_and_leave_the_link_usable(
    cheap: Session, user: User
) -> None:
    token = _link(cheap, user)
    before = snapshot(cheap, *TABLES)
    with pytest.raises(WeakPasswordError, match="at least 8"):
        password_reset.complete(cheap, token, "short")
    assert snapshot(cheap, *TABLES) == before
    with pytest.raises(PasswordReusedError), cheap.begin_nested():  # the caller rolls back
        password_reset.complete(cheap, token, DEFAULT_PASSWORD)
    assert snapshot(cheap, *TABLES) == before
    assert password_reset.complete(cheap, token, NEW).user_id == user.id


def test_a_deleted_account_cannot_be_reset(cheap: Session, user: User) -> None:
    token = _link(cheap, user)
    cheap.execute(text("UPDATE auth.users SET deleted_at = now() WHERE id = :u"), {"u": user.id})
    assert password_reset.request(cheap, user.email).token is None
    with pytest.raises(InvalidTokenError):
        password_reset.complete(cheap, token, NEW)


def test_the_client_limit_counts_every_address_known_or_not(
    db: Session, settings: FlowSettings, user: User
) -> None:
    use_settings(db, settings.replace(request_limit_per_ip=2))
    password_reset.request(db, user.email, ip=IP)
    password_reset.request(db, "unknown@example.com", ip=IP)
    with pytest.raises(TooManyRequestsError, match="client"):
        password_reset.request(db, "another@example.com", ip=IP)
    password_reset.request(db, "another@example.com", ip="192.0.2.1")  # another client


def test_of_32_concurrent_completions_of_one_link_exactly_one_succeeds(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER)
    with factory() as db:
        user = UserFactory(db)()
        token = _link(db, user)
        db.commit()

    def attempt(i: int) -> object:
        with factory() as db:
            try:
                done = password_reset.complete(db, token, f"{NEW} number {i}")
            except TokenAlreadyUsedError:
                db.rollback()
                raise
            db.commit()
            return done

    outcomes = race(32, attempt)

    winners = [o for o in outcomes if isinstance(o, password_reset.ResetCompleted)]
    assert len(winners) == 1, outcomes
    assert sum(isinstance(o, TokenAlreadyUsedError) for o in outcomes) == 31
    with factory() as db:
        assert count(db, "password_reset_tokens", "used_at IS NOT NULL") == 1
        assert audit_events(db, user.id).count(("password_reset_complete", "success")) == 1
        assert count(db, "password_history", "user_id = :u", u=user.id) == 1
        # the losers' security events were committed on their own
        assert count(db, "security_events", "event_type = 'password_reset.token_reused'") == 31


def test_of_20_concurrent_requests_for_one_address_exactly_the_limit_are_admitted(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()

    def attempt(i: int) -> object:
        with factory() as db:
            outcome = password_reset.request(db, "someone@example.com", ip=f"192.0.2.{i + 1}")
            db.commit()
            return outcome

    outcomes = race(20, attempt)

    assert sum(isinstance(o, TooManyRequestsError) for o in outcomes) == 17, outcomes
    with factory() as db:
        assert count(db, "flow_requests") == 3


def test_a_request_after_a_password_change_in_the_same_transaction_does_not_wait(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    """The counted request is committed on its own, naming the account: the caller's lock on
    the account's row (a password change just made) must not make it wait (lock_timeout)."""
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER)
    with factory() as db:
        user = UserFactory(db)()
        db.commit()
        passwords.set_password(db, user, "a passphrase changed first")
        started = time.monotonic()
        assert password_reset.request(db, user.email).token is not None
        assert time.monotonic() - started < 2  # the durable block's lock_timeout is 5 s
        db.commit()
    with factory() as db:
        assert count(db, "flow_requests", "user_id = :u", u=user.id) == 1
