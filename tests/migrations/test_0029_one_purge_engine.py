"""0029: one purge engine. The SQL purge does what it did, through the functions the Python purge
calls too; both are the owner's; a library that needs them refuses an older database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels import partitions
from authmodels.errors import ConfigurationError
from authmodels.retention import purge
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role
from tests.migrations.migration_helpers import previous

REVISION = "0029_one_purge_engine"
BEFORE = previous(REVISION)
NEW_FUNCTIONS = ("auth.purge_batch", "auth.drop_month_partition")


def _seed(runner: MigrationRunner) -> None:
    """Expired and live sessions with their refresh tokens; two months of 2024 of audit entries
    (archived by their policy) and login attempts; audit entries of 2023 in the default
    partition."""
    runner.execute(
        "SELECT auth.ensure_monthly_partitions(CAST(t AS regclass), 0, '2024-01-01', '2024-02-01') "
        "FROM unnest(ARRAY['auth.audit_logs', 'auth.login_attempts']) AS t"
    )
    runner.execute(
        "INSERT INTO auth.users (email, password_hash) "
        "SELECT 'u' || g || '@example.test', 'x' FROM generate_series(1, 3) g"
    )
    for ends in ("now() - interval '60 days'", "now() + interval '1 day'"):
        runner.execute(
            "WITH made AS (INSERT INTO auth.sessions (user_id, token_hash, created_at, expires_at) "
            "SELECT u.id, decode('01026b31' || md5(u.id::text || g) || md5(g::text), 'hex'), "
            f"{ends} - interval '1 day', {ends} "
            "FROM auth.users AS u, generate_series(1, 4) AS g "
            "RETURNING id, user_id, created_at, expires_at) "
            "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, created_at, "
            "expires_at) SELECT user_id, id, decode('01026b31' || md5(id::text) || "
            "md5(id::text), 'hex'), created_at, expires_at FROM made"
        )
    for start, count in (("2024-01-01", 7), ("2024-02-01", 5), ("2023-06-01", 3)):
        runner.execute(
            "INSERT INTO auth.audit_logs (event_type, details, created_at) "
            "SELECT 'login', jsonb_build_object('n', g), CAST(:m AS timestamptz) "
            "+ g * interval '1 hour' FROM generate_series(1, :n) g",
            {"m": start, "n": count},
        )
        runner.execute(
            "INSERT INTO auth.login_attempts (identifier_hash, attempt_result, created_at) "
            "SELECT decode('01026b31' || md5(g::text) || md5(g::text), 'hex'), 'failed_password', "
            "CAST(:m AS timestamptz) "
            "+ g * interval '1 hour' FROM generate_series(1, :n) g",
            {"m": start, "n": count},
        )


def _state(conn: Connection) -> dict[str, Any]:
    """What a purge leaves: the rows of every purged table, the partitions, the archive."""
    state: dict[str, Any] = {
        table: conn.execute(text(f"SELECT count(*) FROM auth.{table}")).scalar_one()
        for table in ("sessions", "refresh_tokens", "audit_logs", "login_attempts")
    }
    state["partitions"] = conn.execute(
        text(
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits AS i "
            "JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent IN ('auth.audit_logs'::regclass, 'auth.login_attempts'::regclass)"
        )
    ).scalar_one()
    state["archive"] = conn.execute(
        text(
            "SELECT array_agg((details->>'n')::int || '@' || created_at::date "
            "ORDER BY created_at) FROM auth.audit_logs_archive"
        )
    ).scalar_one()
    return state


def _sql_purge_twice(runner: MigrationRunner) -> list[Any]:
    """Two calls of the SQL purge in one transaction (rolled back): each result, the state."""
    with runner.engine.connect() as conn:
        calls = [
            conn.execute(text("SELECT table_name, deleted FROM auth.purge_expired_data(5)")).all()
            for _ in range(2)
        ]
        state = _state(conn)
        conn.rollback()
    return [calls, state]


def test_the_sql_purge_returns_and_removes_what_it_did_before(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    _seed(runner)
    before = _sql_purge_twice(runner)
    # the seed gives every branch work: batches of rows, of the default partition, months
    calls = dict(before[0][0])
    assert calls["sessions"] == 5 and calls["audit_logs"] == 3 + 7
    assert calls["login_attempts"] == 3 + 7

    runner.upgrade(REVISION)

    assert _sql_purge_twice(runner) == before


def test_the_python_purge_needs_the_engine_and_refuses_an_older_database_first(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    _seed(runner)
    with runner.engine.connect() as conn:
        seeded = _state(conn)

    with pytest.raises(ConfigurationError, match="below revision 0029_one_purge_engine"):
        purge(runner.engine)
    with pytest.raises(ConfigurationError, match="below revision 0029_one_purge_engine"):
        partitions.drop_months(
            runner.engine, "auth.login_attempts", before=datetime(2024, 3, 1, tzinfo=UTC)
        )
    with runner.engine.connect() as conn:
        assert _state(conn) == seeded
    assert purge(runner.engine, dry_run=True).rows > 0  # a dry run changes nothing: it may

    runner.upgrade(REVISION)

    report = {p.name: p.rows for p in purge(runner.engine, batch_size=2).policies}
    assert (report["sessions"], report["audit_logs"], report["login_attempts"]) == (12, 15, 15)
    with runner.engine.connect() as conn:
        assert _state(conn)["audit_logs"] == 0


def test_the_engine_is_the_owners(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    with application_role(runner, authmodels_empty_database) as (role, app):
        for function in NEW_FUNCTIONS:
            [(allowed,)] = runner.execute(
                "SELECT has_function_privilege(:r, p.oid, 'EXECUTE') FROM pg_proc AS p "
                "WHERE p.oid = CAST(CAST(:f AS regproc) AS oid)",
                {"r": role, "f": function},
            )
            assert allowed is False, function
        with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
            conn.execute(
                text(
                    "SELECT auth.purge_batch('auth.sessions', 'id', 'expires_at < :' || "
                    "'cutoff', now(), 10)"
                )
            )


def test_downgrade_puts_0027s_function_back_and_drops_the_engine(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    definition = "SELECT pg_get_functiondef('auth.purge_expired_data(integer)'::regprocedure)"
    [(before,)] = runner.execute(definition)

    runner.upgrade(REVISION)
    assert runner.execute(definition) != [(before,)]
    runner.downgrade(BEFORE)

    assert runner.execute(definition) == [(before,)]
    for function in NEW_FUNCTIONS:
        assert runner.execute("SELECT to_regproc(:f)", {"f": function}) == [(None,)]
