"""Role changes: a step-up token of an admin, the master-admin and last-admin guards with seed
001's messages (also under concurrency), optimistic locking on the target, the audit entry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    ConcurrentUpdateError,
    LastAdminError,
    MasterAdminProtectedError,
    NotAuthorizedError,
    StepUpTokenInvalid,
    StepUpTokenUsed,
)
from authmodels.models import User
from authmodels.services import admin, step_up
from authmodels.testing.factories import UserFactory
from tests.services.helpers import count, snapshot

TTL = timedelta(minutes=5)
TABLES = ("users", "step_up_tokens", "audit_logs")


@pytest.fixture
def admins(authmodels_user_factory: UserFactory) -> tuple[User, User]:
    return authmodels_user_factory(role="admin"), authmodels_user_factory(role="admin")


def test_admin_promotes_a_user_with_a_step_up_token_and_it_is_audited(
    db: Session, admins: tuple[User, User], user: User
) -> None:
    actor = admins[0]
    token = step_up.issue(db, actor, ttl=TTL)
    version = user.version

    updated = admin.change_role(
        db, actor=actor, target=user, role="admin", step_up_token=token, correlation_id="req-42"
    )

    assert updated.role == "admin" and updated.version == version + 1
    entry = db.execute(
        text(
            "SELECT user_id, actor_user_id, target_user_id, action, correlation_id, details "
            "FROM auth.audit_logs WHERE event_type = 'role_changed'"
        )
    ).one()
    assert entry.actor_user_id == actor.id and entry.target_user_id == user.id
    assert entry.user_id == user.id and entry.action == "admin.role_change"
    assert entry.correlation_id == "req-42"
    assert entry.details == {"from": "user", "to": "admin"}
    assert count(db, "step_up_tokens", "user_id = :u AND used_at IS NOT NULL", u=actor.id) == 1


def test_correlation_id_is_generated_when_absent(
    db: Session, admins: tuple[User, User], user: User
) -> None:
    token = step_up.issue(db, admins[0], ttl=TTL)
    admin.change_role(db, actor=admins[0], target=user, role="admin", step_up_token=token)
    correlation = db.execute(
        text("SELECT correlation_id FROM auth.audit_logs WHERE event_type = 'role_changed'")
    ).scalar_one()
    uuid.UUID(correlation)


def test_a_step_up_token_authorises_one_role_change(
    db: Session, admins: tuple[User, User], authmodels_user_factory: UserFactory
) -> None:
    first, second = authmodels_user_factory(), authmodels_user_factory()
    token = step_up.issue(db, admins[0], ttl=TTL)
    admin.change_role(db, actor=admins[0], target=first, role="admin", step_up_token=token)
    before = snapshot(db, *TABLES)
    with pytest.raises(StepUpTokenUsed):
        admin.change_role(db, actor=admins[0], target=second, role="admin", step_up_token=token)
    assert snapshot(db, *TABLES) == before


def test_non_admin_cannot_change_roles_and_nothing_is_spent(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    other = authmodels_user_factory()
    token = step_up.issue(db, user, ttl=TTL)
    before = snapshot(db, *TABLES)
    with pytest.raises(NotAuthorizedError):
        admin.change_role(db, actor=user, target=other, role="admin", step_up_token=token)
    assert snapshot(db, *TABLES) == before


def test_step_up_token_of_another_user_is_refused(
    db: Session, admins: tuple[User, User], user: User
) -> None:
    token = step_up.issue(db, admins[1], ttl=TTL)
    before = snapshot(db, *TABLES)
    with pytest.raises(StepUpTokenInvalid):
        admin.change_role(db, actor=admins[0], target=user, role="admin", step_up_token=token)
    assert snapshot(db, *TABLES) == before


def test_master_admin_cannot_be_demoted(db: Session, admins: tuple[User, User]) -> None:
    master, actor = admins
    db.execute(text("SELECT auth.transfer_master_admin(:id)"), {"id": master.id})
    db.refresh(master)
    token = step_up.issue(db, actor, ttl=TTL)
    before = snapshot(db, *TABLES)

    with pytest.raises(MasterAdminProtectedError, match="Cannot demote the master admin"):
        admin.change_role(db, actor=actor, target=master, role="user", step_up_token=token)

    assert snapshot(db, *TABLES) == before  # the token is still unspent


def test_last_admin_cannot_demote_themself(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    db.execute(text("UPDATE auth.users SET role = 'user' WHERE role = 'admin'"))
    only = authmodels_user_factory(role="admin")
    token = step_up.issue(db, only, ttl=TTL)
    before = snapshot(db, *TABLES)

    with pytest.raises(LastAdminError, match="Cannot remove the last admin"):
        admin.change_role(db, actor=only, target=only, role="user", step_up_token=token)

    assert snapshot(db, *TABLES) == before


def test_stale_target_version_is_refused(
    db: Session, admins: tuple[User, User], user: User
) -> None:
    token = step_up.issue(db, admins[0], ttl=TTL)
    stale = user.version
    db.execute(text("UPDATE auth.users SET email_verified = true WHERE id = :id"), {"id": user.id})
    before = snapshot(db, *TABLES)

    with pytest.raises(ConcurrentUpdateError, match="modified by another transaction"):
        admin.change_role(
            db,
            actor=admins[0],
            target=user.id,
            role="admin",
            step_up_token=token,
            expected_version=stale,
        )

    assert snapshot(db, *TABLES) == before


def _concurrently(
    factory: sessionmaker[Session], jobs: list[Callable[[Session], object]]
) -> list[object]:
    barrier = threading.Barrier(len(jobs))
    outcomes: list[object] = [None] * len(jobs)

    def run(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                outcomes[index] = jobs[index](db)
                db.commit()
            except (LastAdminError, NotAuthorizedError) as exc:
                db.rollback()
                outcomes[index] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    return outcomes


def _two_last_admins(factory: sessionmaker[Session]) -> tuple[User, User, str, str]:
    with factory() as db:
        db.execute(text("UPDATE auth.users SET role = 'user' WHERE role = 'admin'"))
        a, b = UserFactory(db)(role="admin"), UserFactory(db)(role="admin")
        token_a, token_b = step_up.issue(db, a, ttl=TTL), step_up.issue(db, b, ttl=TTL)
        db.commit()
    return a, b, token_a, token_b


def test_last_two_admins_stepping_down_at_once_one_is_refused(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    a, b, token_a, token_b = _two_last_admins(factory)

    outcomes = _concurrently(
        factory,
        [
            lambda db: admin.change_role(
                db, actor=a.id, target=a.id, role="user", step_up_token=token_a
            ),
            lambda db: admin.change_role(
                db, actor=b.id, target=b.id, role="user", step_up_token=token_b
            ),
        ],
    )

    refused = [o for o in outcomes if isinstance(o, LastAdminError)]
    assert len(refused) == 1 and str(refused[0]) == "Cannot remove the last admin", outcomes
    assert sum(isinstance(o, User) for o in outcomes) == 1
    with factory() as db:
        assert count(db, "users", "role = 'admin' AND deleted_at IS NULL") == 1
        assert count(db, "audit_logs", "event_type = 'role_changed'") == 1
        # the refused admin's token was not spent
        assert count(db, "step_up_tokens", "used_at IS NULL") == 1


def test_last_two_admins_demoting_each_other_at_once_one_admin_remains(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    a, b, token_a, token_b = _two_last_admins(factory)

    outcomes = _concurrently(
        factory,
        [
            lambda db: admin.change_role(
                db, actor=a.id, target=b.id, role="user", step_up_token=token_a
            ),
            lambda db: admin.change_role(
                db, actor=b.id, target=a.id, role="user", step_up_token=token_b
            ),
        ],
    )

    # the second one waits for the first; by then its actor is no admin any more
    assert sum(isinstance(o, User) for o in outcomes) == 1
    assert sum(isinstance(o, NotAuthorizedError) for o in outcomes) == 1, outcomes
    with factory() as db:
        assert count(db, "users", "role = 'admin' AND deleted_at IS NULL") == 1
