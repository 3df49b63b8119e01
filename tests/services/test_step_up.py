"""Step-up tokens: issued once as raw values, stored as digests, spent exactly once (also by 32
concurrent requests), bound to their user and purpose, on a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import StepUpTokenExpired, StepUpTokenInvalid, StepUpTokenUsed
from authmodels.models import User
from authmodels.services import sessions, step_up
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

TTL = timedelta(minutes=5)
TABLES = ("step_up_tokens", "audit_logs")


def test_issue_returns_the_raw_token_once_and_stores_its_digest(db: Session, user: User) -> None:
    raw = step_up.issue(db, user, ttl=TTL)

    assert count(db, "step_up_tokens", "user_id = :u AND used_at IS NULL", u=user.id) == 1
    assert_no_raw_values(db, [raw], ["step_up_tokens"])
    assert audit_events(db, user.id) == [("step_up_issued", "success")]


def test_issue_refuses_a_lifetime_beyond_fifteen_minutes(db: Session, user: User) -> None:
    before = snapshot(db, *TABLES)
    for ttl in (timedelta(0), timedelta(minutes=16)):
        with pytest.raises(ValueError, match="ttl"):
            step_up.issue(db, user, ttl=ttl)
    assert snapshot(db, *TABLES) == before


def test_token_is_consumed_once(db: Session, user: User) -> None:
    raw = step_up.issue(db, user, ttl=TTL)

    step_up.consume(db, user, raw)
    before = snapshot(db, *TABLES)
    with pytest.raises(StepUpTokenUsed):
        step_up.consume(db, user, raw)

    assert snapshot(db, *TABLES) == before
    assert audit_events(db, user.id) == [("step_up_issued", "success"), ("step_up_used", "success")]


def test_expired_token_is_refused(db: Session, user: User) -> None:
    raw = step_up.issue(db, user, ttl=TTL)
    db.execute(
        text(
            "UPDATE auth.step_up_tokens SET created_at = created_at - interval '1 hour', "
            "expires_at = expires_at - interval '1 hour' WHERE user_id = :u"
        ),
        {"u": user.id},
    )
    before = snapshot(db, *TABLES)
    with pytest.raises(StepUpTokenExpired):
        step_up.consume(db, user, raw)
    assert snapshot(db, *TABLES) == before


@pytest.mark.parametrize("presented", ["", "x" * 600, "not-a-token-we-issued"])
def test_wrong_token_is_invalid(db: Session, user: User, presented: str) -> None:
    step_up.issue(db, user, ttl=TTL)
    before = snapshot(db, *TABLES)
    with pytest.raises(StepUpTokenInvalid):
        step_up.consume(db, user, presented)
    assert snapshot(db, *TABLES) == before


def test_token_is_bound_to_its_user_and_purpose(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    other = authmodels_user_factory()
    raw = step_up.issue(db, user, ttl=TTL, purpose="account.delete")
    before = snapshot(db, *TABLES)

    with pytest.raises(StepUpTokenInvalid):
        step_up.consume(db, other, raw, purpose="account.delete")
    with pytest.raises(StepUpTokenInvalid):
        step_up.consume(db, user, raw)  # earned for another action

    assert snapshot(db, *TABLES) == before
    step_up.consume(db, user, raw, purpose="account.delete")


def test_32_concurrent_consumers_exactly_one_succeeds(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()
    with factory() as db:
        raw = step_up.issue(db, fresh_user, ttl=TTL)
        db.commit()

    threads = 32
    barrier = threading.Barrier(threads)
    outcomes: list[object] = [None] * threads

    def spend(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                outcomes[index] = step_up.consume(db, fresh_user.id, raw)
                db.commit()
            except StepUpTokenUsed as exc:
                db.rollback()
                outcomes[index] = exc

    workers = [threading.Thread(target=spend, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)

    winners = [o for o in outcomes if not isinstance(o, StepUpTokenUsed)]
    assert len(winners) == 1, outcomes
    assert sum(isinstance(o, StepUpTokenUsed) for o in outcomes) == threads - 1
    with factory() as db:
        assert audit_events(db, fresh_user.id).count(("step_up_used", "success")) == 1
        assert count(db, "step_up_tokens", "used_at IS NOT NULL") == 1


def test_a_token_issued_for_a_session_is_only_accepted_there(db: Session, user: User) -> None:
    mine = sessions.create_session(db, user, ttl=timedelta(hours=1)).session.id
    other = sessions.create_session(db, user, ttl=timedelta(hours=1)).session.id
    raw = step_up.issue(db, user, ttl=TTL, session_id=mine)
    before = snapshot(db, *TABLES)

    for presented_from in (None, other):
        with pytest.raises(StepUpTokenInvalid):
            step_up.consume(db, user, raw, session_id=presented_from)

    assert snapshot(db, *TABLES) == before
    step_up.consume(db, user, raw, session_id=mine)
