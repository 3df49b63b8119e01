"""Alembic configuration for the packaged revisions, and helpers the revisions share.

A service that only ``pip install``-ed authmodels migrates with::

    from alembic import command
    from authmodels.migrations import alembic_config

    command.upgrade(alembic_config("postgresql://app@db/app"), "head")

or composes our chain into its own Alembic environment: our first revision carries
``branch_labels=("authmodels",)``, so a downstream revision can declare
``depends_on = "<the authmodels revision it needs>"`` (e.g. ``"0016_retention_policies"``), or
``depends_on = "authmodels"`` (our first revision, when ``auth.users`` is all it needs); see
:func:`version_locations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import op
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from authmodels.config import KeyRing, Settings

#: Schema of every authmodels table, and of Alembic's version table.
SCHEMA = "auth"
VERSION_TABLE = "alembic_version"
#: Key of the PostgreSQL advisory lock held while migrating (two deployers never migrate at once).
ADVISORY_LOCK_KEY = 0x61757468_6D6F64  # "authmod"
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "30min"
DEFAULT_BATCH_SIZE = 5000


def script_location() -> Path:
    """The folder holding ``env.py`` and ``versions/``.

    In an installed wheel this is ``authmodels/_alembic`` inside the package; in a source checkout
    (editable install) it is the repository's top-level ``alembic/`` folder.
    """
    packaged = Path(__file__).resolve().parent / "_alembic"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError(
        f"authmodels' migrations are missing: neither {packaged} nor {checkout} holds env.py"
    )


def version_locations() -> str:
    """The ``versions/`` folder, for a downstream ``version_locations`` setting."""
    return str(script_location() / "versions")


def alembic_config(
    url: str | URL | None = None,
    *,
    connection: Connection | None = None,
    **attributes: Any,
) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the packaged revision chain.

    Args:
        url: database URL; when None, ``env.py`` resolves one (environment, then embedded server).
        connection: an open connection to run on instead (tests, the pytest plugin).
        **attributes: extra ``config.attributes`` (``lock_timeout``, ``statement_timeout``).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("version_locations", version_locations())
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes.update(attributes)
    return cfg


# --- helpers for revisions -----------------------------------------------------------------------


def is_offline() -> bool:
    """True when Alembic renders SQL (``--sql``) instead of running it."""
    return bool(op.get_context().as_sql)


def require_hash_keys(*, tables_with_rows: Sequence[str]) -> KeyRing | None:
    """The hash key ring a backfill needs, checked before the revision changes anything.

    Returns None when none of ``tables_with_rows`` (qualified names) holds a row, or in offline
    mode, so an empty database migrates without keys.

    Raises:
        MissingKeyError: rows need hashing and ``AUTHMODELS_HASH_KEYS`` is not set.
    """
    if is_offline():
        return None
    bind = op.get_bind()
    has_rows = any(
        # the table names are the revision's own constants, never user input
        bind.execute(text(f"SELECT EXISTS (SELECT 1 FROM {t})")).scalar()  # noqa: S608
        for t in tables_with_rows
    )
    if not has_rows:
        return Settings.from_env().hash_keys
    return Settings.from_env().require_hash_keys()


@dataclass
class BackfillReport:
    """What a batched backfill did."""

    rows: int = 0
    batches: int = 0
    seconds: float = 0.0


def batched(
    select_batch: str,
    apply_batch: Callable[[Connection, Sequence[Any]], None],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    params: dict[str, Any] | None = None,
) -> BackfillReport:
    """Run a backfill in short transactions, walking the table by key (keyset pagination).

    ``select_batch`` is a SELECT whose first column is the key, ordered by it, taking the bind
    parameters ``:after`` (the last key of the previous batch, NULL at first) and ``:limit``; e.g.
    ``SELECT id, email FROM auth.t WHERE (:after IS NULL OR id > :after) ORDER BY id LIMIT :limit``.
    ``apply_batch(connection, rows)`` writes one batch. Each batch commits on its own inside
    Alembic's autocommit block, so no lock outlives a batch and a crash loses at most one batch
    (the revision is re-run from the start, and every backfill is written to be idempotent).

    In offline mode (``--sql``) nothing runs: the backfill needs the data.
    """
    report = BackfillReport()
    if is_offline():
        op.execute(f"-- batched backfill runs online only: {select_batch.splitlines()[0]}")
        return report
    started = time.perf_counter()
    after: Any = None
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        while True:
            with explicit_transaction(bind):
                rows = bind.execute(
                    text(select_batch), {"after": after, "limit": batch_size, **(params or {})}
                ).all()
                if not rows:
                    break
                apply_batch(bind, rows)
            after = rows[-1][0]
            report.rows += len(rows)
            report.batches += 1
            if len(rows) < batch_size:
                break
    report.seconds = time.perf_counter() - started
    return report


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
