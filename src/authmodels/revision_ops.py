"""The helpers revisions call: short transactions, safe constraints, batched backfills, quarantine.

**Shipped revisions depend on this module.** Every revision in ``alembic/versions/`` imports its
recipes from here (and nothing else of authmodels' migration code), and a released revision runs
again on every database that has not reached it yet: what a helper does is part of what every
shipped revision that calls it does. How to change it safely:

- *Add, do not alter.* A new behaviour is a new function, or a new keyword argument whose default
  keeps the old one; a new revision uses it. Never rename or remove a public name: a shipped
  revision imports it.
- *What a helper renders offline is pinned.* ``tests/migrations/test_offline_sql.py`` compares
  every revision's ``--sql`` output (upgrade and downgrade) with the snapshot committed when it
  shipped. When it fails, the change altered a shipped revision: undo it. Write the snapshots
  again (the command is in that test's docstring) only for a new revision, or when the diff
  changes no statement a shipped revision runs.
- *What a helper does online only is pinned by the data tests.* Batched backfills, catalog
  lookups and key checks run only against a live database and render as ``-- ... online only``
  comments offline: the per-revision tests (``tests/migrations/test_NNNN_*.py``), the stairway
  and the chain-with-data tests are their net. Run them all after a change here.
- *Typed.* This module and ``alembic/versions/`` are checked with ``mypy --strict`` in CI.

Every hardening revision changes tables that already hold data, on a database that keeps serving
requests. The recipes here keep each lock short:

- :func:`step` runs a few statements in their own short transaction, outside the revision's
  transaction (Alembic's ``autocommit_block``), so a lock taken there is released at its end.
- :func:`batched` walks a table by key in short transactions (a crash loses one batch);
  :func:`backfill_computed` builds on it to fill columns whose values are computed in Python
  (keyed HMACs: the key never reaches the server), one ``UPDATE ... FROM unnest(...)`` per batch.
  :func:`require_hash_keys` and :func:`require_privacy_keys` check, before anything changes, that
  the keys such a backfill needs are set.
- :func:`create_index_concurrently` (and :func:`create_partitioned_index_concurrently` for a
  partitioned table) builds an index without blocking writes.
- :func:`prepare_not_null` and :func:`finish_not_null` add ``NOT NULL`` the way PostgreSQL allows
  without a long exclusive lock: a ``CHECK (col IS NOT NULL) NOT VALID`` (instant), ``VALIDATE``
  (a scan that lets reads and writes through), then, in the revision's final transaction,
  ``SET NOT NULL`` (instant: the validated check proves it) and the check dropped.
  :func:`add_foreign_key` does the same with ``NOT VALID`` then ``VALIDATE``.
- :func:`quarantine_statement` moves rows a revision cannot convert into ``auth.quarantine``, with
  the full original row as JSONB and the reason, in one statement: a row is never deleted without
  its copy, and a downgrade can put it back (:func:`restore_quarantined`).
- :func:`swap_column_type` changes a column's type without rewriting the table under a lock.
- :func:`refuse_to_drop_rows` stops a downgrade that would drop rows the operator has not allowed
  it to drop.

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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from authmodels.config import KeyRing, Settings
from authmodels.errors import MigrationError
from authmodels.migrations import SCHEMA

log = logging.getLogger("authmodels.migrations")

#: The smallest UUID, the starting point of a keyset walk over a UUID key. ``gen_random_uuid()``
#: never returns it (version-4 UUIDs have version bits set).
NIL_UUID = "00000000-0000-0000-0000-000000000000"
#: Rows per batch of :func:`batched` (and of the backfills built on it).
DEFAULT_BATCH_SIZE = 5000


def is_offline() -> bool:
    """True when Alembic renders SQL (``--sql``) instead of running it."""
    return bool(op.get_context().as_sql)


# --- short transactions outside the revision's own ------------------------------------------


@contextmanager
def explicit_transaction(bind: Connection) -> Iterator[None]:
    """One transaction on a connection inside Alembic's ``autocommit_block()``.

    There the connection autocommits each statement; an explicit ``BEGIN``/``COMMIT`` makes
    several statements (e.g. copy to quarantine, then delete) atomic, and ends their locks at
    the block's end.
    """
    bind.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        bind.exec_driver_sql("ROLLBACK")
        raise
    bind.exec_driver_sql("COMMIT")


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


# --- the key rings a backfill needs -----------------------------------------------------------


def require_hash_keys(*, tables_with_rows: Sequence[str]) -> KeyRing | None:
    """The hash key ring a backfill needs, checked before the revision changes anything.

    Returns None offline or when none of ``tables_with_rows`` (names in schema ``auth``) holds a
    row, so an empty database migrates without keys; otherwise the ring of
    ``AUTHMODELS_HASH_KEYS``.

    Raises:
        MissingKeyError: rows need hashing and ``AUTHMODELS_HASH_KEYS`` is not set.
    """
    if is_offline():
        return None
    settings = Settings.from_env()
    if not has_rows(*tables_with_rows):
        return settings.hash_keys
    return settings.require_hash_keys()


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


# --- batched backfills ------------------------------------------------------------------------


@dataclass
class BackfillReport:
    """What a batched backfill did."""

    rows: int = 0
    batches: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class PageWalk:
    """How :func:`batched` walks a table in physical order (page ranges) instead of by key.

    A walk by key over a random key (a UUID) reaches the rows of each batch through the primary
    key, on pages spread over the whole table: once the table and its indexes outgrow
    ``shared_buffers``, nearly every row read is a buffer miss and nearly every page written is
    evicted dirty by the backend itself, written again after each checkpoint with a full-page
    image (``docs/benchmarks.md``, "Why 0002 grew faster than its data"). A walk by page range
    reads each page once, in order: the work grows with the table, not faster.

    Attributes:
        table: the table in schema ``auth``.
        select: a SELECT over ``auth.<table>`` whose first column is the key, with ``{pages}``
            in its WHERE clause, where the walk puts the batch's page range (a ``ctid`` range:
            PostgreSQL's TID range scan). It selects the same rows as the key walk's SELECT,
            without the key condition, order and limit.
        workers: how many connections walk the table at once (default 1, the revision's own).
            With more, each extra worker opens its own connection (the revision's settings:
            ``lock_timeout``, ``statement_timeout``, ``search_path``, role) and the page ranges
            are shared out as the workers take them; each batch is still its own short
            transaction. For backfills whose rows do not depend on each other (a value computed
            from the row itself): the server's work of one batch overlaps the client's (or the
            server's) work of the other. A worker that cannot connect is skipped (logged).
        passes: in how many transactions each range of pages is converted (default 1). A
            backfill that makes every row longer on full pages (a fresh table, fillfactor 100)
            moves each row it rewrites to another page, and every index of the table gets a new
            entry for it. In passes, the first rewrites part of each page's rows (they move); the
            next, in a later transaction, finds the space their old versions left (pruned when
            the page is read again) and rewrites more rows on their own page: a heap-only
            (HOT) update, no index entry, no move. About 40% of the rows stay on their page
            with three passes. Each pass reads the rows it converts in its own transaction, as a
            single pass does. ``select`` must then start with ``SELECT`` and read the table
            alone (the first pass adds its ``ctid``).
    """

    table: str
    select: str
    workers: int = 1
    passes: int = 1


def batched(
    select_batch: str,
    apply_batch: Callable[[Connection, Sequence[Any]], None],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    params: dict[str, Any] | None = None,
    walk: PageWalk | None = None,
) -> BackfillReport:
    """Run a backfill in short transactions, walking the table by key (keyset pagination).

    ``select_batch`` is a SELECT whose first column is the key, ordered by it, taking the bind
    parameters ``:after`` (the last key of the previous batch, NULL at first) and ``:limit``; e.g.
    ``SELECT id, email FROM auth.t WHERE (:after IS NULL OR id > :after) ORDER BY id LIMIT :limit``.
    ``apply_batch(connection, rows)`` writes one batch. Each batch commits on its own inside
    Alembic's autocommit block, so no lock outlives a batch and a crash loses at most one batch
    (the revision is re-run from the start, and every backfill is written to be idempotent).

    With ``walk`` the table is walked in physical order instead (:class:`PageWalk`): each batch
    is the rows ``walk.select`` finds in a range of pages holding about ``batch_size`` rows, up
    to the table's last page when the walk started. A row that a concurrent update moves behind
    the walk, like a row written after it, is left to the revision's catch-up (the statement it
    runs under its lock, or a later pass): a walk converts what it finds and is idempotent.
    ``select_batch`` is then what offline mode renders (the same rows, selected by key). With
    ``walk.workers`` above 1 the page ranges are walked on that many connections at once, and
    ``apply_batch`` is called from as many threads, each with its own connection.

    In offline mode (``--sql``) nothing runs: the backfill needs the data.
    """
    report = BackfillReport()
    if is_offline():
        op.execute(f"-- batched backfill runs online only: {select_batch.splitlines()[0]}")
        return report
    started = time.perf_counter()
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        if walk is not None:
            _walk_pages(bind, walk, apply_batch, batch_size, params or {}, report)
        else:
            _walk_keys(bind, select_batch, apply_batch, batch_size, params or {}, report)
    report.seconds = time.perf_counter() - started
    return report


def _walk_keys(
    bind: Connection,
    select_batch: str,
    apply_batch: Callable[[Connection, Sequence[Any]], None],
    batch_size: int,
    params: dict[str, Any],
    report: BackfillReport,
) -> None:
    after: Any = None
    while True:
        with explicit_transaction(bind):
            rows = bind.execute(
                text(select_batch), {"after": after, "limit": batch_size, **params}
            ).all()
            if not rows:
                break
            apply_batch(bind, rows)
        after = rows[-1][0]
        report.rows += len(rows)
        report.batches += 1
        if len(rows) < batch_size:
            break


#: Rows per page assumed when the table has never been analysed (a narrow row of ~150 bytes).
_ROWS_PER_PAGE_UNKNOWN = 50


def _walk_pages(
    bind: Connection,
    walk: PageWalk,
    apply_batch: Callable[[Connection, Sequence[Any]], None],
    batch_size: int,
    params: dict[str, Any],
    report: BackfillReport,
) -> None:
    pages, rows_per_page = bind.execute(
        text(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, "
            "CASE WHEN c.reltuples > 0 AND c.relpages > 0 THEN c.reltuples / c.relpages END "
            "FROM pg_class AS c WHERE c.oid = CAST(:t AS regclass)"
        ),
        {"t": f"{SCHEMA}.{walk.table}"},
    ).one()
    step = max(1, int(batch_size // (rows_per_page or _ROWS_PER_PAGE_UNKNOWN)))
    select = text(
        walk.select.replace(
            "{pages}", "ctid >= CAST(:first_page AS tid) AND ctid < CAST(:end_page AS tid)"
        )
    )
    located = None
    if walk.passes > 1:
        if not walk.select.startswith("SELECT "):
            raise MigrationError(f"a walk in passes needs a plain SELECT: {walk.select[:40]!r}")
        located = text(f"SELECT ctid::text, {select.text[len('SELECT ') :]}")
    starts = range(0, int(pages), step)
    ranges = iter(starts)
    lock = threading.Lock()
    failed = threading.Event()

    def next_range() -> int | None:
        with lock:
            return None if failed.is_set() else next(ranges, None)

    def apply_sorted(conn: Connection, rows: Sequence[Any]) -> None:
        if rows:
            # in key order, as a key walk gives them: a statement that reaches them with
            # ``key = ANY(:keys)`` in a nested loop sorts that array on every probe, which costs
            # nothing when it is sorted already
            apply_batch(conn, sorted(rows, key=lambda row: row[0]))

    def walk_range(conn: Connection, first: int) -> int:
        bounds = {"first_page": f"({first},0)", "end_page": f"({first + step},0)", **params}
        if located is None:
            with explicit_transaction(conn):
                rows = conn.execute(select, bounds).all()
                apply_sorted(conn, rows)
            return len(rows)
        done: set[Any] = set()
        groups: list[set[Any]] = []
        for number in range(walk.passes):
            # each pass reads the rows it converts in its own transaction, as a single pass does
            with explicit_transaction(conn):
                if number == 0:
                    found = conn.execute(located, bounds).all()
                    groups = _pass_groups(found, walk.passes)
                    batch: list[Any] = [tuple(row[1:]) for row in found]
                else:  # a row an earlier pass rewrote on its page is still in the range
                    batch = [row for row in conn.execute(select, bounds) if row[0] not in done]
                if number < walk.passes - 1:  # the last pass takes every row left
                    batch = [row for row in batch if row[0] in groups[number]]
                apply_sorted(conn, batch)
            done.update(row[0] for row in batch)
        return len(done)

    def walk_with(conn: Connection) -> None:
        try:
            while (first := next_range()) is not None:
                converted = walk_range(conn, first)
                with lock:
                    report.rows += converted
                    report.batches += 1
        except BaseException:
            failed.set()  # the other workers stop after their current batch
            raise

    extra = _worker_connections(bind, min(walk.workers, len(starts)) - 1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(extra))) as pool:
            others = [pool.submit(walk_with, conn) for conn in extra]
            try:
                walk_with(bind)
            finally:
                for other in others:
                    other.exception()  # wait for it, whatever happened here
            for other in others:
                other.result()  # a worker's error, raised here
    finally:
        for conn in extra:
            conn.close()


#: Share of a page's rows each pass of a walk in passes converts, relative to the pass before:
#: a row the first pass rewrites moves to another page (its page is full), and the space its old
#: version leaves, once pruned, takes the new versions of about as many rows as this share of
#: them (a keyed digest makes a row about a quarter longer), rewritten on their own page.
_PASS_SHARE = 0.78


def _pass_groups(found: Sequence[Any], passes: int) -> list[set[Any]]:
    """The keys of ``found`` (rows ``(ctid, key, ...)``) for each pass: on each page, the rows in
    line-pointer order, split in shares ``1 : _PASS_SHARE : _PASS_SHARE ** 2 ...``."""
    weights = [_PASS_SHARE**number for number in range(passes)]
    bounds = [sum(weights[: number + 1]) / sum(weights) for number in range(passes)]
    pages: dict[int, list[tuple[int, Any]]] = {}
    for row in found:
        page, line = (int(part) for part in str(row[0]).strip("()").split(","))
        pages.setdefault(page, []).append((line, row[1]))
    groups: list[set[Any]] = [set() for _ in range(passes)]
    for rows in pages.values():
        rows.sort(key=lambda row: row[0])
        start = 0
        for number, bound in enumerate(bounds):
            end = round(len(rows) * bound)
            groups[number].update(key for _, key in rows[start:end])
            start = end
    return groups


#: Session settings a walk's extra connections take from the revision's connection.
_WORKER_SETTINGS = ("lock_timeout", "statement_timeout", "search_path", "role")


def _worker_connections(bind: Connection, count: int) -> list[Connection]:
    """``count`` more connections to the revision's database, with its session settings, each
    committing only what its own ``BEGIN``/``COMMIT`` wraps (as inside ``autocommit_block``)."""
    if count < 1:
        return []
    settings = bind.execute(
        text("SELECT " + ", ".join(f"current_setting('{name}')" for name in _WORKER_SETTINGS))
    ).one()
    opened: list[Connection] = []
    for _ in range(count):
        try:
            conn = bind.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:  # e.g. max_connections reached: the walk goes on without it
            log.warning("a page walk runs with one worker less: %s", str(exc).splitlines()[0])
            break
        for name, value in zip(_WORKER_SETTINGS, settings, strict=True):
            conn.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
        opened.append(conn)
    return opened


# --- indexes built without blocking writes ----------------------------------------------------


def create_index_concurrently(
    name: str,
    table: str,
    columns: str,
    *,
    unique: bool = False,
    where: str | None = None,
    using: str | None = None,
    include: str | None = None,
) -> None:
    """``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` outside the revision's transaction.

    Writes keep flowing while the index builds; ``IF NOT EXISTS`` makes a re-run after a failed
    build idempotent (an invalid leftover index is dropped first). ``include`` lists columns
    stored in the index without being keys (``INCLUDE``), so that a query reading only them is
    answered by an index-only scan.
    """
    with op.get_context().autocommit_block():
        if not is_offline() and _index_is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")
        op.execute(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY IF NOT EXISTS {name} "
            f"ON {SCHEMA}.{table}{f' USING {using}' if using else ''} ({columns})"
            f"{f' INCLUDE ({include})' if include else ''}"
            f"{f' WHERE {where}' if where else ''}"
        )


def create_partitioned_index_concurrently(
    name: str, table: str, columns: str, *, where: str | None = None
) -> None:
    """An index on a partitioned table, built one partition at a time without blocking writes.

    ``CREATE INDEX CONCURRENTLY`` does not work on a partitioned table, and a plain ``CREATE
    INDEX`` on one builds every partition's index under a lock that blocks writes. Instead
    (PostgreSQL's recipe): the index is created ``ON ONLY`` the parent (instant: it has no rows;
    it is invalid, and a partition created from now on gets its own index with it), each
    partition's index is built concurrently and attached, and the parent's index becomes valid
    when every partition has one. Each partition's index is named ``name`` with the table's name
    replaced by the partition's (``ix_audit_logs_p202611_...``). Idempotent: a re-run skips what
    exists and rebuilds an invalid leftover. Offline only the parent's statement is rendered.
    """
    where_sql = f" WHERE {where}" if where else ""
    op.execute(
        "-- squawk-ignore require-concurrent-index-creation -- ON ONLY a partitioned table: "
        "no rows to build (each partition's index is built concurrently, then attached)\n"
        f"CREATE INDEX IF NOT EXISTS {name} ON ONLY {SCHEMA}.{table} ({columns}){where_sql}"
    )
    if is_offline():
        op.execute(f"-- each partition of {SCHEMA}.{table} gets {name} concurrently (online only)")
        return
    bind = op.get_bind()
    partitions = [
        str(row[0])
        for row in bind.execute(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass) AND NOT i.inhdetachpending "
                "AND NOT EXISTS (SELECT 1 FROM pg_inherits AS x JOIN pg_class AS pi "
                "ON pi.oid = x.inhrelid JOIN pg_index AS ix ON ix.indexrelid = pi.oid "
                "WHERE x.inhparent = to_regclass(:parent_index) AND ix.indrelid = c.oid) "
                "ORDER BY c.relname"
            ),
            {"t": f"{SCHEMA}.{table}", "parent_index": f"{SCHEMA}.{name}"},
        )
    ]
    for partition in partitions:
        part_index = name.replace(table, partition, 1)
        create_index_concurrently(part_index, partition, columns, where=where)
        with op.get_context().autocommit_block():  # its locks end with the statement
            op.execute(f"ALTER INDEX {SCHEMA}.{name} ATTACH PARTITION {SCHEMA}.{part_index}")


def _index_is_invalid(name: str) -> bool:
    return bool(
        op.get_bind()
        .execute(
            text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = :name"
            ),
            {"schema": SCHEMA, "name": name},
        )
        .scalar()
    )


def drop_index_concurrently(name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS`` outside the revision's transaction."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")


def create_catch_up_index(table: str, where: str) -> None:
    """A temporary partial index over the rows a catch-up under a lock must find (online only).

    A catch-up that runs under a lock keeping writers out (``fill_computed_now`` after ``LOCK
    TABLE ... IN SHARE ROW EXCLUSIVE MODE``) looks for the few rows written since the backfill
    with a condition such as ``token_hash_keyed IS NULL``; without an index that is a scan of
    the whole table, and writers wait for all of it (over a second at a million rows). This
    index, ``ix_<table>_catch_up`` on ``id WHERE <where>``, is built concurrently (writers keep
    flowing; it holds only the rows not converted yet, a handful after the backfill), so that
    the catch-up finds its rows through it. Drop it after the catch-up with
    :func:`drop_catch_up_index`, or let the revision drop it with a column its condition names.

    Offline nothing is rendered: like the catch-up it serves, it needs the data, and it leaves
    nothing behind.
    """
    if is_offline():
        return
    name = f"ix_{table}_catch_up"
    with op.get_context().autocommit_block():
        if _index_is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {SCHEMA}.{table} (id) WHERE {where}"
        )


def drop_catch_up_index(table: str) -> None:
    """Drop :func:`create_catch_up_index`'s index, concurrently (online only)."""
    if not is_offline():
        drop_index_concurrently(f"ix_{table}_catch_up")


@contextmanager
def catch_up_index(table: str, where: str) -> Iterator[None]:
    """:func:`create_catch_up_index` before the block, :func:`drop_catch_up_index` after it."""
    create_catch_up_index(table, where)
    yield
    drop_catch_up_index(table)


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
    walk_pages: bool = False,
    workers: int = 1,
    passes: int = 1,
) -> BackfillReport:
    """Fill ``targets`` of ``auth.<table>`` from ``sources``, computing each value in Python.

    The table is walked by ``key`` (a UUID) in batches, each in its own short transaction; each
    batch is one ``UPDATE ... FROM unnest(:keys, :values...)``. Idempotent: ``where`` should
    exclude rows already done (``target IS NULL``), so a re-run only does what is left. With
    ``walk_pages`` the table is walked in physical order instead (:class:`PageWalk`: the same
    rows and values, read page by page; offline the key walk is rendered as before).

    Args:
        table: table name in schema ``auth``.
        sources: the columns ``compute`` receives, in order (after the key).
        targets: ``(column, sql_type)`` pairs ``compute`` returns values for, in order.
        compute: maps one row's ``sources`` to one value per target.
        where: SQL condition selecting the rows to fill.
        key: the UUID key column.
        batch_size: rows per batch (default :data:`DEFAULT_BATCH_SIZE`).
        walk_pages: walk the table by page range rather than by key.
        workers: with ``walk_pages``, how many connections walk it at once
            (:attr:`PageWalk.workers`; ``compute`` is then called from as many threads).
        passes: with ``walk_pages``, in how many transactions each range of pages is converted
            (:attr:`PageWalk.passes`: rows rewritten on their own page, without index entries).
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
    if walk_pages:
        kwargs["walk"] = PageWalk(
            table,
            f"SELECT {key}, {', '.join(sources)} FROM {SCHEMA}.{table} "  # noqa: S608
            f"WHERE {{pages}} AND ({where})",
            workers=workers,
            passes=passes,
        )
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
    "DEFAULT_BATCH_SIZE",
    "KEEP_UPDATED_AT",
    "NIL_UUID",
    "RERUN_GUARD",
    "SCHEMA",
    "BackfillReport",
    "IndexSpec",
    "PageWalk",
    "add_check_not_valid",
    "add_foreign_key",
    "allow_data_loss",
    "backfill_computed",
    "batched",
    "catch_up_index",
    "column_exists",
    "constraint_exists",
    "create_catch_up_index",
    "create_index_concurrently",
    "create_partitioned_index_concurrently",
    "create_write_log",
    "drain_write_log",
    "drop_catch_up_index",
    "drop_index_concurrently",
    "drop_write_log",
    "explicit_transaction",
    "fill_computed_now",
    "finish_not_null",
    "finish_swap",
    "has_rows",
    "is_offline",
    "not_null_check",
    "prepare_not_null",
    "quarantine_statement",
    "refuse",
    "refuse_to_drop_rows",
    "rename_not_null_constraints",
    "require_hash_keys",
    "require_privacy_keys",
    "restore_quarantined",
    "scalar",
    "step",
    "swap_column_type",
    "validate_constraint",
]
