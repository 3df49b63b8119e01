"""0024: a user cannot create their own account privileged, nor write audit entries as another."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role
from tests.migrations.migration_helpers import previous, sqlstate, user

REVISION = "0024_insert_guards"
BEFORE = previous(REVISION)

#: Privileged values a user might give their own new row (each refused from 0024 on).
PRIVILEGED: list[dict[str, Any]] = [
    {"role": "admin"},
    {"role": "admin", "is_master_admin": True},
    {"email_verified": True},
    {"email_verified_at": "2025-01-01T00:00:00Z"},
    {"failed_login_attempts": 5},
    {"account_locked_until": "2025-01-01T00:00:00Z"},
]


def _as_user(engine: Engine, uid: str, statement: str, params: dict[str, Any]) -> list[Any]:
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": uid})
        result = conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


def _insert_self(engine: Engine, uid: str, values: dict[str, Any]) -> None:
    columns = ", ".join(["id", "email", "password_hash", *values])
    params = ", ".join([":id", ":email", "'x'", *(f":{c}" for c in values)])
    _as_user(
        engine,
        uid,
        f"INSERT INTO auth.users ({columns}) VALUES ({params})",
        {"id": uid, "email": f"{uid[:8]}@example.com", **values},
    )


def _refused(call: Any) -> DBAPIError:
    with pytest.raises(DBAPIError) as refused:
        call()
    assert sqlstate(refused.value) == "42501", refused.value
    return refused.value


@pytest.fixture
def app(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> Iterator[tuple[MigrationRunner, Engine]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    with application_role(runner, authmodels_empty_database) as (_, engine):
        yield runner, engine


def test_a_user_creating_their_own_account_gets_the_defaults_of_the_guarded_columns(
    app: tuple[MigrationRunner, Engine],
) -> None:
    runner, engine = app
    hole = str(uuid.uuid4())
    _insert_self(engine, hole, {"role": "admin", "email_verified": True})  # accepted at 0023
    assert runner.execute(
        "SELECT role::text, email_verified FROM auth.users WHERE id = CAST(:u AS uuid)",
        {"u": hole},
    ) == [("admin", True)]

    runner.upgrade(REVISION)

    for values in PRIVILEGED:
        uid = str(uuid.uuid4())
        error = _refused(lambda uid=uid, values=values: _insert_self(engine, uid, values))
        assert "cannot create their own account with a role" in str(error)
        assert runner.execute(
            "SELECT count(*) FROM auth.users WHERE id = CAST(:u AS uuid)", {"u": uid}
        ) == [(0,)]
    plain = str(uuid.uuid4())
    _insert_self(engine, plain, {"role": "user", "failed_login_attempts": 0})
    # the service path (no user named) and the owner create accounts as before
    admin = user(runner, "admin@example.com", role="admin", email_verified=True)
    assert runner.execute(
        "SELECT role::text FROM auth.users WHERE id IN (CAST(:a AS uuid), CAST(:p AS uuid)) "
        "ORDER BY 1",
        {"a": admin, "p": plain},
    ) == [("admin",), ("user",)]

    runner.downgrade(BEFORE)
    _insert_self(engine, str(uuid.uuid4()), {"role": "admin"})  # the downgrade removes the guard


def _audit(engine: Engine, uid: str, actor: str | None, created_at: str | None = None) -> None:
    _as_user(
        engine,
        uid,
        "INSERT INTO auth.audit_logs (user_id, actor_user_id, event_type, created_at) "
        "VALUES (CAST(:u AS uuid), CAST(:a AS uuid), 'login', coalesce(CAST(:t AS timestamptz), "
        "now()))",
        {"u": uid, "a": actor, "t": created_at},
    )


def _actors(runner: MigrationRunner, user_id: str) -> Counter[str | None]:
    return Counter(
        r[0]
        for r in runner.execute(
            "SELECT actor_user_id::text FROM auth.audit_logs WHERE user_id = CAST(:u AS uuid)",
            {"u": user_id},
        )
    )


def test_an_audit_entry_written_as_a_user_has_that_user_as_its_actor_in_every_month(
    app: tuple[MigrationRunner, Engine],
) -> None:
    runner, engine = app
    a, b = user(runner, "a@example.com"), user(runner, "b@example.com")
    _audit(engine, a, actor=b)  # accepted at 0023
    runner.upgrade(REVISION)
    # a month created after the upgrade gets the trigger too
    runner.execute(
        "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2031-05-01', '2031-05-01')"
    )
    assert (
        runner.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'auth.audit_logs'::regclass AND NOT EXISTS ("
            "SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'audit_logs_actor')"
        )
        == []
    )

    for month in (None, "2031-05-05T10:00:00Z"):
        error = _refused(lambda month=month: _audit(engine, a, actor=b, created_at=month))
        assert "cannot name another user as its actor" in str(error)
        _audit(engine, a, actor=None, created_at=month)  # filled in
        _audit(engine, a, actor=a, created_at=month)
    assert _actors(runner, a) == Counter({a: 4, b: 1})  # b: the entry written before the upgrade
    # with no user named (the service path, the owner), any actor may be recorded
    runner.execute(
        "INSERT INTO auth.audit_logs (user_id, actor_user_id, event_type) "
        "VALUES (CAST(:b AS uuid), CAST(:a AS uuid), 'role_changed')",
        {"a": a, "b": b},
    )
    assert _actors(runner, b) == Counter({a: 1})


def test_a_device_key_event_written_as_a_user_cannot_name_another_actor(
    app: tuple[MigrationRunner, Engine],
) -> None:
    runner, engine = app
    a, b = user(runner, "a@example.com"), user(runner, "b@example.com")
    runner.upgrade(REVISION)
    insert = (
        "INSERT INTO auth.device_key_events (event_type, user_id, actor_user_id, reason) "
        "VALUES ('exchange_failed', CAST(:u AS uuid), CAST(:a AS uuid), 'bad mac')"
    )
    _refused(lambda: _as_user(engine, a, insert, {"u": a, "a": b}))
    _as_user(engine, a, insert, {"u": a, "a": a})
    _as_user(engine, a, insert, {"u": a, "a": None})  # no actor stays no actor
    assert Counter(
        r[0] for r in runner.execute("SELECT actor_user_id::text FROM auth.device_key_events")
    ) == Counter({a: 1, None: 1})
