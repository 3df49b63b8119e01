"""Revision 0001 (baseline): the objects the DDL comparison cannot see exist and behave.

pytest-alembic's model comparison checks tables, columns, indexes and foreign keys; it is blind to
views, functions and triggers, so this module checks them on a database at ``0001_baseline``,
with real rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from authmodels.testing.migrations import MigrationRunner

REVISION = "0001_baseline"

SEED_004_INDEXES = {
    "ix_users_email",
    "ix_users_created_at",
    "ix_users_last_login_at",
    "ix_users_account_locked_until",
    "ix_sessions_user_id",
    "ix_sessions_token_hash",
    "ix_sessions_expires_at",
    "ix_sessions_last_activity_at",
    "ix_sessions_user_id_is_active_expires_at",
    "ix_password_reset_tokens_user_id",
    "ix_password_reset_tokens_token_hash",
    "ix_password_reset_tokens_expires_at",
    "ix_email_verification_tokens_user_id",
    "ix_email_verification_tokens_token_hash",
    "ix_audit_logs_user_id_created_at",
    "ix_audit_logs_event_type_created_at",
    "ix_audit_logs_created_at",
    "ix_audit_logs_ip_address_created_at",
    "ix_audit_logs_event_status_event_type",
    "ix_refresh_tokens_token_hash",
    "ix_refresh_tokens_session_id",
    "ix_refresh_tokens_expires_at",
}


@pytest.fixture
def baseline(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(REVISION)
    yield authmodels_migration_runner


def _user(runner: MigrationRunner, email: str, **columns: object) -> str:
    names = ["email", "password_hash", *columns]
    values = [":email", "'x'", *(f":{c}" for c in columns)]
    rows = runner.execute(
        f"INSERT INTO auth.users ({', '.join(names)}) VALUES ({', '.join(values)}) RETURNING id",
        {"email": email, **columns},
    )
    return str(rows[0][0])


def _session(runner: MigrationRunner, user_id: str, expires: str, *, active: bool = True) -> str:
    rows = runner.execute(
        "INSERT INTO auth.sessions (user_id, token_hash, expires_at, is_active) "
        f"VALUES (:u, md5(random()::text), now() + interval '{expires}', :a) RETURNING id",
        {"u": user_id, "a": active},
    )
    return str(rows[0][0])


def test_baseline_has_seed_004s_indexes_views_functions_and_trigger(
    baseline: MigrationRunner,
) -> None:
    indexes = {
        r[0] for r in baseline.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'auth'")
    }
    assert indexes >= SEED_004_INDEXES
    assert len(SEED_004_INDEXES) == 22
    views = {
        r[0] for r in baseline.execute("SELECT viewname FROM pg_views WHERE schemaname = 'auth'")
    }
    assert views == {"active_sessions", "user_security_status"}
    functions = {
        r[0]
        for r in baseline.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'auth'::regnamespace"
        )
    }
    assert functions == {
        "cleanup_expired_sessions",
        "cleanup_expired_tokens",
        "update_updated_at_column",
    }
    triggers = baseline.execute(
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgrelid = 'auth.users'::regclass"
    )
    assert triggers == [("auth.users", "update_users_updated_at")]


def test_cleanup_expired_sessions_deactivates_only_expired_active_sessions(
    baseline: MigrationRunner,
) -> None:
    user = _user(baseline, "a@example.com")
    expired = _session(baseline, user, "-1 minute")
    live = _session(baseline, user, "1 hour")
    already_inactive = _session(baseline, user, "-1 hour", active=False)

    assert baseline.execute("SELECT auth.cleanup_expired_sessions()") == [(1,)]

    states = dict(baseline.execute("SELECT id::text, is_active FROM auth.sessions"))
    assert states == {expired: False, live: True, already_inactive: False}
    assert baseline.execute("SELECT auth.cleanup_expired_sessions()") == [(0,)]


def test_cleanup_expired_tokens_deletes_tokens_past_their_retention(
    baseline: MigrationRunner,
) -> None:
    user = _user(baseline, "a@example.com")
    session = _session(baseline, user, "1 hour")
    for age in ("8 days", "1 day"):
        baseline.execute(
            "INSERT INTO auth.password_reset_tokens (user_id, token_hash, expires_at) "
            f"VALUES (:u, 'reset-{age}', now() - interval '{age}')",
            {"u": user},
        )
        baseline.execute(
            "INSERT INTO auth.email_verification_tokens (user_id, email, token_hash, expires_at) "
            f"VALUES (:u, 'a@example.com', 'verify-{age}', now() - interval '{age}')",
            {"u": user},
        )
    baseline.execute(
        "INSERT INTO auth.password_reset_tokens (user_id, token_hash, expires_at, used_at) "
        "VALUES (:u, 'reset-used', now() + interval '1 hour', now() - interval '8 days')",
        {"u": user},
    )
    for age in ("31 days", "10 days"):
        baseline.execute(
            "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
            f"VALUES (:u, :s, 'refresh-{age}', now() - interval '{age}')",
            {"u": user, "s": session},
        )

    assert baseline.execute("SELECT auth.cleanup_expired_tokens()") == [(4,)]

    left = {
        r[0]
        for r in baseline.execute(
            "SELECT token_hash FROM auth.password_reset_tokens UNION ALL "
            "SELECT token_hash FROM auth.email_verification_tokens UNION ALL "
            "SELECT token_hash FROM auth.refresh_tokens"
        )
    }
    assert left == {"reset-1 day", "verify-1 day", "refresh-10 days"}


def test_update_trigger_bumps_users_updated_at(baseline: MigrationRunner) -> None:
    user = _user(baseline, "a@example.com")
    with baseline.connect() as conn:
        # replica mode skips triggers, so the old timestamp can be written as it is
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text("UPDATE auth.users SET updated_at = '2000-01-01' WHERE id = :u"), {"u": user}
        )

    baseline.execute("UPDATE auth.users SET last_login_at = now() WHERE id = :u", {"u": user})

    [(updated_at_is_recent,)] = baseline.execute(
        "SELECT updated_at > now() - interval '1 minute' FROM auth.users WHERE id = :u",
        {"u": user},
    )
    assert updated_at_is_recent


def test_active_sessions_lists_live_sessions_of_live_users(baseline: MigrationRunner) -> None:
    alice = _user(baseline, "alice@example.com")
    gone = _user(baseline, "gone@example.com", deleted_at="2020-01-01T00:00:00Z")
    live = _session(baseline, alice, "1 hour")
    _session(baseline, alice, "-1 minute")
    _session(baseline, alice, "1 hour", active=False)
    _session(baseline, gone, "1 hour")

    rows = baseline.execute("SELECT session_id::text, email FROM auth.active_sessions")

    assert rows == [(live, "alice@example.com")]


def test_user_security_status_summarises_lockout_sessions_and_last_event(
    baseline: MigrationRunner,
) -> None:
    locked = _user(
        baseline,
        "locked@example.com",
        failed_login_attempts=5,
        account_locked_until="2999-01-01T00:00:00Z",
    )
    fine = _user(baseline, "fine@example.com")
    _user(baseline, "gone@example.com", deleted_at="2020-01-01T00:00:00Z")
    _session(baseline, fine, "1 hour")
    _session(baseline, fine, "2 hours")
    _session(baseline, fine, "-1 hour")
    baseline.execute(
        "INSERT INTO auth.audit_logs (user_id, event_type, event_status, created_at) VALUES "
        "(:u, 'login', 'failure', '2024-01-01T00:00:00Z'), "
        "(:u, 'account_locked', 'success', '2024-01-02T00:00:00Z')",
        {"u": locked},
    )

    rows = {
        r[0]: r[1:]
        for r in baseline.execute(
            "SELECT email, failed_login_attempts, is_locked, active_session_count, "
            "to_char(last_security_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
            "FROM auth.user_security_status"
        )
    }

    assert rows == {
        "locked@example.com": (5, True, 0, "2024-01-02"),
        "fine@example.com": (0, False, 2, None),
    }
