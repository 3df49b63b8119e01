"""Monthly range partitions of the append-only logs (``audit_logs``, ``login_attempts``).

Revision ``0015_partitioned_logs`` turns those tables into tables partitioned by month of
``created_at``; partition ``auth.audit_logs_p202611`` holds November 2026 (UTC). Since revision
``0027_default_partitions`` each also has a DEFAULT partition, ``auth.audit_logs_default``: a
row whose month has no partition lands there instead of being refused.

Months are created ahead of time by the SQL function ``auth.ensure_monthly_partitions(parent,
months_ahead)`` (which :func:`ensure` calls, and which pg_cron can call) or by :func:`ensure_all`
(``authmodels partitions ensure``). Both also *split* the default partition: every month that has
rows there gets its partition, and its rows move into it. A split copies the month's rows into a
table shaped like a partition while they stay in the default partition (and readers see them
there), then, in one short transaction, makes the copy match the rows exactly, deletes them from
the default partition and attaches the table. Nothing is lost or seen twice; rows routed to the
default partition, and reads that cannot skip it, wait for that transaction only (see the
benchmark on the retention page).

Retention of a partitioned table removes whole months (:func:`drop_months`), then the expired rows
of the default partition in batches (:func:`authmodels.retention.purge`). Without a default
partition a month is detached with ``DETACH PARTITION ... CONCURRENTLY`` (no lock that blocks
readers or writers of the other months); with one, PostgreSQL refuses ``CONCURRENTLY``, so the
month is copied to the archive, detached and dropped in one short transaction, by the SQL
function ``auth.drop_month_partition`` that ``auth.purge_expired_data()`` uses too. A run killed
between the steps is finished by the next one (a pending detach is finalized, a detached month is
archived and dropped).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from authmodels.errors import ConfigurationError

_log = logging.getLogger(__name__)

#: The partitioned tables of authmodels and the archive each one's expired months go to.
PARTITIONED_TABLES: dict[str, str | None] = {
    "auth.audit_logs": "auth.audit_logs_archive",
    "auth.login_attempts": None,
}
#: Name of a monthly partition: ``<parent>_pYYYYMM``.
PARTITION_NAME = re.compile(r"^(?P<parent>[a-z_]+)_p(?P<month>\d{6})$")
#: Name of the default partition of a partitioned log (revision 0027): ``<parent>_default``.
DEFAULT_PARTITION_NAME = re.compile(r"^(?P<parent>[a-z_]+)_default$")
DEFAULT_MONTHS_AHEAD = 3
#: Rows per copy transaction when :func:`ensure_all` moves a month out of the default partition.
DEFAULT_SPLIT_BATCH_SIZE = 10_000
#: SQLSTATE of a lock not obtained within ``lock_timeout``.
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Partition:
    """One monthly partition (or a detached month not yet dropped, or one being split).

    Attributes:
        splitting: not attached yet: :func:`ensure_all` (or ``auth.ensure_monthly_partitions``)
            is moving this month's rows out of the default partition and was interrupted; the
            rows are still in the default partition, and the next ``ensure`` finishes the move.
            A purge leaves such a table alone.
    """

    name: str
    lower: datetime | None
    upper: datetime | None
    rows_estimate: int
    bytes: int
    attached: bool
    detach_pending: bool = False
    splitting: bool = False


@dataclass(frozen=True)
class DefaultPartition:
    """The default partition of a partitioned log, and the months of the rows it holds.

    Attributes:
        name: e.g. ``audit_logs_default``.
        rows: rows it holds (counted).
        bytes: its size on disk, indexes included.
        months: ``(first day of the month, rows)`` for each month with rows there, in order;
            :func:`ensure_all` moves them to their month partitions. Rows outside the years 1 to
            9999 have no month partition and stay.
    """

    name: str
    rows: int
    bytes: int
    months: list[tuple[date, int]]


@dataclass(frozen=True)
class EnsuredMonth:
    """A month :func:`ensure_all` gave a partition (or, when busy, left for the next run).

    Attributes:
        name: the month's partition, e.g. ``audit_logs_p202703``.
        moved: rows moved into it from the default partition.
        attached: False when its locks could not be had (after retries): nothing changed for
            that month, its rows stay in the default partition, and the next run goes on.
    """

    name: str
    moved: int
    attached: bool = True


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

    Runs ``auth.ensure_monthly_partitions`` in the caller's transaction: since revision 0027 it
    also gives every month with rows in the default partition its partition, moving the rows
    (all in this transaction: :func:`ensure_all` does the same in short transactions). A month
    whose locks it cannot have within 2 seconds is left for the next call. Idempotent and safe
    to run from several places at once (callers are serialised by a transaction-level advisory
    lock). Returns the names of the partitions it created.
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
    """The months of ``table``: attached partitions, detached months awaiting their drop, and
    months being split out of the default partition. The default partition itself is
    :func:`default_partition`."""
    schema, name = _qualified(table)
    rows = conn.execute(
        text(
            """
            SELECT c.relname,
                   pg_get_expr(c.relpartbound, c.oid) AS bound,
                   greatest(c.reltuples, 0)::bigint,
                   pg_total_relation_size(c.oid),
                   i.inhrelid IS NOT NULL AS attached,
                   coalesce(i.inhdetachpending, false),
                   i.inhrelid IS NULL AND EXISTS (
                       SELECT 1 FROM pg_constraint k
                        WHERE k.conrelid = c.oid AND k.conname = 'ck_' || c.relname || '_month'
                   ) AS splitting
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
    for relname, bound, estimate, size, attached, pending, splitting in rows:
        if not PARTITION_NAME.match(relname) or size is None:
            continue  # size None: dropped by another session while this query ran
        lower = upper = None
        if attached and bound:
            lower, upper = _bounds(conn, bound)
        result.append(
            Partition(relname, lower, upper, int(estimate), int(size), attached, pending, splitting)
        )
    return result


