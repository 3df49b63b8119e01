"""The admin guards of revision 0009 on a database at head, with real commits.

Seed 001's success criteria: "Master admin cannot be demoted" (SQLSTATE ``MA001``, "Cannot demote
the master admin") and "Last admin cannot be removed" (``MA002``, "Cannot remove the last admin")
-- also when two transactions, on their own connections, demote the last two admins at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from authmodels import rls
from authmodels.errors import ConcurrentUpdateError
from authmodels.locking import optimistic_update
from authmodels.models import User
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role, drop_role

MASTER = "MA001"
LAST_ADMIN = "MA002"
NOT_AN_ADMIN = "MA003"


def _sqlstate(error: BaseException) -> str | None:
    orig = error.orig if isinstance(error, DBAPIError) else error
    return getattr(orig, "sqlstate", None)


@pytest.fixture
def engine(authmodels_fresh_engine: Engine) -> Iterator[Engine]:
    yield authmodels_fresh_engine


def _user(engine: Engine, email: str, role: str = "user", **values: Any) -> str:
    names = ", ".join(["email", "password_hash", "role", *values])
    params = ", ".join([":email", "'x'", ":role", *(f":{k}" for k in values)])
    with engine.begin() as conn:
        return str(
            conn.execute(
                text(f"INSERT INTO auth.users ({names}) VALUES ({params}) RETURNING id"),
                {"email": email, "role": role, **values},
            ).scalar_one()
        )


def _run(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def _refused(engine: Engine, sql: str, **params: Any) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        _run(engine, sql, **params)
    return caught.value


def _active_admins(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {
            str(r[0])
            for r in conn.execute(
                text("SELECT id FROM auth.users WHERE role = 'admin' AND deleted_at IS NULL")
            )
        }


def _master(engine: Engine) -> str:
    with engine.begin() as conn:
        return str(conn.execute(text("SELECT auth.designate_master_admin()")).scalar_one())


# --- last admin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "removal",
    [
        "UPDATE auth.users SET role = 'user' WHERE id = :i",
        "UPDATE auth.users SET deleted_at = now() WHERE id = :i",
        "DELETE FROM auth.users WHERE id = :i",
    ],
    ids=["demote", "soft-delete", "delete"],
)
def test_the_only_admin_cannot_be_removed(engine: Engine, removal: str) -> None:
    admin = _user(engine, "admin@example.com", "admin")

    error = _refused(engine, removal, i=admin)

    assert _sqlstate(error) == LAST_ADMIN
    assert "Cannot remove the last admin" in str(error)
    assert _active_admins(engine) == {admin}


def test_one_of_two_admins_can_be_demoted_but_not_the_second(engine: Engine) -> None:
    first = _user(engine, "a@example.com", "admin")
    second = _user(engine, "b@example.com", "admin")

    _run(engine, "UPDATE auth.users SET role = 'user' WHERE id = :i", i=first)
    error = _refused(engine, "UPDATE auth.users SET role = 'user' WHERE id = :i", i=second)

    assert _sqlstate(error) == LAST_ADMIN
    assert _active_admins(engine) == {second}


def test_one_statement_removing_every_admin_is_refused_as_a_whole(engine: Engine) -> None:
    admins = {_user(engine, f"a{i}@example.com", "admin") for i in range(3)}

    error = _refused(engine, "UPDATE auth.users SET role = 'user' WHERE role = 'admin'")

    assert _sqlstate(error) == LAST_ADMIN
    assert _active_admins(engine) == admins


def test_other_updates_of_admins_and_users_are_not_guarded(engine: Engine) -> None:
    admin = _user(engine, "admin@example.com", "admin")
    plain = _user(engine, "u@example.com")

    _run(engine, "UPDATE auth.users SET last_login_at = now() WHERE id = :i", i=admin)
    _run(engine, "UPDATE auth.users SET role = 'admin' WHERE id = :i", i=plain)
    _run(engine, "UPDATE auth.users SET role = 'user' WHERE id = :i", i=plain)
    _run(engine, "DELETE FROM auth.users WHERE id = :i", i=plain)

    assert _active_admins(engine) == {admin}


# --- master admin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("UPDATE auth.users SET role = 'user' WHERE id = :i", "its role cannot become"),
        ("UPDATE auth.users SET deleted_at = now() WHERE id = :i", "cannot be soft-deleted"),
        ("DELETE FROM auth.users WHERE id = :i", "cannot be deleted"),
        ("UPDATE auth.users SET is_master_admin = false WHERE id = :i", "transfer_master_admin"),
    ],
    ids=["demote", "soft-delete", "delete", "clear-flag"],
)
def test_the_master_admin_cannot_be_demoted_even_with_other_admins(
    engine: Engine, change: str, detail: str
) -> None:
    master = _user(engine, "first@example.com", "admin")
    other = _user(engine, "second@example.com", "admin")
    assert _master(engine) == master

    error = _refused(engine, change, i=master)

    assert _sqlstate(error) == MASTER
    assert "Cannot demote the master admin" in str(error)
    assert detail in error.orig.diag.message_detail  # type: ignore[union-attr]
    assert _active_admins(engine) == {master, other}
    # the other admin is not protected by the master guard
    _run(engine, "UPDATE auth.users SET role = 'user' WHERE id = :i", i=other)


def test_a_second_master_admin_is_refused(engine: Engine) -> None:
    master = _user(engine, "first@example.com", "admin")
    other = _user(engine, "second@example.com", "admin")
    assert _master(engine) == master

    error = _refused(engine, "UPDATE auth.users SET is_master_admin = true WHERE id = :i", i=other)

    assert _sqlstate(error) == "23505"  # ix_users_is_master_admin: at most one
    assert "ix_users_is_master_admin" in str(error)


def test_the_master_admin_role_moves_only_through_transfer(engine: Engine) -> None:
    master = _user(engine, "first@example.com", "admin")
    successor = _user(engine, "second@example.com", "admin")
    plain = _user(engine, "u@example.com")
    assert _master(engine) == master

    error = _refused(engine, "SELECT auth.transfer_master_admin(:i)", i=plain)
    assert _sqlstate(error) == NOT_AN_ADMIN

    with engine.begin() as conn:
        previous = conn.execute(
            text("SELECT auth.transfer_master_admin(:i, 'req-1')"), {"i": successor}
        ).scalar_one()
    assert str(previous) == master
    with engine.connect() as conn:
        masters = conn.execute(text("SELECT id::text FROM auth.users WHERE is_master_admin"))
        assert [r[0] for r in masters] == [successor]
        audit = conn.execute(
            text(
                "SELECT event_type, target_user_id::text, correlation_id, "
                "details->>'previous_master_admin_id' FROM auth.audit_logs "
                "WHERE action = 'master_admin.transfer'"
            )
        ).all()
    assert audit == [("master_admin_transferred", successor, "req-1", master)]
    # the former master admin is an ordinary admin now
    _run(engine, "UPDATE auth.users SET role = 'user' WHERE id = :i", i=master)


def test_deleting_the_master_admin_fails_and_changes_nothing(engine: Engine) -> None:
    master = _user(engine, "first@example.com", "admin")
    _user(engine, "second@example.com", "admin")
    assert _master(engine) == master

    with engine.connect() as conn, pytest.raises(DBAPIError) as caught, conn.begin():
        conn.execute(text("DELETE FROM auth.users WHERE role = 'admin'"))

    assert _sqlstate(caught.value) == MASTER
    assert master in _active_admins(engine)
    assert len(_active_admins(engine)) == 2


def test_truncating_users_cannot_remove_the_admins(engine: Engine) -> None:
    _user(engine, "admin@example.com", "admin")
    error = _refused(engine, "TRUNCATE auth.users CASCADE")
    assert _sqlstate(error) == LAST_ADMIN
    _master(engine)
    error = _refused(engine, "TRUNCATE auth.users CASCADE")
    assert _sqlstate(error) == MASTER


# --- concurrency: write skew ---------------------------------------------------------------


def _concurrently(
    engine: Engine, statements: list[tuple[str, dict[str, Any]]], isolation: str
) -> tuple[list[BaseException | None], bool]:
    """Run each statement in its own transaction on its own connection, lined up by a barrier.

    Each transaction reads first (so a REPEATABLE READ snapshot predates the other's commit),
    waits for the others, runs its statement and holds its locks for a moment before
    committing. Returns each outcome (None: committed) and whether some transaction was seen
    waiting for the admin-guard advisory lock.
    """
    barrier = threading.Barrier(len(statements))
    outcomes: list[BaseException | None] = [None] * len(statements)

    def work(index: int, sql: str, params: dict[str, Any]) -> None:
        try:
            with engine.connect() as conn:
                conn.execution_options(isolation_level=isolation)
                with conn.begin():
                    conn.execute(text("SELECT count(*) FROM auth.users"))
                    barrier.wait(timeout=10)
                    conn.execute(text(sql), params)
                    time.sleep(0.5)
        except BaseException as exc:  # collected and asserted by the test
            outcomes[index] = exc

    threads = [
        threading.Thread(target=work, args=(i, sql, params))
        for i, (sql, params) in enumerate(statements)
    ]
    for thread in threads:
        thread.start()
    waited = False
    with engine.connect() as monitor:
        monitor.execution_options(isolation_level="AUTOCOMMIT")
        while any(t.is_alive() for t in threads):
            waiting = monitor.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
            waited = waited or waiting > 0
            time.sleep(0.02)
    for thread in threads:
        thread.join()
    return outcomes, waited


DEMOTE = "UPDATE auth.users SET role = 'user' WHERE id = :i"
SOFT_DELETE = "UPDATE auth.users SET deleted_at = now() WHERE id = :i"


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
@pytest.mark.parametrize("second", [DEMOTE, SOFT_DELETE], ids=["demote", "soft-delete"])
def test_concurrent_removal_of_the_last_two_admins_leaves_one(
    engine: Engine, isolation: str, second: str
) -> None:
    a = _user(engine, "a@example.com", "admin")
    b = _user(engine, "b@example.com", "admin")

    outcomes, waited = _concurrently(engine, [(DEMOTE, {"i": a}), (second, {"i": b})], isolation)

    assert waited, (
        f"{outcomes}: the second transaction never waited for the first: no concurrency tested"
    )
    failures = [o for o in outcomes if o is not None]
    assert len(failures) == 1, outcomes
    assert _sqlstate(failures[0]) == LAST_ADMIN
    assert "Cannot remove the last admin" in str(failures[0])
    survivors = _active_admins(engine)
    assert len(survivors) == 1
    assert survivors <= {a, b}


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_concurrent_removals_that_leave_an_admin_both_succeed(
    engine: Engine, isolation: str
) -> None:
    a = _user(engine, "a@example.com", "admin")
    b = _user(engine, "b@example.com", "admin")
    c = _user(engine, "c@example.com", "admin")

    outcomes, _ = _concurrently(engine, [(DEMOTE, {"i": a}), (DEMOTE, {"i": b})], isolation)

    assert outcomes == [None, None]
    assert _active_admins(engine) == {c}


def test_concurrent_removal_in_serializable_never_leaves_no_admin(engine: Engine) -> None:
    a = _user(engine, "a@example.com", "admin")
    b = _user(engine, "b@example.com", "admin")

    outcomes, _ = _concurrently(engine, [(DEMOTE, {"i": a}), (DEMOTE, {"i": b})], "SERIALIZABLE")

    failures = [o for o in outcomes if o is not None]
    assert len(failures) == 1
    assert _sqlstate(failures[0]) in {LAST_ADMIN, "40001"}
    assert len(_active_admins(engine)) == 1


# --- optimistic locking on users -------------------------------------------------------------


def test_raw_sql_updates_bump_the_version(engine: Engine) -> None:
    plain = _user(engine, "u@example.com")
    _run(engine, "UPDATE auth.users SET last_login_at = now() WHERE id = :i", i=plain)
    _run(engine, "UPDATE auth.users SET version = version + 1 WHERE id = :i", i=plain)
    with engine.connect() as conn:
        version = conn.execute(
            text("SELECT version FROM auth.users WHERE id = :i"), {"i": plain}
        ).scalar_one()
    assert version == 3  # once by the trigger, once by the statement itself


def test_a_stale_user_object_is_refused_after_a_raw_sql_update(engine: Engine) -> None:
    plain = _user(engine, "u@example.com")
    with Session(engine) as db:
        loaded = db.execute(select(User).where(User.id == plain)).scalar_one()
        _run(engine, "UPDATE auth.users SET last_login_at = now() WHERE id = :i", i=plain)
        loaded.email_verified = True
        with pytest.raises(ConcurrentUpdateError), optimistic_update(db):
            pass


def _conn_version(conn: Connection, user_id: str) -> int:
    return int(
        conn.execute(
            text("SELECT version FROM auth.users WHERE id = :i"), {"i": user_id}
        ).scalar_one()
    )


def test_orm_updates_increment_the_version_once(engine: Engine) -> None:
    plain = _user(engine, "u@example.com")
    with Session(engine) as db:
        loaded = db.execute(select(User).where(User.id == plain)).scalar_one()
        loaded.email_verified = True
        with optimistic_update(db):
            pass
        db.commit()
        assert loaded.version == 2
    with engine.connect() as conn:
        assert _conn_version(conn, plain) == 2


# --- row-level security: the guards see every admin, whoever asks ---------------------------


def test_guards_count_every_admin_whatever_the_callers_policies(
    engine: Engine, authmodels_fresh_database: URL
) -> None:
    a = _user(engine, "a@example.com", "admin")
    b = _user(engine, "b@example.com", "admin")
    runner = MigrationRunner(authmodels_fresh_database)
    service = f"svc_{uuid.uuid4().hex[:10]}"
    try:
        with application_role(runner, authmodels_fresh_database) as (role, app):
            runner.execute(f"CREATE ROLE {service} NOLOGIN")
            runner.execute("SELECT auth.grant_service_role(:r)", {"r": service})
            runner.execute(f"GRANT {service} TO {role}")
            # the application as user b sees only its own row; the designation is the owner's
            # (revision 0028), and exact
            with app.begin() as conn:
                rls.set_current_user(conn, b)
                assert conn.execute(text("SELECT count(*) FROM auth.users")).scalar_one() == 1
            with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
                conn.execute(text("SELECT auth.designate_master_admin()"))
            assert runner.execute("SELECT auth.designate_master_admin()::text") == [(a,)]
            # administration runs on the service path; the guard counts every admin
            with app.begin() as conn, rls.service_role(conn, service):
                error = _refused_on(conn, "UPDATE auth.users SET role = 'user' WHERE id = :i", a)
                assert _sqlstate(error) == MASTER
            with app.begin() as conn, rls.service_role(conn, service):
                conn.execute(text("SELECT auth.transfer_master_admin(:i)"), {"i": b})
                conn.execute(text("UPDATE auth.users SET role = 'user' WHERE id = :i"), {"i": a})
            with app.begin() as conn:
                rls.set_current_user(conn, b)
                error = _refused_on(
                    conn, "UPDATE auth.users SET deleted_at = now() WHERE id = :i", b
                )
                assert _sqlstate(error) == MASTER
    finally:
        if runner.execute("SELECT 1 FROM pg_roles WHERE rolname = :r", {"r": service}):
            drop_role(runner, service)
        runner.dispose()
    assert _active_admins(engine) == {b}


def _refused_on(conn: Connection, sql: str, user_id: str) -> DBAPIError:
    savepoint = conn.begin_nested()
    with pytest.raises(DBAPIError) as caught:
        conn.execute(text(sql), {"i": user_id})
    savepoint.rollback()
    return caught.value
