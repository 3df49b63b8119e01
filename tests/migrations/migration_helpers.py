"""Helpers of the data tests of revisions 0009-0013 (``helpers`` has the shared basics)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError

from authmodels.testing.migrations import MigrationRunner, revision_ids
from tests.migrations.helpers import insert


def previous(revision: str) -> str:
    """The revision just before ``revision`` in the chain."""
    ids = revision_ids()
    return ids[ids.index(revision) - 1]


def user(runner: MigrationRunner, email: str, **values: Any) -> str:
    """Insert a user with a placeholder password hash; its id."""
    return insert(runner, "users", email=email, password_hash="x", **values)


_COLUMNS = """
        SELECT 'column', c.table_name || '.' || c.column_name || ':' || c.data_type
                || ':' || c.is_nullable || ':' || coalesce(c.column_default, '')
          FROM information_schema.columns c WHERE c.table_schema = 'auth'
        UNION ALL"""


def schema_objects(runner: MigrationRunner, *, with_columns: bool = False) -> list[tuple[Any, ...]]:
    """Constraints, indexes, functions, triggers, ENUMs and policies of schema auth.

    With ``with_columns``, every column too (type, nullability, default).
    """
    return runner.execute(
        (_COLUMNS if with_columns else "")
        + """
        SELECT 'constraint', conrelid::regclass::text || ':' || conname || ':'
                || pg_get_constraintdef(oid) || ':' || convalidated
          FROM pg_constraint WHERE connamespace = 'auth'::regnamespace AND contype <> 'n'
        UNION ALL
        -- an index of a partition by the partition and the parent index it belongs to: its own
        -- name is PostgreSQL's (or a rebuild's) choice, not the schema's
        SELECT 'index', CASE WHEN t.relispartition
               THEN t.relname || ' index of ' || coalesce(parent.relname, '(none)') || ': '
                    || regexp_replace(ix.indexdef, '^CREATE (UNIQUE )?INDEX \\S+ ',
                                      'CREATE \\1INDEX ')
               ELSE ix.indexname || ':' || ix.indexdef END
          FROM pg_indexes AS ix
          JOIN pg_class AS t ON t.relnamespace = 'auth'::regnamespace AND t.relname = ix.tablename
          JOIN pg_class AS i ON i.relnamespace = 'auth'::regnamespace AND i.relname = ix.indexname
          LEFT JOIN pg_inherits AS h ON h.inhrelid = i.oid
          LEFT JOIN pg_class AS parent ON parent.oid = h.inhparent
         WHERE ix.schemaname = 'auth'
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
        UNION ALL
        SELECT 'policy', tablename || ':' || policyname FROM pg_policies WHERE schemaname = 'auth'
        ORDER BY 1, 2
        """
    )


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error raised through SQLAlchemy (or psycopg)."""
    orig = error.orig if isinstance(error, DBAPIError) else error
    return getattr(orig, "sqlstate", None)
