"""Device flow hardening: device and user codes stored only as keyed digests.

Seed 000, phase 1.4 week 3. ``device_code_hash`` and ``user_code_hash`` (``TokenHasher`` digests,
the user code normalised first) are filled in batches and the plaintext codes dropped; polling
telemetry and ``retention_expires_at`` are added; pending flows whose codes collide once
normalised go to quarantine but the newest. Needs ``AUTHMODELS_HASH_KEYS`` when there are rows.

Downgrade: cannot restore the plaintext codes: the columns come back with unusable placeholders and
flows still pending or approved expire.

See docs/phases/0004-device-flow-hardening.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from alembic import op
from sqlalchemy import text

from authmodels.codes import normalize_user_code
from authmodels.config import Settings
from authmodels.revision_ops import (
    add_check_not_valid,
    backfill_computed,
    create_index_concurrently,
    drop_index_concurrently,
    fill_computed_now,
    finish_not_null,
    is_offline,
    not_null_check,
    prepare_not_null,
    quarantine_statement,
    require_hash_keys,
    restore_quarantined,
    scalar,
    step,
)
from authmodels.security.hashing import TokenHasher

revision: str = "0004_device_flow_hardening"
down_revision: str | Sequence[str] | None = "0003_webauthn_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "device_flows"
RETENTION = timedelta(days=1)

#: Columns of the rows this revision quarantines (the table during the upgrade, without the
#: plaintext codes, which the quarantine does not keep), for putting them back on downgrade.
COLUMNS_0004 = [
    "id", "device_code_hash", "user_code_hash", "client_id", "scope", "status", "user_id",
    "expires_at", "approved_at", "created_at", "updated_at", "interval_seconds",
    "last_polled_at", "poll_count", "retention_expires_at",
]  # fmt: skip


def _hasher() -> TokenHasher | None:
    ring = require_hash_keys(tables_with_rows=[TABLE])
    if ring is None and has_quarantined_flows():
        ring = Settings.from_env().require_hash_keys()
    return None if ring is None else TokenHasher.from_ring(ring)


def has_quarantined_flows() -> bool:
    """Whether rows of device_flows sit in quarantine (with plaintext codes to replace)."""
    return bool(
        scalar(
            "SELECT EXISTS (SELECT 1 FROM auth.quarantine WHERE source_table = :t)", {"t": TABLE}
        )
    )


def upgrade() -> None:
    hasher = _hasher()  # before any change: no key, no migration

    def digests(row: Sequence[Any]) -> tuple[bytes, bytes, Any]:
        assert hasher is not None  # rows exist, so require_hash_keys returned a ring
        device_code, user_code, expires_at = row
        return (
            hasher.digest(device_code),
            hasher.digest(normalize_user_code(user_code)),
            expires_at + RETENTION,
        )

    fill: dict[str, Any] = {
        "sources": ["device_code", "user_code", "expires_at"],
        "targets": [
            ("device_code_hash", "bytea"),
            ("user_code_hash", "bytea"),
            ("retention_expires_at", "timestamptz"),
        ],
        "compute": digests,
    }

    bounded = (
        "-- squawk-ignore prefer-bigint-over-int -- bounded per flow: seconds between polls, "
        "polls before the code expires\n"
    )
    for column in (
        "device_code_hash BYTEA",
        "user_code_hash BYTEA",
        f"{bounded}interval_seconds INTEGER NOT NULL DEFAULT 5",
        "last_polled_at TIMESTAMPTZ",
        f"{bounded}poll_count INTEGER NOT NULL DEFAULT 0",
        "retention_expires_at TIMESTAMPTZ",
    ):
        op.execute(f"ALTER TABLE auth.{TABLE}\nADD COLUMN IF NOT EXISTS {column}")

    backfill_computed(TABLE, where="device_code_hash IS NULL", **fill)

    with step():
        newest_first = """
        ranked AS (
            SELECT id, row_number() OVER (
                       PARTITION BY user_code_hash ORDER BY created_at DESC, id
                   ) AS position
              FROM auth.device_flows
             WHERE status = 'pending' AND user_code_hash IS NOT NULL
        )"""
        op.execute(
            quarantine_statement(
                TABLE,
                ctes=newest_first,
                using="ranked",
                where="t.id = ranked.id AND ranked.position > 1",
                reason="'another pending flow has the same user code once normalised; "
                "the newest was kept'",
                revision=revision,
            )
        )

    _redact_quarantine(hasher)

    create_index_concurrently(
        "uq_device_flows_device_code_hash", TABLE, "device_code_hash", unique=True
    )
    create_index_concurrently(
        "uq_device_flows_user_code_hash_pending",
        TABLE,
        "user_code_hash",
        unique=True,
        where="status = 'pending'",
    )
    create_index_concurrently("idx_device_flows_user_code_hash", TABLE, "user_code_hash")
    create_index_concurrently("idx_device_flows_expires", TABLE, "expires_at")
    create_index_concurrently("idx_device_flows_retention", TABLE, "retention_expires_at")

    with step():
        # Writers wait (readers do not) while flows started since the backfill are hashed and
        # the NOT NULL checks start applying to new rows.
        op.execute(f"LOCK TABLE auth.{TABLE} IN SHARE ROW EXCLUSIVE MODE")
        fill_computed_now(TABLE, where="device_code_hash IS NULL", **fill)
        for column in ("device_code_hash", "user_code_hash"):
            add_check_not_valid(TABLE, not_null_check(TABLE, column), f"{column} IS NOT NULL")
    for column in ("device_code_hash", "user_code_hash"):
        prepare_not_null(TABLE, column, check_added=True)

    # The revision's final transaction: instant changes only.
    for column in ("device_code_hash", "user_code_hash"):
        finish_not_null(TABLE, column)
    for column in ("device_code", "user_code"):
        op.execute(
            "-- squawk-ignore ban-drop-column -- the plaintext code is replaced by its keyed "
            "digest, filled above; it cannot be restored (see the docstring)\n"
            f"ALTER TABLE auth.{TABLE} DROP COLUMN IF EXISTS {column}"
        )


def _redact_quarantine(hasher: TokenHasher | None) -> None:
    """Replace the plaintext codes kept in quarantined device flows by their digests."""
    if is_offline():
        op.execute("-- quarantined device flows: plaintext codes replaced by digests (online only)")
        return
    bind = op.get_bind()
    rows = bind.execute(
        text(
            "SELECT id, row_data->>'device_code', row_data->>'user_code' FROM auth.quarantine "
            "WHERE source_table = :t AND row_data ? 'device_code'"
        ),
        {"t": TABLE},
    ).all()
    for row_id, device_code, user_code in rows:
        assert hasher is not None
        bind.execute(
            text(
                "UPDATE auth.quarantine SET row_data = row_data - 'device_code' - 'user_code' "
                "|| jsonb_build_object('device_code_hash', CAST(:d AS bytea), "
                "'user_code_hash', CAST(:u AS bytea)) WHERE id = :id"
            ),
            {
                "id": row_id,
                "d": hasher.digest(device_code),
                "u": hasher.digest(normalize_user_code(user_code)),
            },
        )


def downgrade() -> None:
    op.execute(
        f"ALTER TABLE auth.{TABLE} ADD COLUMN IF NOT EXISTS device_code TEXT, "
        "ADD COLUMN IF NOT EXISTS user_code TEXT"
    )
    for name in (
        "uq_device_flows_device_code_hash",
        "uq_device_flows_user_code_hash_pending",
        "idx_device_flows_user_code_hash",
        "idx_device_flows_expires",
        "idx_device_flows_retention",
    ):
        drop_index_concurrently(name)
    restore_quarantined(TABLE, revision=revision, columns=COLUMNS_0004)
    # The plaintext is gone: random values nobody holds keep the 0003 constraints, and flows
    # that were still usable end as expired.
    op.execute(
        f"UPDATE auth.{TABLE} SET "
        "device_code = 'unrestorable-' || gen_random_uuid(), "
        "user_code = 'unrestorable-' || gen_random_uuid(), "
        "status = CASE WHEN status IN ('pending', 'approved') THEN 'expired' ELSE status END "
        "WHERE device_code IS NULL"
    )
    op.execute(
        "UPDATE auth.quarantine SET row_data = row_data - 'device_code_hash' - 'user_code_hash' "
        "|| jsonb_build_object('device_code', 'unrestorable-' || gen_random_uuid(), "
        "'user_code', 'unrestorable-' || gen_random_uuid()) "
        f"WHERE source_table = '{TABLE}' AND row_data ? 'device_code_hash'"
    )
    for column in ("device_code", "user_code"):
        prepare_not_null(TABLE, column)
    for column in ("device_code", "user_code"):
        create_index_concurrently(f"ix_{TABLE}_{column}", TABLE, column, unique=True)
    for column in ("device_code", "user_code"):
        finish_not_null(TABLE, column)
    op.execute(
        f"ALTER TABLE auth.{TABLE} DROP COLUMN device_code_hash, DROP COLUMN user_code_hash, "
        "DROP COLUMN interval_seconds, DROP COLUMN last_polled_at, DROP COLUMN poll_count, "
        "DROP COLUMN retention_expires_at"
    )