def default_partition(conn: Connection, table: str) -> DefaultPartition | None:
    """The default partition of ``table`` and the months of its rows; None when it has none.

    Counts its rows by month (a scan of the default partition, which holds only the rows of
    months without a partition).
    """
    _qualified(table)
    found = conn.execute(
        text(
            "SELECT c.oid::regclass::text, c.relname, pg_total_relation_size(c.oid) "
            "FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partdefid "
            "WHERE pt.partrelid = to_regclass(:t)"
        ),
        {"t": table},
    ).one_or_none()
    if found is None:
        return None
    qualified, name, size = found
    # the name comes from the catalog, never from input
    by_month = (
        "SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, count(*) "
        f"FROM {qualified} GROUP BY 1 ORDER BY 1"
    )
    months = [(month, int(count)) for month, count in conn.execute(text(by_month)).all()]
    return DefaultPartition(name, sum(n for _, n in months), int(size), months)


def _bounds(conn: Connection, bound: str) -> tuple[datetime, datetime]:
    match = re.match(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)", bound)
    if not match:
        raise ConfigurationError(f"unexpected partition bound {bound!r}")
    lower, upper = conn.execute(
        text("SELECT CAST(:l AS timestamptz), CAST(:u AS timestamptz)"),
        {"l": match.group(1), "u": match.group(2)},
    ).one()
    return lower, upper


