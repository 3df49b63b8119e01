"""0030: the report's queries answer on the rows a database already holds, their indexes are
built valid, a report role reads the aggregates; the downgrade removes them all and the upgrade
runs again."""

from __future__ import annotations

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.migration_helpers import previous, user

REVISION = "0030_security_reports"
BEFORE = previous(REVISION)
INDEXES = (
    "ix_sessions_live_user_id",
    "ix_refresh_tokens_live_expires_at",
    "ix_access_tokens_live_expires_at",
    "ix_security_events_created_at_summary",
    "ix_sessions_created_at",
    "ix_users_legacy_password_hash",
)


def _objects(runner: MigrationRunner) -> tuple[int, int, list[str]]:
    [(invoker, definer)] = runner.execute(
        "SELECT count(*) FILTER (WHERE NOT prosecdef), count(*) FILTER (WHERE prosecdef) "
        "FROM pg_proc WHERE pronamespace = 'auth'::regnamespace AND proname IN ("
        "'brute_force', 'report_brute_force', 'credential_stuffing', "
        "'report_credential_stuffing', 'grant_report_role', 'month_is_attached')"
    )
    valid = [
        name
        for (name,) in runner.execute(
            "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE i.indisvalid AND c.relname = ANY(:names) ORDER BY 1",
            {"names": list(INDEXES)},
        )
    ]
    [(replaced,)] = runner.execute(
        "SELECT to_regclass('auth.ix_security_events_created_at_severity') IS NOT NULL"
    )
    return invoker, definer, valid + ["(0010's index)"] * replaced


def test_upgrade_answers_on_existing_rows_and_downgrade_removes_everything(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    ada = user(runner, "ada@example.com")
    runner.execute(
        "INSERT INTO auth.login_attempts (user_id, identifier_hash, ip_hash, attempt_result, "
        "failure_reason) SELECT CAST(:u AS uuid), '\\x01026b31'::bytea || sha256(int8send(g)), "
        "'\\x01026b31'::bytea || sha256('ip'::bytea), 'failed_password', 'test' "
        "FROM generate_series(1, 101) AS g",
        {"u": ada},
    )
    runner.execute("CREATE ROLE report_0030_test")
    try:
        runner.upgrade(REVISION)
        assert _objects(runner) == (4, 2, sorted(INDEXES))
        [(failed, detected)] = runner.execute(
            "SELECT failed_attempts, detected FROM auth.brute_force()"
        )
        assert (failed, detected) == (101, True)
        [(sources, most)] = runner.execute(
            "SELECT sources, most_identifiers FROM auth.report_credential_stuffing()"
        )
        assert (sources, most) == (1, 101)
        runner.execute("SELECT auth.grant_report_role('report_0030_test')")
        [(granted,)] = runner.execute(
            "SELECT has_function_privilege('report_0030_test', "
            "'auth.report_brute_force(interval, integer)', 'EXECUTE')"
        )
        assert granted

        runner.downgrade(BEFORE)
        assert _objects(runner) == (0, 0, ["(0010's index)"])
        [(rows,)] = runner.execute("SELECT count(*) FROM auth.login_attempts")
        assert rows == 101

        runner.upgrade(REVISION)
        assert _objects(runner) == (4, 2, sorted(INDEXES))
    finally:
        runner.execute("DROP OWNED BY report_0030_test")
        runner.execute("DROP ROLE report_0030_test")


def test_the_rendered_sql_builds_its_indexes_concurrently(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    rendered = authmodels_migration_runner.sql(f"{BEFORE}:{REVISION}")
    for name in INDEXES:
        assert f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}" in rendered
    assert "REVOKE ALL ON FUNCTION auth.report_brute_force(interval, integer) FROM PUBLIC" in (
        rendered
    )
