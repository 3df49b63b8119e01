"""Token and session safety: every stored token becomes a keyed digest; DPoP binding and lineage.

Seed 000, phase 1.4 week 4. ``access_tokens.token`` (plaintext) and seed 004's unkeyed SHA-256 hex
columns become ``TokenHasher`` digests (``digest_scheme`` 2 for those converted from the hex),
filled in batches; access tokens gain ``dpop_jkt``, ``rotated_from`` and ``revoked_at``, sessions
``dpop_jkt`` and ``last_rotated_at``, refresh tokens ``dpop_jkt``. Needs ``AUTHMODELS_HASH_KEYS``
when there are rows.

Downgrade: cannot restore the plaintext access tokens nor the unkeyed hashes: the old columns come
back with unusable placeholders and every token is made unusable (everyone signs in again).

See docs/phases/0005-token-session-safety.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import text

from authmodels.config import Settings
from authmodels.revision_ops import (
    add_check_not_valid,
    add_foreign_key,
    backfill_computed,
    catch_up_index,
    create_index_concurrently,
    drop_index_concurrently,
    fill_computed_now,
    finish_not_null,
    is_offline,
    not_null_check,
    prepare_not_null,
    rename_not_null_constraints,
    require_hash_keys,
    scalar,
    step,
    validate_constraint,
)
from authmodels.security.hashing import TokenHasher

revision: str = "0005_token_session_safety"
down_revision: str | Sequence[str] | None = "0004_device_flow_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Seed-004 tables -> their legacy SHA-256 hex columns (the first one is NOT NULL).
LEGACY: dict[str, list[str]] = {
    "sessions": ["token_hash", "refresh_token_hash"],
    "refresh_tokens": ["token_hash"],
    "password_reset_tokens": ["token_hash"],
    "email_verification_tokens": ["token_hash"],
}
#: Indexes on the legacy columns: name -> (table, column, partial-index condition).
LEGACY_INDEXES: dict[str, tuple[str, str, str | None]] = {
    "ix_sessions_token_hash": ("sessions", "token_hash", "is_active"),
    "ix_refresh_tokens_token_hash": (
        "refresh_tokens",
        "token_hash",
        "used_at IS NULL AND revoked_at IS NULL",
    ),
    "ix_password_reset_tokens_token_hash": ("password_reset_tokens", "token_hash", None),
    "ix_email_verification_tokens_token_hash": ("email_verification_tokens", "token_hash", None),
}
#: How the downgrade makes a row unusable, per table (its token can no longer be checked).
DISABLE: dict[str, str] = {
    "sessions": "is_active = false, revoked_at = coalesce(revoked_at, now()), "
    "revoked_reason = coalesce(revoked_reason, 'token digest not restorable (downgrade)')",
    "refresh_tokens": "revoked_at = coalesce(revoked_at, now())",
    "password_reset_tokens": "used_at = coalesce(used_at, now())",
    "email_verification_tokens": "expires_at = least(expires_at, now())",
}

SCHEME_RAW = 1
SCHEME_LEGACY_HEX = 2
SMALL = (
    "-- squawk-ignore prefer-bigint-over-smallint -- a scheme number, 1 or 2 "
    "(ck_<table>_digest_scheme_known)\n"
)
TABLES = [*LEGACY, "access_tokens"]


def _hasher() -> TokenHasher | None:
    ring = require_hash_keys(tables_with_rows=TABLES)
    if ring is None and scalar(
        "SELECT EXISTS (SELECT 1 FROM auth.quarantine WHERE source_table = 'access_tokens')"
    ):
        ring = Settings.from_env().require_hash_keys()
    return None if ring is None else TokenHasher.from_ring(ring)


def _legacy_fill(table: str, hasher: TokenHasher | None) -> dict[str, Any]:
    legacy = LEGACY[table]

    def compute(row: Sequence[Any]) -> tuple[Any, ...]:
        assert hasher is not None  # rows exist, so require_hash_keys returned a ring
        digests = [None if hex_ is None else hasher.digest(hex_.lower()) for hex_ in row]
        return (*digests, SCHEME_LEGACY_HEX)

    return {
        "sources": legacy,
        "targets": [*((f"{c}_keyed", "bytea") for c in legacy), ("digest_scheme", "smallint")],
        "compute": compute,
        "where": f"{legacy[0]}_keyed IS NULL",
    }


def _access_fill(hasher: TokenHasher | None) -> dict[str, Any]:
    def compute(row: Sequence[Any]) -> tuple[bytes]:
        assert hasher is not None
        return (hasher.digest(row[0]),)

    return {
        "sources": ["token"],
        "targets": [("token_hash", "bytea")],
        "compute": compute,
        "where": "token_hash IS NULL",
    }


def upgrade() -> None:
    hasher = _hasher()  # before any change: no key, no migration

    for table, legacy in LEGACY.items():
        for column in legacy:
            op.execute(f"ALTER TABLE auth.{table} ADD COLUMN IF NOT EXISTS {column}_keyed BYTEA")
        op.execute(
            f"ALTER TABLE auth.{table}\n"
            f"ADD COLUMN IF NOT EXISTS {SMALL}digest_scheme SMALLINT NOT NULL "
            f"DEFAULT {SCHEME_RAW}"
        )
    for table, column in [
        ("access_tokens", "token_hash BYTEA"),
        ("access_tokens", "dpop_jkt TEXT"),
        ("access_tokens", "rotated_from UUID"),
        ("access_tokens", "revoked_at TIMESTAMPTZ"),
        ("sessions", "dpop_jkt TEXT"),
        ("sessions", "last_rotated_at TIMESTAMPTZ"),
        ("refresh_tokens", "dpop_jkt TEXT"),
    ]:
        op.execute(f"ALTER TABLE auth.{table} ADD COLUMN IF NOT EXISTS {column}")

    # page by page, on two connections: the same rows and digests (docs/benchmarks.md,
    # "Migrations on a large database")
    for table in LEGACY:
        backfill_computed(
            table, **_legacy_fill(table, hasher), walk_pages=True, workers=2, passes=3
        )
    backfill_computed("access_tokens", **_access_fill(hasher), walk_pages=True, workers=2, passes=3)
    _redact_quarantine(hasher)

    for name, (table, column, where) in LEGACY_INDEXES.items():
        create_index_concurrently(f"{name}_keyed", table, f"{column}_keyed", where=where)
    create_index_concurrently(
        "uq_access_tokens_token_hash", "access_tokens", "token_hash", unique=True
    )
    create_index_concurrently("idx_tokens_user_expires", "access_tokens", "user_id, expires_at")
    create_index_concurrently("idx_tokens_jkt", "access_tokens", "dpop_jkt")
    create_index_concurrently(
        "idx_tokens_revoked", "access_tokens", "revoked_at", where="revoked_at IS NOT NULL"
    )
    drop_index_concurrently("ix_access_tokens_user_id")
    add_foreign_key("access_tokens", "rotated_from", "access_tokens", ondelete="SET NULL")

    for table, legacy in LEGACY.items():
        # the rows written since the backfill, found under the lock without a scan (online only)
        with catch_up_index(table, _legacy_fill(table, hasher)["where"]), step():
            # Writers wait (readers do not) while rows written since the backfill are converted
            # and the checks start applying to new rows.
            op.execute(f"LOCK TABLE auth.{table} IN SHARE ROW EXCLUSIVE MODE")
            fill_computed_now(table, **_legacy_fill(table, hasher))
            keyed = f"{legacy[0]}_keyed"
            add_check_not_valid(table, not_null_check(table, keyed), f"{keyed} IS NOT NULL")
            add_check_not_valid(
                table,
                f"ck_{table}_digest_scheme_known",
                f"digest_scheme IN ({SCHEME_RAW}, {SCHEME_LEGACY_HEX})",
            )
        prepare_not_null(table, f"{legacy[0]}_keyed", check_added=True)
        with step():
            validate_constraint(table, f"ck_{table}_digest_scheme_known")
    with catch_up_index("access_tokens", _access_fill(hasher)["where"]), step():
        op.execute("LOCK TABLE auth.access_tokens IN SHARE ROW EXCLUSIVE MODE")
        fill_computed_now("access_tokens", **_access_fill(hasher))
        add_check_not_valid(
            "access_tokens", not_null_check("access_tokens", "token_hash"), "token_hash IS NOT NULL"
        )
    prepare_not_null("access_tokens", "token_hash", check_added=True)

    # The revision's final transaction: instant changes only.
    finish_not_null("access_tokens", "token_hash")
    op.execute(
        "-- squawk-ignore ban-drop-column -- the plaintext token is replaced by its keyed "
        "digest, filled above; it cannot be restored (see the docstring)\n"
        "ALTER TABLE auth.access_tokens DROP COLUMN IF EXISTS token"
    )
    for table, legacy in LEGACY.items():
        finish_not_null(table, f"{legacy[0]}_keyed")
        for column in legacy:
            op.execute(
                "-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed "
                "digest, filled above; it cannot be restored (see the docstring)\n"
                f"ALTER TABLE auth.{table} DROP COLUMN IF EXISTS {column}"
            )
            op.execute(
                "-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash "
                "it replaces; the application release of this phase reads BYTEA digests\n"
                f"ALTER TABLE auth.{table} RENAME COLUMN {column}_keyed TO {column}"
            )
        rename_not_null_constraints(table)
    for name in LEGACY_INDEXES:
        op.execute(
            "-- squawk-ignore renaming-object -- the index on the keyed digest takes the name of "
            "the one it replaces (dropped with the old column)\n"
            f"ALTER INDEX auth.{name}_keyed RENAME TO {name}"
        )


def _redact_quarantine(hasher: TokenHasher | None) -> None:
    """Replace the plaintext access tokens kept in quarantine (by 0002) by their digests."""
    if is_offline():
        op.execute("-- quarantined access tokens: plaintext replaced by digests (online only)")
        return
    bind = op.get_bind()
    rows = bind.execute(
        text(
            "SELECT id, row_data->>'token' FROM auth.quarantine "
            "WHERE source_table = 'access_tokens' AND row_data ? 'token'"
        )
    ).all()
    for row_id, token in rows:
        assert hasher is not None
        bind.execute(
            text(
                "UPDATE auth.quarantine SET row_data = row_data - 'token' "
                "|| jsonb_build_object('token_hash', CAST(:d AS bytea)) WHERE id = :id"
            ),
            {"id": row_id, "d": hasher.digest(token)},
        )


def downgrade() -> None:
    placeholder = "'unrestorable-' || gen_random_uuid()"

    # access tokens: the plaintext is gone
    op.execute("ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS token TEXT")
    op.execute(
        f"UPDATE auth.access_tokens SET token = {placeholder}, "
        "expires_at = least(expires_at, now()) WHERE token IS NULL"
    )
    op.execute(
        "UPDATE auth.quarantine SET row_data = row_data - 'token_hash' "
        f"|| jsonb_build_object('token', {placeholder}) "
        "WHERE source_table = 'access_tokens' AND row_data ? 'token_hash'"
    )
    # seed-004 tables: the unkeyed hashes are gone
    for table, legacy in LEGACY.items():
        for column in legacy:
            op.execute(f"ALTER TABLE auth.{table} RENAME COLUMN {column} TO {column}_keyed")
            op.execute(f"ALTER TABLE auth.{table} ADD COLUMN {column} TEXT")
        fills = ", ".join(
            f"{c} = CASE WHEN {c}_keyed IS NULL THEN NULL ELSE {placeholder} END" for c in legacy
        )
        op.execute(f"UPDATE auth.{table} SET {fills}, {DISABLE[table]}")

    prepare_not_null("access_tokens", "token")
    for table, legacy in LEGACY.items():
        prepare_not_null(table, legacy[0])
    create_index_concurrently("ix_access_tokens_token", "access_tokens", "token", unique=True)
    create_index_concurrently("ix_access_tokens_user_id", "access_tokens", "user_id")
    for name in (
        "uq_access_tokens_token_hash",
        "idx_tokens_user_expires",
        "idx_tokens_jkt",
        "idx_tokens_revoked",
        *(f"{name}" for name in LEGACY_INDEXES),
    ):
        drop_index_concurrently(name)
    for name, (table, column, where) in LEGACY_INDEXES.items():
        create_index_concurrently(name, table, column, where=where)

    finish_not_null("access_tokens", "token")
    op.execute(
        "ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS "
        "fk_access_tokens_rotated_from_access_tokens"
    )
    op.execute(
        "ALTER TABLE auth.access_tokens DROP COLUMN token_hash, DROP COLUMN dpop_jkt, "
        "DROP COLUMN rotated_from, DROP COLUMN revoked_at"
    )
    op.execute("ALTER TABLE auth.sessions DROP COLUMN dpop_jkt, DROP COLUMN last_rotated_at")
    op.execute("ALTER TABLE auth.refresh_tokens DROP COLUMN dpop_jkt")
    for table, legacy in LEGACY.items():
        finish_not_null(table, legacy[0])
        op.execute(f"ALTER TABLE auth.{table} DROP CONSTRAINT ck_{table}_digest_scheme_known")
        drops = ", ".join(f"DROP COLUMN {c}_keyed" for c in legacy)
        op.execute(f"ALTER TABLE auth.{table} {drops}, DROP COLUMN digest_scheme")
        rename_not_null_constraints(table)