def default_partition_table(conn: Connection, table: str) -> str | None:
    """The qualified name of ``table``'s default partition (``auth.audit_logs_default``), or
    None when it has none (below revision 0027)."""
    _qualified(table)
    name = conn.execute(
        text(
            "SELECT partdefid::regclass::text FROM pg_partitioned_table "
            "WHERE partrelid = to_regclass(:t) AND partdefid <> 0"
        ),
        {"t": table},
    ).scalar()
    return None if name is None else str(name)


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

    Each month, when ``table`` has no default partition: ``DETACH PARTITION ... CONCURRENTLY``
    (its own transaction: it cannot run in one), then one transaction that copies the month to
    ``archive_to`` (when given) and drops it. With a default partition (revision 0027), where
    PostgreSQL refuses ``CONCURRENTLY``: one transaction that calls
    ``auth.drop_month_partition`` (revision 0029), which ``auth.purge_expired_data()`` calls too:
    it takes a ``SHARE`` lock on the month (its writes wait), copies it to the archive, detaches
    it with a plain ``DETACH`` and drops it -- the ``ACCESS EXCLUSIVE`` locks of those two on the
    parent and its default partition cover catalog changes only, under a 2 s ``lock_timeout``; a
    month it cannot lock then is left for the next run. A month left detached or half-detached
    by an interrupted run is finished first; a month being split out of the default partition is
    left alone. Only one session drops the months of a table at a time (a session-level advisory
    lock on ``hashtext('authmodels.drop_months:' || table)``): a call that finds it taken returns
    an empty list at once.

    Args:
        engine: the database.
        table: a key of :data:`PARTITIONED_TABLES`.
        before: months whose upper bound is on or before this instant go.
        archive_to: archive table (same columns plus ``archived_at``), or None to drop only.
        dry_run: report what would go; change nothing.

    Raises:
        ConfigurationError: ``table`` is not partitioned, or an attached month is to go and the
            database is below revision 0029 (``auth.drop_month_partition``).
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
        with_default = default_partition_table(conn, table) is not None
        conn.rollback()
    for month in months:
        if month.splitting:
            continue  # its rows are still in the default partition: ensure finishes it
        settled = month.attached and not month.detach_pending
        if settled and (month.upper is None or month.upper > before):
            continue
        qualified = f"{schema}.{month.name}"
        if dry_run:
            with engine.connect() as conn:
                rows = int(conn.execute(text(f"SELECT count(*) FROM {qualified}")).scalar() or 0)
            done.append(DroppedMonth(month.name, rows, archive_to is not None))
            continue
        if settled and with_default:
            dropped = _drop_attached_month(engine, table, qualified, archive_to)
            if dropped is not None:
                done.append(DroppedMonth(month.name, dropped, archive_to is not None))
            continue
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if month.detach_pending:
                _log.info("finalizing the interrupted detach of %s", qualified)
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {qualified} FINALIZE"))
            elif month.attached:
                _log.info("detaching %s", qualified)
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {qualified} CONCURRENTLY"))
        with engine.begin() as conn:
            rows = _archive(conn, table, qualified, archive_to)
            conn.execute(text(f"DROP TABLE {qualified}"))
        _log.info("dropped %s (%d rows%s)", qualified, rows, ", archived" if archive_to else "")
        done.append(DroppedMonth(month.name, rows, archive_to is not None))
    return done


def _archive(conn: Connection, table: str, qualified: str, archive_to: str | None) -> int:
    """Copy the month ``qualified`` to ``archive_to`` (when given); its row count."""
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
    return rows


#: The month drop of both purge paths (revision 0029): archive under a ``SHARE`` lock on the
#: month, detach, drop, under a 2 s ``lock_timeout``; NULL when a lock could not be had.
DROP_MONTH_FUNCTION = "auth.drop_month_partition(regclass, regclass, regclass)"
_DROP_MONTH = text(
    "SELECT auth.drop_month_partition(CAST(:parent AS regclass), CAST(:part AS regclass), "
    "CAST(:archive_to AS regclass))"
)


def _drop_attached_month(
    engine: Engine, table: str, qualified: str, archive_to: str | None
) -> int | None:
    """Archive, detach and drop one attached month in one transaction; None when it was busy."""
    with engine.begin() as conn:
        require_function(conn, DROP_MONTH_FUNCTION, revision="0029_one_purge_engine")
        rows = conn.execute(
            _DROP_MONTH, {"parent": table, "part": qualified, "archive_to": archive_to}
        ).scalar()
    if rows is None:
        _log.warning("%s is busy: its month %s waits for the next run", table, qualified)
        return None
    _log.info("dropped %s (%d rows%s)", qualified, rows, ", archived" if archive_to else "")
    return int(rows)


