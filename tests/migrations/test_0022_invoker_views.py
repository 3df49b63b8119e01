"""0022: every view of schema auth applies the querying role's row-level security."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role
from tests.migrations.migration_helpers import previous

REVISION = "0022_invoker_views"
BEFORE = previous(REVISION)
FUTURE = "2999-01-01T00:00:00Z"


def _users(runner: MigrationRunner, *emails: str) -> dict[str, str]:
    """Users with an active session and an audit entry each: e-mail -> id."""
    ids: dict[str, str] = {}
    for email in emails:
        [(uid,)] = runner.execute(
            "INSERT INTO auth.users (email, password_hash, failed_login_attempts) "
            "VALUES (:e, 'x', 3) RETURNING id::text",
            {"e": email},
        )
        runner.execute(
            "INSERT INTO auth.sessions (user_id, token_hash, expires_at) "
            "VALUES (CAST(:u AS uuid), :h, :x)",
            {"u": uid, "h": b"\x01\x01k" + bytes(32) + email.encode()[:1], "x": FUTURE},
        )
        runner.execute(
            "INSERT INTO auth.audit_logs (user_id, event_type) VALUES (CAST(:u AS uuid), 'login')",
            {"u": uid},
        )
        ids[email] = str(uid)
    return ids


def _read(engine: Engine, view: str, column: str, user: str | None) -> list[Any]:
    with engine.begin() as conn:
        if user is not None:
            conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": user})
        return sorted(conn.execute(text(f"SELECT {column} FROM auth.{view}")).scalars().all())


def test_user_security_status_shows_a_user_their_own_row_only(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    users = _users(runner, "a@example.com", "b@example.com")
    a = users["a@example.com"]
    with application_role(runner, authmodels_empty_database) as (_, app):
        # at 0021: owner rights, every user's row whoever asks (the hole 0015 opened)
        assert _read(app, "user_security_status", "email", a) == sorted(users)
        assert _read(app, "user_security_status", "email", None) == sorted(users)

        runner.upgrade(REVISION)

        assert _read(app, "user_security_status", "email", a) == ["a@example.com"]
        assert _read(app, "user_security_status", "active_session_count", a) == [1]
        assert _read(app, "user_security_status", "email", None) == []
        assert _read(app, "active_sessions", "email", a) == ["a@example.com"]
        assert _read(app, "active_sessions", "email", None) == []
        # the owner still sees everyone
        assert [r[0] for r in runner.execute("SELECT count(*) FROM auth.user_security_status")] == [
            2
        ]

        runner.downgrade(BEFORE)
        assert runner.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'auth'::regnamespace "
            "AND relkind = 'v' ORDER BY 1"
        ) == [("active_sessions", ["security_invoker=true"]), ("user_security_status", None)]


def test_every_view_of_schema_auth_has_invoker_rights_at_head(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    # a view added by a downstream application before the upgrade is covered too
    runner.execute("CREATE VIEW auth.downstream_user_emails AS SELECT id, email FROM auth.users")
    runner.upgrade(REVISION)
    views = runner.execute(
        "SELECT relname, coalesce('security_invoker=true' = ANY(reloptions), false) "
        "FROM pg_class WHERE relnamespace = 'auth'::regnamespace AND relkind = 'v' ORDER BY 1"
    )
    assert {name for name, _ in views} >= {
        "active_sessions",
        "user_security_status",
        "downstream_user_emails",
    }
    assert all(invoker for _, invoker in views), views
    runner.execute("DROP VIEW auth.downstream_user_emails")


def test_a_role_granted_before_0007_reads_active_sessions_again(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0006_row_level_security")
    with application_role(runner, authmodels_empty_database) as (_, app):
        runner.upgrade(BEFORE)  # 0007 dropped and re-created the view, and its grants
        a = _users(runner, "a@example.com", "b@example.com")["a@example.com"]
        with pytest.raises(ProgrammingError, match="permission denied for view active_sessions"):
            _read(app, "active_sessions", "email", a)

        runner.upgrade(REVISION)

        assert _read(app, "active_sessions", "email", a) == ["a@example.com"]
        assert _read(app, "active_sessions", "email", None) == []
