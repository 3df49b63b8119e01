"""Small helpers the per-revision data tests share: seed rows, read a table's shape, roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, pool
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.testing.migrations import MigrationRunner


def insert(runner: MigrationRunner, table: str, **values: Any) -> str:
    """Insert one row into ``auth.<table>`` with raw SQL; its id as text."""
    columns = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    [(row_id,)] = runner.execute(
        f"INSERT INTO auth.{table} ({columns}) VALUES ({params}) RETURNING id::text", values
    )
    return str(row_id)


def columns(runner: MigrationRunner, *tables: str) -> list[tuple[Any, ...]]:
    """(table, column, type, nullable, default) of ``tables``, sorted."""
    return runner.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = ANY(:t) "
        "ORDER BY 1, 2",
        {"t": list(tables)},
    )


def indexes(runner: MigrationRunner) -> list[tuple[Any, ...]]:
    """(name, definition) of every index in schema ``auth``, sorted."""
    return runner.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'auth' ORDER BY 1"
    )


def constraints(runner: MigrationRunner, *tables: str) -> list[tuple[Any, ...]]:
    """(table, name, definition, validated) of the constraints of ``tables``, sorted.

    NOT NULL constraints (named ones exist since PostgreSQL 18) are left out: ``columns`` shows
    nullability.
    """
    return runner.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
        "FROM pg_constraint WHERE conrelid = ANY(CAST(:t AS regclass[])) AND contype <> 'n' "
        "ORDER BY 1, 2",
        {"t": [f"auth.{t}" for t in tables]},
    )


def quarantined(runner: MigrationRunner, table: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Quarantined rows of ``table``: original id -> (reason, revision, row_data)."""
    return {
        row[0]: (row[1], row[2], row[3])
        for row in runner.execute(
            "SELECT row_data->>'id', reason, revision, row_data FROM auth.quarantine "
            "WHERE source_table = :t",
            {"t": table},
        )
    }


def count(runner: MigrationRunner, table: str) -> int:
    """Rows in ``auth.<table>``."""
    [(n,)] = runner.execute(f"SELECT count(*) FROM auth.{table}")
    return int(n)


@contextmanager
def application_role(runner: MigrationRunner, url: URL) -> Iterator[tuple[str, Engine]]:
    """A login role registered with ``auth.grant_app_role``, and an Engine connected as it.

    The role is neither superuser nor the tables' owner, so row-level security applies to it
    as it does to a real application. It is dropped at the end of the block.
    """
    role = f"app_{uuid.uuid4().hex[:10]}"
    runner.execute(f"CREATE ROLE {role} LOGIN")
    engine = create_db_engine(url.set(username=role), poolclass=pool.NullPool)
    try:
        runner.execute("SELECT auth.grant_app_role(:r)", {"r": role})
        yield role, engine
    finally:
        engine.dispose()
        drop_role(runner, role)


def drop_role(runner: MigrationRunner, role: str) -> None:
    """Remove ``role``'s service policies, privileges and the role itself."""
    if runner.execute("SELECT to_regprocedure('auth.revoke_service_role(text)')") != [(None,)]:
        runner.execute("SELECT auth.revoke_service_role(:r)", {"r": role})
    runner.execute(f"DROP OWNED BY {role}")
    runner.execute(f"DROP ROLE {role}")
