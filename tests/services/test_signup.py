"""Sign-up: a new account with defaults only, a normalised address, an Argon2id hash and its
verification link; a taken address gets the same answer and a notice to its owner; concurrent
sign-ups with one address make one account; limits hold whether or not the address is taken."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import InvalidInputError, TooManyRequestsError, WeakPasswordError
from authmodels.security.passwords import hash_scheme
from authmodels.services import FlowSettings, signup, use_settings
from authmodels.services.signup import SignUp
from authmodels.testing.factories import TEST_PASSWORD_HASHER
from tests.services.helpers import assert_no_raw_values, audit_events, count, race, snapshot

PASSWORD = "a long enough passphrase"
IP = "203.0.113.40"
TABLES = ("users", "email_verification_tokens", "email_delivery_logs", "audit_logs")


@pytest.fixture
def cheap(db: Session, settings: FlowSettings) -> Session:
    return use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))


def answer(outcome: SignUp) -> tuple[int, dict[str, str]]:
    """What a service tells the client: the same, whatever the outcome."""
    return 202, {"detail": "check your inbox to finish signing up"}


def test_a_sign_up_creates_an_unprivileged_account_and_its_verification_link(
    cheap: Session,
) -> None:
    outcome = signup.register(cheap, "  Ada.Lovelace@Example.COM ", PASSWORD, ip=IP)

    assert outcome.created and outcome.user is not None and outcome.verification is not None
    user = outcome.user
    assert user.email == "ada.lovelace@example.com"
    assert hash_scheme(user.password_hash) == "argon2"
    assert (user.role, user.is_master_admin, user.email_verified) == ("user", False, False)
    assert (user.failed_login_attempts, user.account_locked_until) == (0, None)
    message = outcome.message
    assert (message.to, message.template, message.channel) == (
        "ada.lovelace@example.com",
        "email_verification",
        "email",
    )
    assert outcome.verification.message == message
    assert count(cheap, "email_verification_tokens", "user_id = :u", u=user.id) == 1
    assert (
        count(
            cheap,
            "email_delivery_logs",
            "id = :d AND recipient_masked = 'a***@example.com' AND status = 'pending'",
            d=message.id,
        )
        == 1
    )
    assert_no_raw_values(
        cheap, [outcome.verification.token, PASSWORD, IP], ["email_verification_tokens", "users"]
    )
    assert_no_raw_values(cheap, ["ada.lovelace@example.com"], ["email_delivery_logs"])
    assert audit_events(cheap, user.id) == [("signup", "success")]


def test_register_takes_no_privileged_column_from_the_caller() -> None:
    assert list(inspect.signature(signup.register).parameters) == [
        "db", "email", "password", "ip", "user_agent",
    ]  # fmt: skip


def test_a_taken_address_gets_the_same_answer_a_notice_and_no_account(cheap: Session) -> None:
    first = signup.register(cheap, "grace@example.com", PASSWORD)
    before = count(cheap, "users")

    second = signup.register(cheap, "GRACE@example.com", "another long passphrase")

    assert answer(first) == answer(second)
    assert not second.created and second.user is None and second.verification is None
    assert (second.message.to, second.message.template) == (
        "grace@example.com",
        "signup_address_taken",
    )
    assert count(cheap, "users") == before
    assert first.user is not None
    assert audit_events(cheap, first.user.id) == [("signup", "success"), ("signup", "failure")]
    assert count(cheap, "email_verification_tokens", "user_id = :u", u=first.user.id) == 1


@pytest.mark.parametrize(
    ("email", "password", "error"),
    [
        ("not-an-address", PASSWORD, InvalidInputError),
        ("ada@example", PASSWORD, InvalidInputError),
        ("ada@example.com", "short", WeakPasswordError),
        ("ada@example.com", "", InvalidInputError),
        ("ada\x00@example.com", PASSWORD, InvalidInputError),
    ],
)
def test_refused_sign_ups_write_nothing(
    cheap: Session, email: str, password: str, error: type[Exception]
) -> None:
    before = snapshot(cheap, *TABLES, "flow_requests")
    with pytest.raises(error):
        signup.register(cheap, email, password)
    assert snapshot(cheap, *TABLES, "flow_requests") == before


def test_the_address_limit_counts_taken_and_free_addresses_alike(cheap: Session) -> None:
    for _ in range(3):  # FlowSettings.request_limit_per_account
        signup.register(cheap, "limited@example.com", PASSWORD)
    with pytest.raises(TooManyRequestsError) as refused:
        signup.register(cheap, "limited@example.com", PASSWORD)
    assert 3500 < refused.value.retry_after <= 3600


def test_concurrent_sign_ups_with_one_address_make_one_account(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER, request_limit_per_account=100)

    def attempt(i: int) -> bool:
        with factory() as db:
            created = signup.register(db, "same@example.com", f"{PASSWORD} {i}").created
            db.commit()
            return created

    outcomes = race(8, attempt)

    assert sorted(outcomes, key=str) == [False] * 7 + [True], outcomes
    with factory() as db:
        assert count(db, "users", "email = 'same@example.com'") == 1
        assert count(db, "email_delivery_logs") == 8
