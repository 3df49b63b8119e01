"""E-mail verification and change: a link is spent once, before it expires; a new address
replaces the old only once verified, and only if no other live account has it at that moment;
the old address is told; links sent to the old address stop working."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    EmailTakenError,
    InvalidInputError,
    InvalidTokenError,
    TokenAlreadyUsedError,
    TokenExpiredError,
)
from authmodels.models import User
from authmodels.services import (
    FlowSettings,
    email_verification,
    password_reset,
    signup,
    use_settings,
)
from authmodels.services.email_verification import Verified
from authmodels.testing.factories import TEST_PASSWORD_HASHER, UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, race, snapshot

TABLES = ("users", "email_verification_tokens", "email_delivery_logs", "audit_logs")


@pytest.fixture
def cheap(db: Session, settings: FlowSettings) -> Session:
    return use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))


def test_the_sign_up_link_verifies_the_address_once(cheap: Session) -> None:
    outcome = signup.register(cheap, "ada@example.com", "a long passphrase")
    assert outcome.verification is not None and outcome.user is not None
    token = outcome.verification.token

    verified = email_verification.verify(cheap, token)

    assert not verified.changed and verified.notice is None
    assert verified.user.email_verified and verified.user.email_verified_at is not None
    assert ("email_verification", "success") in audit_events(cheap, outcome.user.id)
    before = snapshot(cheap, *TABLES)
    with pytest.raises(TokenAlreadyUsedError):
        email_verification.verify(cheap, token)
    assert snapshot(cheap, *TABLES) == before


def test_a_new_link_replaces_the_older_and_a_verified_address_needs_none(
    cheap: Session, user: User
) -> None:
    older = email_verification.request_verification(cheap, user)
    newer = email_verification.request_verification(cheap, user)
    assert older is not None and newer is not None
    with pytest.raises(InvalidTokenError):
        email_verification.verify(cheap, older.token)
    email_verification.verify(cheap, newer.token)
    assert email_verification.request_verification(cheap, user) is None


def test_an_expired_link_is_refused(cheap: Session, user: User) -> None:
    link = email_verification.request_verification(cheap, user)
    assert link is not None
    cheap.execute(
        text("UPDATE auth.email_verification_tokens SET created_at = now() - interval '2 days', "
             "expires_at = now() - interval '1 day'"),
    )  # fmt: skip
    before = snapshot(cheap, *TABLES)
    with pytest.raises(TokenExpiredError):
        email_verification.verify(cheap, link.token)
    assert snapshot(cheap, *TABLES) == before


def test_a_new_address_replaces_the_old_only_once_verified(cheap: Session, user: User) -> None:
    old = user.email
    reset = password_reset.request(cheap, old).token  # a link sent to the old address
    assert reset is not None
    change = email_verification.request_email_change(cheap, user, " Ada.New@Example.com ")

    assert (change.message.to, change.message.template) == ("ada.new@example.com", "email_change")
    cheap.refresh(user)
    assert user.email == old  # nothing changed yet
    verified: Verified = email_verification.verify(cheap, change.token, ip="192.0.2.5")

    assert verified.changed and verified.user.email == "ada.new@example.com"
    assert verified.user.email_verified
    assert verified.notice is not None
    assert (verified.notice.to, verified.notice.template) == (old, "email_changed_notice")
    assert [e for e, _ in audit_events(cheap, user.id) if e.startswith("email_")] == [
        "email_change_requested",
        "email_changed",
    ]
    assert cheap.execute(
        text("SELECT severity::text FROM auth.security_events "
             "WHERE event_type = 'account.email_changed' AND user_id = :u"),
        {"u": user.id},
    ).scalar_one() == "medium"  # fmt: skip
    with pytest.raises(InvalidTokenError):  # the old address's link went with it
        password_reset.complete(cheap, reset, "a brand new passphrase")
    assert_no_raw_values(cheap, [change.token, reset], ["email_verification_tokens"])


def test_uniqueness_is_checked_when_the_change_is_verified(
    cheap: Session, authmodels_user_factory: UserFactory
) -> None:
    ada = authmodels_user_factory(email="ada@example.com")
    change = email_verification.request_email_change(cheap, ada, "shared@example.com")
    authmodels_user_factory(email="SHARED@example.com")  # someone took it meanwhile
    before = snapshot(cheap, *TABLES)

    with pytest.raises(EmailTakenError), cheap.begin_nested():  # the caller rolls back
        email_verification.verify(cheap, change.token)

    assert snapshot(cheap, *TABLES) == before
    cheap.refresh(ada)
    assert ada.email == "ada@example.com"


@pytest.mark.parametrize("address", ["not an address", "ada@localhost", "", None])
def test_a_change_to_what_is_not_an_address_writes_nothing(
    cheap: Session, user: User, address: object
) -> None:
    before = snapshot(cheap, *TABLES, "flow_requests")
    with pytest.raises(InvalidInputError, match="new_email"):
        email_verification.request_email_change(cheap, user, address)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="already"):
        email_verification.request_email_change(cheap, user, user.email.upper())
    assert snapshot(cheap, *TABLES, "flow_requests") == before


def test_of_concurrent_uses_of_one_link_exactly_one_verifies(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    with factory() as db:
        user = UserFactory(db)()
        link = email_verification.request_verification(db, user)
        assert link is not None
        db.commit()

    def attempt(i: int) -> object:
        with factory() as db:
            done = email_verification.verify(db, link.token)
            db.commit()
            return done

    outcomes = race(12, attempt)

    assert sum(isinstance(o, Verified) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, TokenAlreadyUsedError) for o in outcomes) == 11
    with factory() as db:
        assert count(db, "audit_logs", "event_type = 'email_verification'") == 1
