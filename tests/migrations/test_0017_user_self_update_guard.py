"""0017: a user acting as themselves cannot raise their own privileges or clear their lockout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role


@pytest.fixture
def app(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> Iterator[tuple[MigrationRunner, Engine, str]]:
    runner = authmodels_migration_runner
    runner.upgrade("head")
    [(user,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash, failed_login_attempts, "
        "account_locked_until) VALUES ('self@example.com', 'x', 5, now() + interval '1 hour') "
        "RETURNING id::text"
    )
    with application_role(runner, authmodels_empty_database) as (_, engine):
        yield runner, engine, str(user)


def _as_user(engine: Engine, user: str, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": user})
        conn.execute(text(statement), {"u": user})


@pytest.mark.parametrize(
    "change",
    [
        "role = 'admin'",
        "email_verified = true",
        "failed_login_attempts = 0",
        "account_locked_until = NULL",
    ],
)
def test_a_user_cannot_raise_their_privileges_or_clear_their_lockout(
    app: tuple[MigrationRunner, Engine, str], change: str
) -> None:
    runner, engine, user = app
    before = runner.execute(
        "SELECT role, email_verified, failed_login_attempts, account_locked_until "
        "FROM auth.users WHERE id = CAST(:u AS uuid)",
        {"u": user},
    )
    with pytest.raises(ProgrammingError, match="cannot change their own role"):
        _as_user(engine, user, f"UPDATE auth.users SET {change} WHERE id = CAST(:u AS uuid)")
    after = runner.execute(
        "SELECT role, email_verified, failed_login_attempts, account_locked_until "
        "FROM auth.users WHERE id = CAST(:u AS uuid)",
        {"u": user},
    )
    assert after == before


def test_a_user_may_still_change_the_rest_of_their_row(
    app: tuple[MigrationRunner, Engine, str],
) -> None:
    runner, engine, user = app
    _as_user(
        engine, user, "UPDATE auth.users SET last_login_at = now() WHERE id = CAST(:u AS uuid)"
    )
    assert runner.execute(
        "SELECT last_login_at IS NOT NULL FROM auth.users WHERE id = CAST(:u AS uuid)",
        {"u": user},
    ) == [(True,)]


def test_the_service_path_and_the_owner_change_them(
    app: tuple[MigrationRunner, Engine, str],
) -> None:
    runner, _, user = app
    runner.execute(
        "UPDATE auth.users SET failed_login_attempts = 0, account_locked_until = NULL "
        "WHERE id = CAST(:u AS uuid)",
        {"u": user},
    )
    assert runner.execute(
        "SELECT failed_login_attempts, account_locked_until FROM auth.users "
        "WHERE id = CAST(:u AS uuid)",
        {"u": user},
    ) == [(0, None)]
