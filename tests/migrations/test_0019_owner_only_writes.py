"""0019: application and service roles read, but cannot write, retention policies and the audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import null_pool_engine

BEFORE = "0018_set_based_session_cascade"


@pytest.fixture
def roles(authmodels_migration_runner: MigrationRunner) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for role in made:
        authmodels_migration_runner.execute(f"DROP OWNED BY {role}")
        authmodels_migration_runner.execute(f"DROP ROLE {role}")


def _service_role(runner: MigrationRunner, roles: list[str]) -> str:
    role = f"svc_{uuid.uuid4().hex[:8]}"
    runner.execute(f"CREATE ROLE {role} LOGIN")
    roles.append(role)
    runner.execute("SELECT auth.grant_service_role(:r)", {"r": role})
    return role


def _as(url: URL, role: str, statement: str) -> int:
    engine = null_pool_engine(url.set(username=role))
    try:
        with engine.begin() as conn:
            return conn.execute(text(statement)).rowcount
    finally:
        engine.dispose()


WRITES = [
    "UPDATE auth.retention_policies SET keep_for = interval '0'",
    "INSERT INTO auth.retention_policies (name, table_name, expired, key_column) "
    "VALUES ('x', 'auth.quarantine', 'true AND \\:cutoff IS NOT NULL', 'id')",
    "DELETE FROM auth.audit_logs_archive",
    "UPDATE auth.audit_logs_archive SET details = '{}'",
    "DELETE FROM auth.audit_logs_p202401",
    "DELETE FROM auth.login_attempts_p202401",
]


def test_roles_granted_before_the_upgrade_lose_their_writes(
    authmodels_migration_runner: MigrationRunner,
    authmodels_empty_database: URL,
    roles: list[str],
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    for parent in ("audit_logs", "login_attempts"):
        runner.execute(
            f"SELECT auth.ensure_monthly_partitions('auth.{parent}', 0, '2024-01-01', '2024-01-01')"
        )
    runner.execute(
        "INSERT INTO auth.audit_logs (event_type, details, created_at) "
        "VALUES ('login', '{}', '2024-01-10')"
    )
    runner.execute("INSERT INTO auth.audit_logs_archive SELECT * FROM auth.audit_logs")
    early = _service_role(runner, roles)  # 0006's grants: writes on partitions and policies
    assert (
        _as(authmodels_empty_database, early, "DELETE FROM auth.audit_logs_archive WHERE false")
        == 0
    )

    runner.upgrade("head")
    late = _service_role(runner, roles)

    for role in (early, late):
        for statement in WRITES:
            with pytest.raises(ProgrammingError, match="permission denied"):
                _as(authmodels_empty_database, role, statement)
        # reading stays possible, and so does the rest of the service path
        assert _as(authmodels_empty_database, role, "SELECT * FROM auth.retention_policies") > 0
        assert _as(authmodels_empty_database, role, "SELECT * FROM auth.audit_logs_archive") == 1
        assert _as(authmodels_empty_database, role, "SELECT * FROM auth.audit_logs") == 1
        assert _as(authmodels_empty_database, role, "UPDATE auth.users SET email = email") == 0
    assert runner.execute("SELECT count(*) FROM auth.audit_logs_archive") == [(1,)]
    assert (
        runner.execute(
            "SELECT DISTINCT keep_for FROM auth.retention_policies WHERE keep_for = interval '0' "
            "AND name = 'sessions'"
        )
        == []
    )


def test_downgrade_restores_the_earlier_grant_functions(
    authmodels_migration_runner: MigrationRunner,
    authmodels_empty_database: URL,
    roles: list[str],
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("head")
    runner.downgrade(BEFORE)
    role = _service_role(runner, roles)
    assert (
        _as(
            authmodels_empty_database,
            role,
            "UPDATE auth.retention_policies SET keep_for = keep_for",
        )
        > 0
    )