def require_function(conn: Connection, signature: str, *, revision: str) -> None:
    """Stop, before anything changes, when the database lacks the SQL function ``signature``.

    Raises:
        ConfigurationError: the function is missing: the database is below ``revision``.
    """
    if conn.execute(text("SELECT to_regprocedure(:f)"), {"f": signature}).scalar() is None:
        raise ConfigurationError(
            f"{signature} is missing: the database is below revision {revision}; "
            "upgrade it (authmodels db upgrade) first"
        )


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
    batch_size: int = DEFAULT_SPLIT_BATCH_SIZE,
    attempts: int = 3,
    on_month: Callable[[str, EnsuredMonth], None] | None = None,
) -> dict[str, list[EnsuredMonth]]:
    """Give every month that needs one its partition, for every partitioned table.

    The months are those from the current month to ``months_ahead`` ahead, and every month with
    rows in the default partition (``auth.months_without_partition``). Each month, in short
    transactions of its own: the table is prepared (``auth.prepare_month_partition``), the
    month's rows are copied into it ``batch_size`` at a time (``auth.copy_month_rows``; they stay
    in the default partition meanwhile, and readers see them there), then one transaction
    (``auth.attach_month_partition``) makes the copy match the default partition's rows
    exactly, deletes them there and attaches the table. A step whose locks cannot be had (2 s,
    or half of ``deadlock_timeout`` for the last one) is tried ``attempts`` times; a month still
    busy then is reported with ``attached=False`` and left for the next run. The command
    ``authmodels partitions ensure`` calls this.

    On a database below revision 0027 (no default partition, no split functions) it creates the
    months with :func:`ensure`, one transaction per table.

    ``on_month(table, month)``, when given, is called after each month (progress).

    Raises:
        ConfigurationError: ``months_ahead`` is negative, ``batch_size`` or ``attempts`` below 1,
            or a table is not one of :data:`PARTITIONED_TABLES`.
    """
    if months_ahead < 0:
        raise ConfigurationError("months_ahead must not be negative")
    if batch_size < 1 or attempts < 1:
        raise ConfigurationError("batch_size and attempts must be at least 1")
    chosen = list(tables or PARTITIONED_TABLES)
    for table in chosen:
        _qualified(table)
    ensured: dict[str, list[EnsuredMonth]] = {}
    with engine.connect() as conn:
        splits = conn.execute(
            text("SELECT to_regprocedure('auth.attach_month_partition(regclass, date)')")
        ).scalar()
        conn.rollback()
    for table in chosen:
        if splits is None:
            with engine.begin() as conn:
                names = ensure(conn, table, months_ahead=months_ahead)
            ensured[table] = [EnsuredMonth(name, 0) for name in names]
            continue
        with engine.begin() as conn:
            months = list(
                conn.execute(
                    text("SELECT auth.months_without_partition(CAST(:t AS regclass), :n)"),
                    {"t": table, "n": months_ahead},
                ).scalars()
            )
        ensured[table] = []
        for month in months:
            done = split_month(engine, table, month, batch_size=batch_size, attempts=attempts)
            ensured[table].append(done)
            if on_month is not None:
                on_month(table, done)
    return ensured


def split_month(
    engine: Engine,
    table: str,
    month: date,
    *,
    batch_size: int = DEFAULT_SPLIT_BATCH_SIZE,
    attempts: int = 3,
) -> EnsuredMonth:
    """Give ``month`` of ``table`` its partition, moving its rows out of the default partition.

    The per-month work of :func:`ensure_all` (which calls it for every month that needs it):
    prepare, copy in batches of ``batch_size``, attach; each step in a transaction of its own,
    tried ``attempts`` times when a lock cannot be had. Needs revision 0027.

    Args:
        engine: the database (as the owner of the tables).
        table: a key of :data:`PARTITIONED_TABLES`.
        month: any day of the month (UTC).
        batch_size: rows per copy transaction.
        attempts: tries of each step that meets a lock it cannot have.
    """
    _qualified(table)
    params = {"t": table, "m": month, "n": batch_size}
    with engine.connect() as conn:
        name = str(
            conn.execute(
                text("SELECT auth.month_partition_name(CAST(:t AS regclass), :m)"), params
            ).scalar_one()
        )
    done, prepared = _retrying(
        engine, "SELECT auth.prepare_month_partition(CAST(:t AS regclass), :m)", params, attempts
    )
    if not done:
        return EnsuredMonth(name, 0, attached=False)
    if prepared is None:  # attached by another session meanwhile
        return EnsuredMonth(name, 0)
    while True:
        done, copied = _retrying(
            engine, "SELECT auth.copy_month_rows(CAST(:t AS regclass), :m, :n)", params, attempts
        )
        if not done:
            return EnsuredMonth(name, 0, attached=False)
        if copied < batch_size:
            break
    done, moved = _retrying(
        engine, "SELECT auth.attach_month_partition(CAST(:t AS regclass), :m)", params, attempts
    )
    if not done:
        _log.warning("%s: busy, left for the next run (its rows stay in the default)", name)
        return EnsuredMonth(name, 0, attached=False)
    _log.info("%s attached (%s rows moved from the default partition)", name, moved or 0)
    return EnsuredMonth(name, int(moved or 0))


def _retrying(
    engine: Engine, statement: str, params: dict[str, Any], attempts: int
) -> tuple[bool, Any]:
    """Run ``statement`` in a transaction of its own: ``(True, its scalar)``, or ``(False,
    None)`` after ``attempts`` lock timeouts (each attempt rolled back whole)."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                return True, conn.execute(text(statement), params).scalar()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            _log.info("lock timeout (attempt %d of %d): %s", attempt + 1, attempts, statement)
            time.sleep(0.2 * (attempt + 1))
    return False, None
