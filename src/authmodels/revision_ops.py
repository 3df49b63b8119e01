"""Recipes the hardening revisions share: short transactions, safe constraints, quarantine.

Every hardening revision changes tables that already hold data, on a database that keeps serving
requests. The recipes here keep each lock short:

- :func:`step` runs a few statements in their own short transaction, outside the revision's
  transaction (Alembic's ``autocommit_block``), so a lock taken there is released at its end.
- :func:`prepare_not_null` and :func:`finish_not_null` add ``NOT NULL`` the way PostgreSQL allows
  without a long exclusive lock: a ``CHECK (col IS NOT NULL) NOT VALID`` (instant), ``VALIDATE``
  (a scan that lets reads and writes through), then, in the revision's final transaction,
  ``SET NOT NULL`` (instant: the validated check proves it) and the check dropped.
  :func:`add_foreign_key` does the same with ``NOT VALID`` then ``VALIDATE``.
- :func:`quarantine_statement` moves rows a revision cannot convert into ``auth.quarantine``, with
  the full original row as JSONB and the reason, in one statement: a row is never deleted without
  its copy, and a downgrade can put it back (:func:`restore_quarantined`).
- :func:`backfill_computed` fills columns whose values are computed in Python (keyed HMACs: the
  key never reaches the server), batch by batch, one ``UPDATE ... FROM unnest(...)`` per batch.

The SQL is assembled from the revisions' own constants (table and column names), never from
input, hence the ``noqa: S608`` markers.

Each recipe is idempotent, so a revision that failed half-way can simply be run again, and each
renders plain SQL in offline mode (``alembic upgrade --sql``) for review and for squawk. Squawk
treats every statement outside the transaction that records the new revision as one that may be
re-run: the recipes guard their statements (``IF [NOT] EXISTS``, a constraint dropped before it
is added again), and the statements that cannot be guarded (``SET NOT NULL``, renames) go in the
revision's final transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.config import KeyRing, Settings
from authmodels.errors import MigrationError
from authmodels.migrations import (
    DEFAULT_BATCH_SIZE,
    SCHEMA,
    BackfillReport,
    batched,
    create_index_concurrently,
    explicit_transaction,
    is_offline,
)

log = logging.getLogger("authmodels.migrations")

#: The smallest UUID, the starting point of a keyset walk over a UUID key. ``gen_random_uuid()``
#: never returns it (version-4 UUIDs have version bits set).
NIL_UUID = "00000000-0000-0000-0000-000000000000"


@contextmanager
def step() -> Iterator[None]:
    """Run the block in its own short transaction, outside the revision's transaction.

    The revision's open transaction is committed first (Alembic's ``autocommit_block``); the
    block's statements then run between an explicit ``BEGIN`` and ``COMMIT`` so they are atomic
    together, and every lock they took is released when the block ends.
    """
    with op.get_context().autocommit_block():
        if is_offline():
            op.execute("BEGIN")
            yield
            op.execute("COMMIT")
            return
        with explicit_transaction(op.get_bind()):
            yield


def scalar(sql: str, params: dict[str, Any] | None = None) -> Any:
    """The first column of the first row of ``sql`` (None offline, where nothing runs)."""
    if is_offline():
        return None
    return op.get_bind().execute(text(sql), params or {}).scalar()


def constraint_exists(table: str, name: str) -> bool:
    """Whether ``auth.<table>`` has a constraint called ``name`` (False offline)."""
    return bool(
        scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND conname = :n)",
            {"t": f"{SCHEMA}.{table}", "n": name},
        )
    )


def column_exists(table: str, column: str) -> bool:
    """Whether ``auth.<table>.<column>`` exists (True offline, so rendered SQL shows the work)."""
    if is_offline():
        return True
    return bool(
        scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = :s "
            "AND table_name = :t AND column_name = :c)",
            {"s": SCHEMA, "t": table, "c": column},
        )
    )


def has_rows(*tables: str) -> bool:
    """Whether any of ``auth.<table>`` holds a row (False offline)."""
    return any(
        scalar(f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.{t})")  # noqa: S608 (constant names)
        for t in tables
    )


# --- NOT NULL and foreign keys without long exclusive locks ----------------------------------

#: Reason given to squawk where a recipe drops a constraint before adding it again.
RERUN_GUARD = (
    "-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of "
    "this revision left half-done; the next statement adds it again\n"
)


def add_check_not_valid(table: str, name: str, condition: str) -> None:
    """``ADD CONSTRAINT name CHECK (condition) NOT VALID`` (instant), replacing a leftover.

    New and updated rows are checked from now on; existing rows are checked by
    :func:`validate_constraint`, which does not block writes. Call it inside :func:`step`.
    """
    op.execute(f"{RERUN_GUARD}ALTER TABLE {SCHEMA}.{table} DROP CONSTRAINT IF EXISTS {name}")
    op.execute(f"ALTER TABLE {SCHEMA}.{table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")


def validate_constraint(table: str, name: str) -> None:
    """``VALIDATE CONSTRAINT``: scans the table under a lock that lets reads and writes through."""
    op.execute(f"ALTER TABLE {SCHEMA}.{table} VALIDATE CONSTRAINT {name}")


def not_null_check(table: str, column: str) -> str:
    """Name of the temporary ``CHECK (column IS NOT NULL)`` of :func:`prepare_not_null`."""
    return f"ck_{table}_{column}_not_null"


def prepare_not_null(table: str, column: str, *, check_added: bool = False) -> None:
    """First half of a ``SET NOT NULL`` on a populated table: a validated ``CHECK``.

    Two short transactions: a ``CHECK (column IS NOT NULL) NOT VALID`` (skipped when the caller
    already added it, e.g. under a lock together with a catch-up backfill), then its validation
    (the only scan, which does not block reads or writes). :func:`finish_not_null` completes it.
    """
    check = not_null_check(table, column)
    if not check_added:
        with step():
            add_check_not_valid(table, check, f"{column} IS NOT NULL")
    with step():
        validate_constraint(table, check)


def finish_not_null(table: str, column: str) -> None:
    """Second half: ``SET NOT NULL`` (proved from the validated check, no scan), check dropped.

    Call it in the revision's final transaction (after its last :func:`step`).
    """
    op.execute(f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN {column} SET NOT NULL")
    op.execute(
        "-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees "
        "what this temporary check did\n"
        f"ALTER TABLE {SCHEMA}.{table} DROP CONSTRAINT IF EXISTS {not_null_check(table, column)}"
    )


def add_foreign_key(
    table: str, column: str, referred: str, *, ondelete: str, referred_column: str = "id"
) -> str:
    """A foreign key added ``NOT VALID`` and validated in a second short transaction.

    Returns the constraint's name (the naming convention's ``fk_<table>_<column>_<referred>``).
    """
    name = f"fk_{table}_{column}_{referred}"
    with step():
        op.execute(f"{RERUN_GUARD}ALTER TABLE {SCHEMA}.{table} DROP CONSTRAINT IF EXISTS {name}")
        op.execute(
            f"ALTER TABLE {SCHEMA}.{table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
            f"REFERENCES {SCHEMA}.{referred} ({referred_column}) ON DELETE {ondelete} NOT VALID"
        )
    with step():
        validate_constraint(table, name)
    return name


# --- quarantine --------------------------------------------------------------------------------


def quarantine_statement(
    table: str,
    *,
    where: str,
    reason: str,
    revision: str,
    using: str | None = None,
    ctes: str | None = None,
) -> str:
    """SQL moving the rows of ``auth.<table>`` matching ``where`` into ``auth.quarantine``.

    One statement (a data-modifying CTE): the rows are deleted and their full content inserted as
    JSONB with ``reason``, atomically. ``reason`` is an SQL expression; it may use the columns of
    ``using`` (a ``FROM`` item joined by ``where``, e.g. a CTE of per-row verdicts), while the
    table itself is aliased ``t``. ``ctes`` are more common table expressions put before the
    move (they may modify other rows of the table: they see the same snapshot).
    """
    using_sql = f" USING {using}" if using else ""
    with_sql = f"WITH {ctes}, " if ctes else "WITH "
    return (
        f"{with_sql}moved AS (DELETE FROM {SCHEMA}.{table} AS t{using_sql} WHERE {where} "  # noqa: S608
        f"RETURNING to_jsonb(t) AS row_data, {reason} AS reason) "
        f"INSERT INTO {SCHEMA}.quarantine (source_table, reason, row_data, revision) "
        f"SELECT '{table}', moved.reason, moved.row_data, '{revision}' FROM moved"
    )


def restore_quarantined(table: str, *, revision: str, columns: Sequence[str] | None = None) -> None:
    """Put back the rows ``revision`` moved from ``auth.<table>`` to quarantine (downgrades).

    ``columns`` are the table's columns as the downgrade leaves them (all of its columns when
    None, read from the catalog); each row is rebuilt from its JSON copy with
    ``jsonb_populate_record``, so the values come back with their own types. A row that would now
    break a unique constraint of the table stays in quarantine (nothing is overwritten, nothing is
    lost); the downgrade that drops ``auth.quarantine`` then keeps it.
    """
    if columns is None:
        if is_offline():
            op.execute(f"-- quarantined rows of {table} from {revision} are put back online only")
            return
        columns = [
            row[0]
            for row in op.get_bind().execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = :s AND table_name = :t AND is_generated = 'NEVER' "
                    "ORDER BY ordinal_position"
                ),
                {"s": SCHEMA, "t": table},
            )
        ]
    names = ", ".join(columns)
    op.execute(
        f"WITH restored AS (INSERT INTO {SCHEMA}.{table} ({names}) "  # noqa: S608
        f"SELECT r.{', r.'.join(columns)} FROM {SCHEMA}.quarantine AS q, "
        f"jsonb_populate_record(NULL::{SCHEMA}.{table}, q.row_data) AS r "
        f"WHERE q.source_table = '{table}' AND q.revision = '{revision}' "
        "ON CONFLICT DO NOTHING RETURNING id) "
        f"DELETE FROM {SCHEMA}.quarantine AS q USING restored "
        f"WHERE q.source_table = '{table}' AND q.revision = '{revision}' "
        "AND q.row_data->>'id' = restored.id::text"
    )


# --- backfills computed in Python --------------------------------------------------------------


def _computed_update(table: str, key: str, targets: Sequence[tuple[str, str]]) -> Any:
    arrays = ", ".join(f"CAST(:v{i} AS {sql_type}[])" for i, (_, sql_type) in enumerate(targets))
    columns = ", ".join(f"v{i}" for i in range(len(targets)))
    assignments = ", ".join(f"{col} = src.v{i}" for i, (col, _) in enumerate(targets))
    return text(
        f"UPDATE {SCHEMA}.{table} AS t SET {assignments} "  # noqa: S608
        f"FROM unnest(CAST(:keys AS uuid[]), {arrays}) AS src(k, {columns}) "
        # the second condition lets the planner reach the batch through the primary key
        f"WHERE t.{key} = src.k AND t.{key} = ANY(CAST(:keys AS uuid[]))"
    )


def _apply_computed(
    conn: Connection,
    update: Any,
    rows: Sequence[Any],
    targets: Sequence[tuple[str, str]],
    compute: Callable[[Sequence[Any]], Sequence[Any]],
) -> None:
    computed = [compute(tuple(row)[1:]) for row in rows]
    params: dict[str, Any] = {"keys": [row[0] for row in rows]}
    for i in range(len(targets)):
        params[f"v{i}"] = [values[i] for values in computed]
    conn.execute(update, params)


def backfill_computed(
    table: str,
    *,
    sources: Sequence[str],
    targets: Sequence[tuple[str, str]],
    compute: Callable[[Sequence[Any]], Sequence[Any]],
    where: str = "true",
    key: str = "id",
    batch_size: int | None = None,
) -> BackfillReport:
    """Fill ``targets`` of ``auth.<table>`` from ``sources``, computing each value in Python.

    The table is walked by ``key`` (a UUID) in batches, each in its own short transaction; each
    batch is one ``UPDATE ... FROM unnest(:keys, :values...)``. Idempotent: ``where`` should
    exclude rows already done (``target IS NULL``), so a re-run only does what is left.

    Args:
        table: table name in schema ``auth``.
        sources: the columns ``compute`` receives, in order (after the key).
        targets: ``(column, sql_type)`` pairs ``compute`` returns values for, in order.
        compute: maps one row's ``sources`` to one value per target.
        where: SQL condition selecting the rows to fill.
        key: the UUID key column.
        batch_size: rows per batch (default :data:`authmodels.migrations.DEFAULT_BATCH_SIZE`).
    """
    select = (
        f"SELECT {key}, {', '.join(sources)} FROM {SCHEMA}.{table} "  # noqa: S608
        f"WHERE {key} > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) AND ({where}) "
        f"ORDER BY {key} LIMIT :limit"
    )
    update = _computed_update(table, key, targets)

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        _apply_computed(conn, update, rows, targets, compute)

    kwargs: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    report = batched(select, apply, **kwargs)
    _log_report(f"{table}: {', '.join(c for c, _ in targets)}", report)
    return report


def _log_report(what: str, report: BackfillReport) -> None:
    if report.batches:
        log.info(
            "%s filled: %d rows in %d batches, %.1f s",
            what,
            report.rows,
            report.batches,
            report.seconds,
        )


def fill_computed_now(
    table: str,
    *,
    sources: Sequence[str],
    targets: Sequence[tuple[str, str]],
    compute: Callable[[Sequence[Any]], Sequence[Any]],
    where: str,
    key: str = "id",
) -> int:
    """Like :func:`backfill_computed`, in the current transaction and in one go.

    For the few rows written while a backfill ran, filled under the lock that precedes the
    constraints (inside :func:`step`). Returns how many rows were filled (0 offline).
    """
    if is_offline():
        op.execute(f"-- rows of {table} where {where} are filled online only")
        return 0
    bind = op.get_bind()
    rows = bind.execute(
        text(f"SELECT {key}, {', '.join(sources)} FROM {SCHEMA}.{table} WHERE {where}")  # noqa: S608
    ).all()
    if rows:
        _apply_computed(bind, _computed_update(table, key, targets), rows, targets, compute)
    return len(rows)


# --- rows written while a backfill runs --------------------------------------------------------

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def create_write_log(log: str, raw_columns: dict[str, str]) -> None:
    """Start logging the rows written with a raw value while a backfill converts a table.

    Creates ``auth.<log>`` (``seq``, ``table_name``, ``row_id``) and, on each table of
    ``raw_columns`` (table -> the raw column the backfill converts), a trigger ``<table>_<log>``
    recording the id of every row inserted, or updated in that column, with a value there. The
    trigger function is ``SECURITY DEFINER`` (the application role writes the tables, not the
    log) with a pinned ``search_path``. Call it inside :func:`step`, before the backfill reads
    its first batch, so no row is missed; :func:`drain_write_log` converts the rows it names,
    :func:`drop_write_log` removes it all.
    """
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{log} (seq BIGINT GENERATED ALWAYS AS IDENTITY "
        "PRIMARY KEY, table_name TEXT NOT NULL, row_id UUID NOT NULL)"
    )
    op.execute(f"""
        CREATE OR REPLACE FUNCTION {SCHEMA}.{log}() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            INSERT INTO {SCHEMA}.{log} (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id);
            RETURN NULL;
        END
        $$""")  # noqa: S608 (constant names)
    for table, column in raw_columns.items():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_{log} ON {SCHEMA}.{table}")
        op.execute(
            f"CREATE TRIGGER {table}_{log} AFTER INSERT OR UPDATE OF {column} ON "
            f"{SCHEMA}.{table} FOR EACH ROW WHEN (NEW.{column} IS NOT NULL) "
            f"EXECUTE FUNCTION {SCHEMA}.{log}()"
        )


def drain_write_log(log: str, fill: Callable[[str, str], int], *, final: bool) -> int:
    """Convert the rows :func:`create_write_log`'s log names, oldest entries first; the entries
    converted go.

    ``fill(table, where)`` converts the rows of ``auth.<table>`` matching the SQL condition
    ``where`` (e.g. with :func:`fill_computed_now`) and returns how many it converted. Outside
    the final transaction: batches of :data:`~authmodels.migrations.DEFAULT_BATCH_SIZE` entries,
    each in its own short transaction, until a batch finds fewer (the writes left are few). With
    ``final`` (in the transaction that holds the lock keeping writers out): every entry left,
    at once. Returns the rows converted (0 offline).
    """
    if is_offline():
        op.execute(f"-- rows written during the backfill ({log}) are converted online only")
        return 0
    converted = 0
    while True:
        with nullcontext() if final else step():
            bind = op.get_bind()
            last, entries = bind.execute(
                text(
                    f"SELECT max(seq), count(*) FROM (SELECT seq FROM {SCHEMA}.{log} "  # noqa: S608
                    "ORDER BY seq LIMIT :n) AS batch"
                ),
                {"n": None if final else DEFAULT_BATCH_SIZE},
            ).one()
            if last is not None:
                tables = bind.execute(
                    text(f"SELECT DISTINCT table_name FROM {SCHEMA}.{log} WHERE seq <= :last"),  # noqa: S608
                    {"last": last},
                ).scalars()
                for table in tables.all():
                    if not _NAME.fullmatch(str(table)):
                        raise AssertionError(f"unexpected table name in {log}: {table!r}")
                    converted += fill(
                        str(table),
                        f"id IN (SELECT row_id FROM {SCHEMA}.{log} "  # noqa: S608 (checked names)
                        f"WHERE table_name = '{table}' AND seq <= {int(last)})",
                    )
                bind.execute(
                    text(f"DELETE FROM {SCHEMA}.{log} WHERE seq <= :last"),  # noqa: S608
                    {"last": last},
                )
        if final or entries < DEFAULT_BATCH_SIZE:
            return converted


def drop_write_log(log: str, tables: Sequence[str]) -> None:
    """Remove :func:`create_write_log`'s triggers, function and log (in the transaction that
    converted its last entries)."""
    for table in tables:
        op.execute(
            "-- squawk-ignore ban-drop-trigger -- the temporary trigger of this revision's write "
            f"log\nDROP TRIGGER IF EXISTS {table}_{log} ON {SCHEMA}.{table}"
        )
    op.execute(
        "-- squawk-ignore ban-drop-function -- the temporary write log's trigger function\n"
        f"DROP FUNCTION IF EXISTS {SCHEMA}.{log}()"
    )
    op.execute(
        "-- squawk-ignore ban-drop-table -- the temporary write log of this revision, empty now\n"
        f"DROP TABLE IF EXISTS {SCHEMA}.{log}"
    )


def rename_not_null_constraints(table: str) -> None:
    """Name the NOT NULL constraints of ``auth.<table>`` after its current table and columns.

    PostgreSQL 18 records each NOT NULL as a named constraint (``<table>_<column>_not_null``),
    named when it is created; after a table or column rename this gives them their conventional
    name again. Older servers have no such constraints, and the loop does nothing.
    """
    op.execute(f"""
        DO $$
        DECLARE
            c record;
        BEGIN
            FOR c IN
                SELECT con.conname, '{table}_' || att.attname || '_not_null' AS wanted
                  FROM pg_constraint AS con
                  JOIN pg_attribute AS att
                    ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
                 WHERE con.conrelid = '{SCHEMA}.{table}'::regclass AND con.contype = 'n'
                   AND con.conname <> '{table}_' || att.attname || '_not_null'
            LOOP
                EXECUTE format('ALTER TABLE {SCHEMA}.{table} RENAME CONSTRAINT %I TO %I',
                               c.conname, c.wanted);
            END LOOP;
        END;
        $$""")  # noqa: S608


#: Transaction-local setting that tells ``auth.update_updated_at_column()`` (from revision 0008
#: on) to leave ``updated_at`` alone: a type migration rewrites a value, it does not change it.
KEEP_UPDATED_AT = "authmodels.keep_updated_at"


@dataclass(frozen=True)
class IndexSpec:
    """An index that involves a column :func:`swap_column_type` replaces, to build again."""

    name: str
    columns: str
    unique: bool = False
    where: str | None = None


def swap_column_type(
    table: str,
    column: str,
    *,
    new_type: str,
    using: str,
    not_null: bool = True,
    indexes: Sequence[IndexSpec] = (),
    key: str = "id",
    key_start: str = f"'{NIL_UUID}'::uuid",
) -> None:
    """Change the type of a column of a populated table without rewriting it under a lock.

    ``ALTER COLUMN ... TYPE`` to a type that is not binary-compatible rewrites the whole table
    and its indexes under an ACCESS EXCLUSIVE lock. Instead: a shadow column ``<column>__new``
    of the new type, kept in step with the old one by a trigger while rows are copied in batches
    (``using`` is an SQL expression of ``{old}``, the old value); the indexes that involve the
    column built again concurrently on the shadow column; ``NOT NULL`` through a validated check;
    then, in the revision's final transaction, the old column dropped (its indexes and checks with
    it) and the shadow column, its indexes and its NOT NULL renamed to the old names.

    Call it before the revision's final statements; the last step (drop and renames) is emitted
    by :func:`finish_swap`, which must run in the final transaction.

    Args:
        table: table in schema ``auth``.
        column: the column to convert.
        new_type: the SQL type, e.g. ``auth.user_role``.
        using: the conversion, with ``{old}`` for the old value, e.g. ``{old}::auth.user_role``.
        not_null: whether the column is NOT NULL.
        indexes: the indexes to build again (with the old name; ``columns`` and ``where`` name the
            shadow column as ``{new}``).
        key: the table's key column (walked in batches).
        key_start: SQL value below every key (the NIL UUID; ``0`` for identity keys).
    """
    shadow = f"{column}__new"
    sync = f"{table}_{column}__sync"
    op.execute(f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {shadow} {new_type}")
    op.execute(f"""
        CREATE OR REPLACE FUNCTION {SCHEMA}.{sync}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.{shadow} := {using.format(old=f"NEW.{column}")};
            RETURN NEW;
        END;
        $$""")
    op.execute(f"DROP TRIGGER IF EXISTS {sync} ON {SCHEMA}.{table}")
    op.execute(
        f"CREATE TRIGGER {sync} BEFORE INSERT OR UPDATE OF {column} ON {SCHEMA}.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.{sync}()"
    )

    copy = text(
        f"UPDATE {SCHEMA}.{table} SET {shadow} = {using.format(old=column)} "  # noqa: S608
        f"WHERE {key} = ANY(:keys) AND {shadow} IS NULL AND {column} IS NOT NULL"
    )

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(text("SELECT set_config(:name, 'on', true)"), {"name": KEEP_UPDATED_AT})
        conn.execute(copy, {"keys": [row[0] for row in rows]})

    report = batched(
        f"SELECT {key} FROM {SCHEMA}.{table} "  # noqa: S608
        f"WHERE {key} > coalesce(:after, {key_start}) "
        f"AND {shadow} IS NULL AND {column} IS NOT NULL ORDER BY {key} LIMIT :limit",
        apply,
    )
    _log_report(f"{table}: {shadow} ({new_type})", report)
    for index in indexes:
        create_index_concurrently(
            f"{index.name}__new",
            table,
            index.columns.format(new=shadow),
            unique=index.unique,
            where=None if index.where is None else index.where.format(new=shadow),
        )
    if not_null:
        prepare_not_null(table, shadow)


def finish_swap(
    table: str,
    column: str,
    *,
    default: str | None = None,
    not_null: bool = True,
    indexes: Sequence[IndexSpec] = (),
) -> None:
    """The final, instant step of :func:`swap_column_type` (in the revision's final transaction)."""
    shadow = f"{column}__new"
    sync = f"{table}_{column}__sync"
    if not_null:
        finish_not_null(table, shadow)
    op.execute(
        "-- squawk-ignore ban-drop-trigger -- the temporary trigger that kept the shadow column "
        "in step during the copy\n"
        f"DROP TRIGGER IF EXISTS {sync} ON {SCHEMA}.{table}"
    )
    op.execute(
        "-- squawk-ignore ban-drop-function -- the temporary trigger's function; nothing else "
        "calls it\n"
        f"DROP FUNCTION IF EXISTS {SCHEMA}.{sync}()"
    )
    op.execute(
        "-- squawk-ignore ban-drop-column -- replaced by its copy in the new type, filled and "
        "kept in step above\n"
        f"ALTER TABLE {SCHEMA}.{table} DROP COLUMN IF EXISTS {column}"
    )
    op.execute(
        "-- squawk-ignore renaming-column -- the converted copy takes the name of the column it "
        "replaces\n"
        f"ALTER TABLE {SCHEMA}.{table} RENAME COLUMN {shadow} TO {column}"
    )
    if default is not None:
        op.execute(f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN {column} SET DEFAULT {default}")
    for index in indexes:
        op.execute(
            "-- squawk-ignore renaming-object -- the rebuilt index takes the name of the one "
            "dropped with the old column\n"
            f"ALTER INDEX {SCHEMA}.{index.name}__new RENAME TO {index.name}"
        )
    rename_not_null_constraints(table)


def require_privacy_keys(*, tables_with_rows: Sequence[str]) -> KeyRing | None:
    """The IP / user-agent key ring a backfill needs, checked before anything changes.

    Returns None offline or when none of ``tables_with_rows`` (names in schema ``auth``) holds a
    row; otherwise the ring of ``AUTHMODELS_PRIVACY_KEYS`` (falling back to
    ``AUTHMODELS_HASH_KEYS``).

    Raises:
        MissingKeyError: rows need hashing and neither variable is set.
    """
    if is_offline():
        return None
    settings = Settings.from_env()
    if not has_rows(*tables_with_rows):
        return settings.privacy_keys
    return settings.require_privacy_keys()


def refuse(message: str) -> None:
    """Stop the revision before it changes anything, with a message the operator can act on.

    Raises:
        MigrationError: always.
    """
    raise MigrationError(message)


# --- downgrades that would drop data -------------------------------------------------------------

#: ``-x allow_data_loss=true`` (or the config attribute of that name) lets a downgrade drop
#: tables that still hold rows.
ALLOW_DATA_LOSS = "allow_data_loss"


def allow_data_loss() -> bool:
    """Whether the operator allowed this run to drop rows (``-x allow_data_loss=true``)."""
    from alembic import context

    value = context.get_x_argument(as_dictionary=True).get(ALLOW_DATA_LOSS)
    if value is None:
        value = context.config.attributes.get(ALLOW_DATA_LOSS)
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def refuse_to_drop_rows(revision: str, tables: Sequence[str]) -> None:
    """Stop a downgrade that would drop ``auth.<table>`` rows, unless the operator allowed it.

    Call it first, before the downgrade changes anything. Tables whose rows the downgrade moves
    elsewhere should not be listed. Offline nothing is checked (the SQL is for review).

    Raises:
        MigrationError: a table holds rows and ``allow_data_loss`` is not set.
    """
    if is_offline() or allow_data_loss():
        return
    full = [t for t in tables if has_rows(t)]
    if full:
        refuse(
            f"downgrading {revision} drops {', '.join(f'auth.{t}' for t in full)}, which "
            "still hold rows that the previous schema has no place for. Export them first, "
            f"then run the downgrade with -x {ALLOW_DATA_LOSS}=true."
        )


__all__ = [
    "ALLOW_DATA_LOSS",
    "KEEP_UPDATED_AT",
    "NIL_UUID",
    "IndexSpec",
    "add_check_not_valid",
    "add_foreign_key",
    "allow_data_loss",
    "backfill_computed",
    "column_exists",
    "constraint_exists",
    "create_write_log",
    "drain_write_log",
    "drop_write_log",
    "fill_computed_now",
    "finish_not_null",
    "finish_swap",
    "has_rows",
    "not_null_check",
    "prepare_not_null",
    "quarantine_statement",
    "refuse",
    "refuse_to_drop_rows",
    "rename_not_null_constraints",
    "require_privacy_keys",
    "restore_quarantined",
    "scalar",
    "step",
    "swap_column_type",
    "validate_constraint",
]
