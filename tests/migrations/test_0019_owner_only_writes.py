"""0019: application and service roles read, but cannot write, retention policies and the audit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role

BEFORE = "0018_set_based_session_cascade"


@contextmanager
def service_role(runner: MigrationRunner, url: URL) -> Iterator[Engine]:
    """A role registered with ``auth.grant_service_role``, as the running revision defines it."""
    with application_role(runner, url) as (role, engine):
        runner.execute("SELECT auth.grant_service_role(:r)", {"r": role})
        yield engine


def _run(engine: Engine, statement: str) -> int:
    with engine.begin() as conn:
        return conn.execute(text(statement)).rowcount


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
    url = authmodels_empty_database
    with service_role(runner, url) as early:  # 0006's grants: writes on partitions and policies
        assert _run(early, "DELETE FROM auth.audit_logs_archive WHERE false") == 0
        runner.upgrade("head")
        with service_role(runner, url) as late:
            for engine in (early, late):
                for statement in WRITES:
                    with pytest.raises(ProgrammingError, match="permission denied"):
                        _run(engine, statement)
                # reading stays possible, and so does the rest of the service path
                assert _run(engine, "SELECT * FROM auth.retention_policies") > 0
                assert _run(engine, "SELECT * FROM auth.audit_logs_archive") == 1
                assert _run(engine, "SELECT * FROM auth.audit_logs") == 1
                assert _run(engine, "UPDATE auth.users SET email = email") == 0
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
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("head")
    runner.downgrade(BEFORE)
    with service_role(runner, authmodels_empty_database) as engine:
        assert _run(engine, "UPDATE auth.retention_policies SET keep_for = keep_for") > 0
