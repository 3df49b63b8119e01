"""Monthly range partitions of the append-only logs (``audit_logs``, ``login_attempts``).

Revision ``0015_partitioned_logs`` turns those tables into tables partitioned by month of
``created_at``; partition ``auth.audit_logs_p202611`` holds November 2026 (UTC). Partitions are
created ahead of time by the SQL function ``auth.ensure_monthly_partitions(parent, months_ahead)``
(which :func:`ensure` and ``authmodels partitions ensure`` call, and which pg_cron can call). A row
whose month has no partition is refused with PostgreSQL's "no partition of relation ... found for
row" error: there is deliberately no DEFAULT partition, because one would make every later
``DETACH ... CONCURRENTLY`` impossible and hide a missed ``ensure``.

Retention of a partitioned table removes whole months (:func:`drop_months`): ``ALTER TABLE ...
DETACH PARTITION ... CONCURRENTLY`` (no lock that blocks readers or writers of the other months),
then, in one transaction, an optional copy to the archive table and ``DROP TABLE``. A run killed
between the steps is finished by the next one (a pending detach is finalized, a detached month is
archived and dropped).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from authmodels.errors import ConfigurationError

_log = logging.getLogger(__name__)

#: The partitioned tables of authmodels and the archive each one's expired months go to.
PARTITIONED_TABLES: dict[str, str | None] = {
    "auth.audit_logs": "auth.audit_logs_archive",
    "auth.login_attempts": None,
}
#: Name of a monthly partition: ``<parent>_pYYYYMM``.
PARTITION_NAME = re.compile(r"^(?P<parent>[a-z_]+)_p(?P<month>\d{6})$")
DEFAULT_MONTHS_AHEAD = 3


@dataclass(frozen=True)
class Partition:
    """One monthly partition (or a detached month not yet dropped)."""

    name: str
    lower: datetime | None
    upper: datetime | None
    rows_estimate: int
    bytes: int
    attached: bool
    detach_pending: bool = False


def _qualified(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    if table not in PARTITIONED_TABLES:
        raise ConfigurationError(
            f"{table} is not a partitioned table of authmodels "
            f"(those are: {', '.join(PARTITIONED_TABLES)})"
        )
    return schema or "auth", name


def ensure(conn: Connection, table: str, *, months_ahead: int = DEFAULT_MONTHS_AHEAD) -> list[str]:
    """Create the partitions of ``table`` from the current month to ``months_ahead`` ahead.

    Idempotent and safe to run from several places at once (the SQL function serialises callers
    with a transaction-level advisory lock). Returns the names of the partitions it created.
    """
    _qualified(table)
    if months_ahead < 0:
        raise ConfigurationError("months_ahead must not be negative")
    created = conn.execute(
        text("SELECT auth.ensure_monthly_partitions(CAST(:t AS regclass), :n)"),
        {"t": table, "n": months_ahead},
    ).scalars()
    return list(created)


def list_partitions(conn: Connection, table: str) -> list[Partition]:
    """The months of ``table``: attached partitions, and detached months awaiting their drop."""
    schema, name = _qualified(table)
    rows = conn.execute(
        text(
            """
            SELECT c.relname,
                   pg_get_expr(c.relpartbound, c.oid) AS bound,
                   greatest(c.reltuples, 0)::bigint,
                   pg_total_relation_size(c.oid),
                   i.inhrelid IS NOT NULL AS attached,
                   coalesce(i.inhdetachpending, false)
              FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_inherits i
                ON i.inhrelid = c.oid AND i.inhparent = CAST(:parent AS regclass)
             WHERE n.nspname = :schema AND c.relkind = 'r' AND c.relname LIKE :pattern
             ORDER BY c.relname
            """
        ),
        {"parent": table, "schema": schema, "pattern": f"{name}\\_p______"},
    ).all()
    result = []
    for relname, bound, estimate, size, attached, pending in rows:
        if not PARTITION_NAME.match(relname) or size is None:
            continue  # size None: dropped by another session while this query ran
        lower = upper = None
        if attached and bound:
            lower, upper = _bounds(conn, bound)
        result.append(Partition(relname, lower, upper, int(estimate), int(size), attached, pending))
    return result


def _bounds(conn: Connection, bound: str) -> tuple[datetime, datetime]:
    match = re.match(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)", bound)
    if not match:
        raise ConfigurationError(f"unexpected partition bound {bound!r}")
    lower, upper = conn.execute(
        text("SELECT CAST(:l AS timestamptz), CAST(:u AS timestamptz)"),
        {"l": match.group(1), "u": match.group(2)},
    ).one()
    return lower, upper


#: Prefix of the advisory lock key that serialises month drops per table.
DROP_LOCK_PREFIX = "authmodels.drop_months:"


@dataclass
class DroppedMonth:
    """A month :func:`drop_months` removed (or, in a dry run, would remove)."""

    name: str
    rows: int
    archived: bool


def drop_months(
    engine: Engine,
    table: str,
    *,
    before: datetime,
    archive_to: str | None = None,
    dry_run: bool = False,
) -> list[DroppedMonth]:
    """Remove every month of ``table`` that ends on or before ``before``.

    Each month: ``DETACH PARTITION ... CONCURRENTLY`` (its own transaction: it cannot run in one),
    then one transaction that copies the month to ``archive_to`` (when given) and drops it. A
    month left detached or half-detached by an interrupted run is finished first. Only one
    session drops the months of a table at a time (a session-level advisory lock on
    ``hashtext('authmodels.drop_months:' || table)``): a call that finds it taken returns an
    empty list at once.

    Args:
        engine: the database.
        table: a key of :data:`PARTITIONED_TABLES`.
        before: months whose upper bound is on or before this instant go.
        archive_to: archive table (same columns plus ``archived_at``), or None to drop only.
        dry_run: report what would go; change nothing.
    """
    schema, _ = _qualified(table)
    if dry_run:
        return _drop_months(engine, table, schema, before, archive_to, dry_run=True)
    # One dropper per table at a time: a second worker (another `authmodels purge`, or the SQL
    # function, which takes the same key) leaves this table's months to the first.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        key = {"k": f"{DROP_LOCK_PREFIX}{table}"}
        if not lock.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), key).scalar():
            _log.info("another session is dropping months of %s: left to it", table)
            return []
        try:
            return _drop_months(engine, table, schema, before, archive_to, dry_run=False)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), key)


def _drop_months(
    engine: Engine,
    table: str,
    schema: str,
    before: datetime,
    archive_to: str | None,
    *,
    dry_run: bool,
) -> list[DroppedMonth]:
    done: list[DroppedMonth] = []
    with engine.connect() as conn:
        months = list_partitions(conn, table)
        conn.rollback()
    for month in months:
        settled = month.attached and not month.detach_pending
        if settled and (month.upper is None or month.upper > before):
            continue
        qualified = f"{schema}.{month.name}"
        if dry_run:
            with engine.connect() as conn:
                rows = int(conn.execute(text(f"SELECT count(*) FROM {qualified}")).scalar() or 0)
            done.append(DroppedMonth(month.name, rows, archive_to is not None))
            continue
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if month.detach_pending:
                _log.info("finalizing the interrupted detach of %s", qualified)
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {qualified} FINALIZE"))
            elif month.attached:
                _log.info("detaching %s", qualified)
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {qualified} CONCURRENTLY"))
        with engine.begin() as conn:
            rows = int(conn.execute(text(f"SELECT count(*) FROM {qualified}")).scalar() or 0)
            if archive_to is not None:
                # by name: the archive's columns need not be in the table's order
                columns = column_list(conn, table)
                conn.execute(
                    text(
                        f"INSERT INTO {archive_to} ({columns}, archived_at) "
                        f"SELECT {columns}, now() FROM {qualified}"
                    )
                )
            conn.execute(text(f"DROP TABLE {qualified}"))
        _log.info("dropped %s (%d rows%s)", qualified, rows, ", archived" if archive_to else "")
        done.append(DroppedMonth(month.name, rows, archive_to is not None))
    return done


def column_list(conn: Connection, table: str) -> str:
    """The columns of ``table`` in order, quoted, comma-separated (for archive copies by name)."""
    columns = conn.execute(
        text(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"t": table},
    ).scalar()
    if not columns:
        raise ConfigurationError(f"{table} has no columns (does it exist?)")
    return str(columns)


def ensure_all(
    engine: Engine,
    *,
    tables: Sequence[str] | None = None,
    months_ahead: int = DEFAULT_MONTHS_AHEAD,
) -> dict[str, list[str]]:
    """:func:`ensure` for every partitioned table (``authmodels partitions ensure``)."""
    created: dict[str, list[str]] = {}
    for table in tables or list(PARTITIONED_TABLES):
        with engine.begin() as conn:
            created[table] = ensure(conn, table, months_ahead=months_ahead)
    return created
