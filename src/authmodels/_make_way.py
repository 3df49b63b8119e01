"""Autovacuum out of the way of a migration's locks, before the application's queries queue.

A revision's DDL (``ALTER TABLE``, ``CREATE TABLE ... REFERENCES``, ``LOCK TABLE``, a trigger)
takes a lock that conflicts with the ``SHARE UPDATE EXCLUSIVE`` lock of an autovacuum worker
busy on the same table -- likely right after a backfill rewrote it. The DDL then waits, and
every read and write of the table queues behind the waiting DDL. PostgreSQL cancels the
autovacuum worker itself, but only after ``deadlock_timeout`` (1 s by default): for that second
the application waits (``benchmarks/bench_migrations.py`` saw 0.97 s and 0.98 s of it at 1M
rows, in 0009 and 0026).

:func:`make_way_for_ddl` does the same cancellation before each such statement, so the DDL gets
its lock at once and nothing queues. It cancels only what PostgreSQL would cancel: workers on a
table of schema ``auth`` that are not preventing transaction-id wraparound (those PostgreSQL
never cancels). Autovacuum comes back to the table at its next round. It needs a role that may
signal autovacuum workers: a superuser, or (PostgreSQL 18) a member of
``pg_signal_autovacuum_worker``; for another role nothing changes. ``-x cancel_autovacuum=false``
turns it off.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event, text

__all__ = ["STRONG_LOCK_DDL", "make_way_for_ddl", "may_cancel_autovacuum"]

_log = logging.getLogger("authmodels.migrations")

#: Statements whose locks conflict with autovacuum's and with the application's reads or writes
#: (after any leading comment lines, as squawk waivers are written).
STRONG_LOCK_DDL = re.compile(
    r"^\s*(?:--[^\n]*\n\s*)*"
    r"(?:ALTER\s+TABLE|CREATE\s+(?:UNLOGGED\s+)?TABLE|LOCK\s+TABLE|DROP\s+TABLE"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER|DROP\s+TRIGGER"
    r"|ALTER\s+INDEX|(?:CREATE\s+(?:UNIQUE\s+)?|DROP\s+)INDEX(?!\s+CONCURRENTLY))\b",
    re.IGNORECASE,
)

_CANCEL = """
SELECT count(pg_cancel_backend(a.pid))
  FROM pg_stat_activity AS a
 WHERE a.backend_type = 'autovacuum worker'
   AND a.query NOT LIKE '%to prevent wraparound%'
   AND EXISTS (
        SELECT 1 FROM pg_locks AS l
          JOIN pg_class AS c ON c.oid = l.relation
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE l.pid = a.pid AND l.locktype = 'relation' AND n.nspname = 'auth')
"""

_MAY_CANCEL = """
SELECT rolsuper
    OR (to_regrole('pg_signal_autovacuum_worker') IS NOT NULL
        AND pg_has_role(current_user, to_regrole('pg_signal_autovacuum_worker'), 'MEMBER'))
  FROM pg_roles WHERE rolname = current_user
"""


def may_cancel_autovacuum(connection: Connection) -> bool:
    """Whether the connection's role may cancel autovacuum workers."""
    return bool(connection.execute(text(_MAY_CANCEL)).scalar())


@contextmanager
def make_way_for_ddl(connection: Connection, *, enabled: bool = True) -> Iterator[None]:
    """While the block runs, cancel the autovacuum workers on tables of schema ``auth`` before
    each statement of :data:`STRONG_LOCK_DDL` that names a table of the schema (see the module
    docstring). Nothing when not ``enabled`` (the caller checked :func:`may_cancel_autovacuum`
    and the operator's choice)."""
    if not enabled:
        yield
        return

    def before(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if "auth." in statement and STRONG_LOCK_DDL.match(statement):
            # on the driver's connection: a statement of its own, outside SQLAlchemy's events
            cancelled = cursor.connection.execute(_CANCEL).fetchone()[0]
            if cancelled:
                _log.info(
                    "cancelled %d autovacuum worker(s) on schema auth before: %s",
                    cancelled,
                    " ".join(statement.split())[:80],
                )

    event.listen(connection, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(connection, "before_cursor_execute", before)
