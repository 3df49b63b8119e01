"""Keyed log hashes: audit entries and reset links keep keyed IP / user-agent hashes, never raw.

Found in issue 12 (seed 000, week 6). ``audit_logs``, ``audit_logs_archive`` and
``password_reset_tokens`` gain ``ip_hash`` / ``ua_hash`` (``PrivacyHasher`` digests, shape checked),
filled in batches with a change log for the rows written meanwhile; the index and the archive
function follow; the raw columns are dropped. Needs ``AUTHMODELS_PRIVACY_KEYS`` (or
``AUTHMODELS_HASH_KEYS``) when the tables hold rows.

Downgrade: cannot restore raw IP addresses and user agents (the columns come back NULL).

See docs/phases/0025-keyed-log-hashes.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from alembic import op
from sqlalchemy import text

from authmodels.revision_ops import (
    DEFAULT_BATCH_SIZE,
    SCHEMA,
    add_check_not_valid,
    backfill_computed,
    create_partitioned_index_concurrently,
    fill_computed_now,
    is_offline,
    require_privacy_keys,
    step,
    validate_constraint,
)
from authmodels.security.privacy import PrivacyHasher

revision: str = "0025_keyed_log_hashes"
down_revision: str | Sequence[str] | None = "0024_insert_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables that kept raw values; audit_logs is partitioned by month (0015).
TABLES = ("audit_logs", "audit_logs_archive", "password_reset_tokens")
PARTITIONED = "audit_logs"
RAW = ("ip_address", "user_agent")
HASHES = ("ip_hash", "ua_hash")
#: The temporary log of rows written with raw values while the revision runs.
PENDING = f"{SCHEMA}.hash_pending_0025"
PENDING_FUNCTION = f"{SCHEMA}.hash_pending_0025()"
#: (name, columns) of the audit index on the client address, before and after.
OLD_INDEX = ("ix_audit_logs_ip_address_created_at", "ip_address, created_at DESC")
NEW_INDEX = ("ix_audit_logs_ip_hash_created_at", "ip_hash, created_at DESC")

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
log = logging.getLogger("authmodels.migrations")


def _check(table: str, column: str) -> str:
    return f"ck_{table}_{column}_digest"


def _pending_trigger(table: str) -> str:
    return f"{table}_hash_pending_0025"


CREATE_PENDING = [
    f"""
CREATE TABLE IF NOT EXISTS {PENDING} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name TEXT NOT NULL,
    row_id UUID NOT NULL
)""",
    # SECURITY DEFINER: the application role writes the tables, not this log
    f"""
CREATE OR REPLACE FUNCTION {PENDING_FUNCTION} RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR NEW.ip_address IS NOT NULL OR NEW.user_agent IS NOT NULL THEN
        INSERT INTO {PENDING} (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id);
    END IF;
    RETURN NULL;
