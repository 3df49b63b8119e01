"""Helpers shared by the per-revision data tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError

from authmodels.testing.migrations import MigrationRunner, revision_ids


def previous(revision: str) -> str:
    """The revision just before ``revision`` in the chain."""
    ids = revision_ids()
    return ids[ids.index(revision) - 1]


def insert(runner: MigrationRunner, table: str, **values: Any) -> str:
    """Insert one row into ``auth.<table>`` and return its id as text."""
    columns = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    [(row_id,)] = runner.execute(
        f"INSERT INTO auth.{table} ({columns}) VALUES ({params}) RETURNING id::text", values
    )
    return str(row_id)


def user(runner: MigrationRunner, email: str, **values: Any) -> str:
    """Insert a user with a placeholder password hash; its id."""
    return insert(runner, "users", email=email, password_hash="x", **values)


def columns(runner: MigrationRunner, *tables: str) -> list[tuple[Any, ...]]:
    """(table, column, type, nullable, default) of ``tables`` in schema auth."""
    return runner.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = ANY(:t) "
        "ORDER BY 1, 2",
        {"t": list(tables)},
    )


def schema_objects(runner: MigrationRunner) -> list[tuple[Any, ...]]:
    """Constraints, indexes, functions and triggers of schema auth (for before/after checks)."""
    return runner.execute(
        """
        SELECT 'constraint', conrelid::regclass::text || ':' || conname || ':'
                || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'auth'::regnamespace
        UNION ALL
        SELECT 'index', indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'auth'
        UNION ALL
        SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
          FROM pg_proc p WHERE p.pronamespace = 'auth'::regnamespace
        UNION ALL
        SELECT 'trigger', tgrelid::regclass::text || ':' || tgname
          FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'auth'::regnamespace)
        UNION ALL
        SELECT 'type', t.typname FROM pg_type t
         WHERE t.typnamespace = 'auth'::regnamespace AND t.typtype = 'e'
        ORDER BY 1, 2
        """
    )


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error raised through SQLAlchemy (or psycopg)."""
    orig = error.orig if isinstance(error, DBAPIError) else error
    return getattr(orig, "sqlstate", None)
