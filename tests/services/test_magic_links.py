"""Magic links: short-lived, single use (also under concurrency), answered alike for unknown
addresses, and, when bound, usable only by the client that asked for them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    ConfigurationError,
    InvalidTokenError,
    MagicLinkClientMismatch,
    TokenAlreadyUsedError,
    TokenExpiredError,
)
from authmodels.models import User
from authmodels.services import FlowSettings, magic_links
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, race, snapshot

IP, UA = "203.0.113.61", "Mail/2.0"
TABLES = ("magic_link_tokens", "users", "login_attempts", "audit_logs")


def _link(db: Session, user: User, bind_to: str | None = None) -> str:
    token = magic_links.request(db, user.email, ip=IP, bind_to=bind_to).token
    assert token is not None
    return token


def test_a_link_signs_its_user_in_once(db: Session, user: User) -> None:
    token = _link(db, user)

    signed_in = magic_links.redeem(db, token, ip=IP, user_agent=UA)

    assert signed_in.id == user.id
    assert signed_in.email_verified and signed_in.last_login_at is not None
    assert count(db, "login_attempts", "user_id = :u AND attempt_result = 'success'",
                 u=user.id) == 1  # fmt: skip
    assert [e for e, _ in audit_events(db, user.id)] == ["magic_link_requested", "magic_link_login"]
    assert_no_raw_values(db, [token, IP, UA], ["magic_link_tokens", "login_attempts"])
    before = snapshot(db, *TABLES)
    with pytest.raises(TokenAlreadyUsedError):
        magic_links.redeem(db, token)
    assert snapshot(db, *TABLES) == before


def test_an_unknown_or_deleted_address_gets_no_link_and_the_same_answer(
    db: Session, user: User
) -> None:
    assert magic_links.request(db, "nobody@example.com").token is None
    db.execute(text("UPDATE auth.users SET deleted_at = now() WHERE id = :u"), {"u": user.id})
    outcome = magic_links.request(db, user.email)
    assert (outcome.token, outcome.message, outcome.expires_at) == (None, None, None)
    assert count(db, "magic_link_tokens") == 0


def test_a_bound_link_works_only_for_the_client_that_asked(db: Session, user: User) -> None:
    token = _link(db, user, bind_to="cookie of the laptop")
    before = snapshot(db, *TABLES)
    for client in ("cookie of another browser", None):
        with pytest.raises(MagicLinkClientMismatch, match="another device"):
            magic_links.redeem(db, token, client=client)
    assert snapshot(db, *TABLES) == before  # still unused
    assert magic_links.redeem(db, token, client="cookie of the laptop").id == user.id
    assert_no_raw_values(db, ["cookie of the laptop"], ["magic_link_tokens"])


def test_an_expired_link_or_an_older_one_is_refused(db: Session, user: User) -> None:
    older = _link(db, user)
    newer = _link(db, user)
    with pytest.raises(InvalidTokenError):
        magic_links.redeem(db, older)
    db.execute(
        text("UPDATE auth.magic_link_tokens SET created_at = now() - interval '30 minutes', "
             "expires_at = now() - interval '1 minute'"),
    )  # fmt: skip
    with pytest.raises(TokenExpiredError):
        magic_links.redeem(db, newer)


def test_a_link_lives_at_most_an_hour(db: Session, user: User, settings: FlowSettings) -> None:
    with pytest.raises(ConfigurationError, match="magic_link_ttl"):
        settings.replace(magic_link_ttl=timedelta(hours=2))
    _link(db, user)
    with pytest.raises(IntegrityError, match="ck_magic_link_tokens_lifetime"), db.begin_nested():
        db.execute(text("UPDATE auth.magic_link_tokens SET expires_at = now() + interval '2h'"))


def test_of_16_concurrent_redemptions_of_one_link_exactly_one_signs_in(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    with factory() as db:
        user = UserFactory(db)()
        token = _link(db, user)
        db.commit()

    def attempt(i: int) -> object:
        with factory() as db:
            signed_in = magic_links.redeem(db, token)
            db.commit()
            return signed_in

    outcomes = race(16, attempt)

    assert sum(isinstance(o, User) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, TokenAlreadyUsedError) for o in outcomes) == 15
    with factory() as db:
        assert count(db, "login_attempts", "attempt_result = 'success'") == 1