END
$$""",
]


def _archive_function(columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    return f"""
CREATE OR REPLACE FUNCTION auth.archive_audit_logs(
    older_than interval DEFAULT interval '90 days', batch_size integer DEFAULT 10000
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved bigint;
BEGIN
    IF older_than < interval '0' OR batch_size < 1 THEN
        RAISE EXCEPTION 'archive_audit_logs needs older_than >= 0 and batch_size >= 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One statement: a row leaves audit_logs only together with its copy in the archive.
    WITH batch AS (
        SELECT id FROM auth.audit_logs
         WHERE created_at < now() - older_than
         ORDER BY created_at
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM auth.audit_logs AS a USING batch WHERE a.id = batch.id
        RETURNING a.*
    )
    INSERT INTO auth.audit_logs_archive ({names})
    SELECT {names} FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END;
$$"""


#: The archive's columns as 0009 copies them, and with the hashes instead of the raw values.
_ARCHIVED_0009 = [
    "id", "user_id", "event_type", "ip_address", "user_agent", "details", "created_at",
    "event_status", "actor_user_id", "target_user_id", "action", "correlation_id",
]  # fmt: skip
ARCHIVED = [c for c in _ARCHIVED_0009 if c not in RAW] + list(HASHES)


def _fill(hasher: PrivacyHasher | None) -> dict[str, Any]:
    def hashes(row: Sequence[Any]) -> tuple[bytes | None, bytes | None]:
        ip, user_agent = row
        if hasher is None:  # unreachable: rows exist, so a ring was required
            raise AssertionError("no privacy key ring")
        return (
            None if ip is None else hasher.ip_hash(ip),
            None if user_agent is None else hasher.ua_hash(user_agent),
        )

    return {
        # host() gives the address without a netmask, whatever the INET value carries
        "sources": ["host(ip_address)", "user_agent"],
        "targets": [("ip_hash", "bytea"), ("ua_hash", "bytea")],
        "compute": hashes,
    }


_UNHASHED = (
    "(ip_hash IS NULL AND ip_address IS NOT NULL) OR (ua_hash IS NULL AND user_agent IS NOT NULL)"
)


def _leaves() -> list[tuple[str, str]]:
    """(table, its parent) of the tables that hold rows: each partition of audit_logs (named
    when the upgrade runs), then the two plain tables (their own parent)."""
    if is_offline():
        return [(t, t) for t in TABLES]
    partitions = [
        (str(row[0]), PARTITIONED)
        for row in op.get_bind().execute(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname"
            ),
            {"t": f"{SCHEMA}.{PARTITIONED}"},
        )
    ]
    return [*partitions, *((t, t) for t in TABLES if t != PARTITIONED)]


def _drain(fill: dict[str, Any], *, final: bool) -> int:
    """Hash the rows the change log names, oldest entries first; their entries go.

    Outside the final transaction: batches of :data:`DEFAULT_BATCH_SIZE` entries, each in its
    own short transaction, until a batch finds fewer (the writes left are few). In the final
    transaction (writes blocked): every entry left, at once. Returns the rows hashed.
    """
    if is_offline():
        op.execute("-- rows written with raw values during the backfill are hashed online only")
        return 0
    hashed = 0
    while True:
        with nullcontext() if final else step():
            last, entries = (
                op.get_bind()
                .execute(
                    text(
                        f"SELECT max(seq), count(*) FROM (SELECT seq FROM {PENDING} "
                        "ORDER BY seq LIMIT :n) AS batch"
                    ),
                    {"n": None if final else DEFAULT_BATCH_SIZE},
                )
                .one()
            )
            if last is not None:
                tables = op.get_bind().execute(
                    text(f"SELECT DISTINCT table_name FROM {PENDING} WHERE seq <= :last"),
                    {"last": last},
                )
                for (table,) in tables.all():
                    if not _NAME.match(str(table)):
                        raise AssertionError(f"unexpected table name in the change log: {table}")
                    hashed += fill_computed_now(
                        str(table),
                        **fill,
                        where=f"id IN (SELECT row_id FROM {PENDING} "
                        f"WHERE table_name = '{table}' AND seq <= {int(last)})",
                    )
                op.get_bind().execute(
                    text(f"DELETE FROM {PENDING} WHERE seq <= :last"),
                    {"last": last},
                )
        if final or entries < DEFAULT_BATCH_SIZE:
            return hashed


def upgrade() -> None:
    ring = require_privacy_keys(tables_with_rows=TABLES)  # before any change
    fill = _fill(None if ring is None else PrivacyHasher.from_ring(ring))

    # 1. the change log, then per table: the hash columns, their checks (NOT VALID), its trigger
    with step():
        for statement in CREATE_PENDING:
            op.execute(statement)
    for table in TABLES:
        with step():
            op.execute(
                f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS ip_hash BYTEA, "
                "ADD COLUMN IF NOT EXISTS ua_hash BYTEA"
            )
            for column in HASHES:
                add_check_not_valid(table, _check(table, column), f"auth.is_token_digest({column})")
            op.execute(f"DROP TRIGGER IF EXISTS {_pending_trigger(table)} ON {SCHEMA}.{table}")
            op.execute(
                f"CREATE TRIGGER {_pending_trigger(table)} "
                f"AFTER INSERT OR UPDATE OF ip_address, user_agent ON {SCHEMA}.{table} "
                f"FOR EACH ROW EXECUTE FUNCTION {PENDING_FUNCTION}"
            )

    # 2. the rows that exist: each partition, then the plain tables, in batches
    leaves = _leaves()
    for number, (leaf, _) in enumerate(leaves, 1):
        report = backfill_computed(leaf, **fill, where=_UNHASHED)
        log.info(
            "0025: %d of %d tables hashed (%s: %d rows)", number, len(leaves), leaf, report.rows
        )

    # 3. the rows written meanwhile, until few are left; then the checks and the index
    log.info("0025: %d rows written during the backfill hashed", _drain(fill, final=False))
    for leaf, parent in leaves:
        with step():
            for column in HASHES:
                validate_constraint(leaf, _check(parent, column))
    with step():  # each partition is validated: this only marks the parent's checks
        for column in HASHES:
            validate_constraint(PARTITIONED, _check(PARTITIONED, column))
    create_partitioned_index_concurrently(NEW_INDEX[0], PARTITIONED, NEW_INDEX[1])

    # 4. the final transaction: writes wait while the last rows are hashed; the raw values go
    op.execute(
        f"LOCK TABLE {', '.join(f'{SCHEMA}.{t}' for t in TABLES)} IN SHARE ROW EXCLUSIVE MODE"
    )
    _drain(fill, final=True)
    for table in TABLES:
        op.execute(
            "-- squawk-ignore ban-drop-trigger -- the temporary trigger of this revision's change "
            f"log\nDROP TRIGGER IF EXISTS {_pending_trigger(table)} ON {SCHEMA}.{table}"
        )
    op.execute(
        "-- squawk-ignore ban-drop-function -- the temporary change log's trigger function\n"
        f"DROP FUNCTION IF EXISTS {PENDING_FUNCTION}"
    )
    op.execute(
        "-- squawk-ignore ban-drop-table -- the temporary change log of this revision, empty now\n"
        f"DROP TABLE IF EXISTS {PENDING}"
    )
    op.execute(_archive_function(ARCHIVED))
    for table in TABLES:
        for column in RAW:
            op.execute(
                "-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; "
                "the raw value must not be kept (see the docstring)\n"
                f"ALTER TABLE {SCHEMA}.{table} DROP COLUMN IF EXISTS {column}"
            )


def downgrade() -> None:
    # The raw values cannot be recovered from keyed hashes: the columns come back empty.
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT"
        )
    op.execute(_archive_function(_ARCHIVED_0009))
    create_partitioned_index_concurrently(OLD_INDEX[0], PARTITIONED, OLD_INDEX[1])
    for table in TABLES:
        op.execute(f"ALTER TABLE {SCHEMA}.{table} DROP COLUMN ip_hash, DROP COLUMN ua_hash")
