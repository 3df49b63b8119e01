"""Trusted devices: a device is known by the keyed hash of its fingerprint, and sessions name it.

Found in issue 13 ("account lifecycle", trusted devices). Revision 0010's ``user_devices`` keyed a
device by ``device_id``, the identifier its client chose, in plain text: a stable identifier of a
person's browser or phone, readable by whoever reads a backup. And no session said which device
it was started on, so revoking a device could not end its sessions.

- ``user_devices.fingerprint_hash`` (BYTEA) replaces ``device_id``: the keyed, domain-separated
  HMAC of the fingerprint (:meth:`authmodels.security.privacy.PrivacyHasher.client_hash`,
  ``AUTHMODELS_PRIVACY_KEYS``, falling back to ``AUTHMODELS_HASH_KEYS``), computed in Python from
  each existing ``device_id``. Checked by ``ck_user_devices_fingerprint_hash_digest``, unique per
  user (``uq_user_devices_user_id_fingerprint_hash``), NOT NULL. ``device_id``, its unique
  constraint and its length check are dropped.
- ``uq_user_devices_id_user_id``: the target of the sessions' reference below.
- ``sessions.device_id`` (UUID, NULL): the device a session was started on. The foreign key
  ``fk_sessions_device_id_user_devices`` is ``(device_id, user_id)`` -> ``user_devices (id,
  user_id)``: a session can only name a device of its own user, whatever the caller writes.
  ``ON DELETE SET NULL (device_id)``: a device row that goes leaves its sessions without one.
  Indexed (``ix_sessions_device_id``, partial) for revocation by device and for that action.

How it runs on a live database: as 0032 does (a temporary write log, ``auth.
device_pending_0033``, catches the rows written while existing rows are hashed in batches; the
unique indexes are built concurrently and become constraints with ``USING INDEX``; one short
transaction keeps writers of ``user_devices`` out while the last rows are hashed and
``device_id`` is dropped; ``NOT NULL`` through a validated check). On ``sessions`` the column
is instant, the index is built concurrently, and the foreign key is added ``NOT VALID`` then
validated (no existing row names a device). The trigger-checked references of 0018 are not
involved: this key points *from* sessions, so deleting sessions costs nothing more.

Keys: with rows in ``user_devices`` and no key configured, the revision stops before changing
anything, with an error naming the variables.

Downgrade: a fingerprint cannot be recovered from its keyed hash: ``device_id`` comes back as
``'fp:' || encode(fingerprint_hash, 'hex')`` (unique per user, as before; a client presenting
its old identifier is a new device). The sessions lose their device (the column is dropped).

Docs: ``docs/phases/0033-trusted-devices.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import (
    NIL_UUID,
    RERUN_GUARD,
    SCHEMA,
    add_check_not_valid,
    backfill_computed,
    batched,
    column_exists,
    constraint_exists,
    create_index_concurrently,
    create_write_log,
    drain_write_log,
    drop_index_concurrently,
    drop_write_log,
    fill_computed_now,
    finish_not_null,
    not_null_check,
    prepare_not_null,
    require_privacy_keys,
    step,
    validate_constraint,
)
from authmodels.security.privacy import PrivacyHasher

revision: str = "0033_trusted_devices"
down_revision: str | Sequence[str] | None = "0032_delivery_recipients"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "user_devices"
LOG = "device_pending_0033"
DIGEST_CHECK = "ck_user_devices_fingerprint_hash_digest"
#: unique constraints built from concurrently made indexes: name -> columns
UNIQUE = {
    "uq_user_devices_user_id_fingerprint_hash": "user_id, fingerprint_hash",
    "uq_user_devices_id_user_id": "id, user_id",
}
FOREIGN_KEY = "fk_sessions_device_id_user_devices"
SESSIONS_INDEX = "ix_sessions_device_id"
#: 0010's constraints on device_id (dropped with it, restored by the downgrade)
OLD_UNIQUE = "uq_user_devices_user_id_device_id"
OLD_LENGTH = ("ck_user_devices_device_id_length", "char_length(device_id) BETWEEN 1 AND 255")
FILL_DEVICE_ID = (
    f"UPDATE {SCHEMA}.{TABLE} SET device_id = 'fp:' || encode(fingerprint_hash, 'hex') "
    "WHERE id = ANY(:ids)"
)


def upgrade() -> None:
    ring = require_privacy_keys(tables_with_rows=[TABLE])  # before any change
    hasher = None if ring is None else PrivacyHasher.from_ring(ring)

    def hashes(row: Sequence[object]) -> tuple[bytes]:
        if hasher is None:  # unreachable: rows exist, so a ring was required
            raise AssertionError("no privacy key ring")
        return (hasher.client_hash(str(row[0])),)

    fill: dict[str, Any] = {
        "sources": ["device_id"],
        "targets": [("fingerprint_hash", "bytea")],
        "compute": hashes,
    }

    # 1. user_devices: the write log, the column and its check; existing rows, then later ones
    with step():
        create_write_log(LOG, {TABLE: "device_id"})
    with step():
        op.execute(f"ALTER TABLE {SCHEMA}.{TABLE} ADD COLUMN IF NOT EXISTS fingerprint_hash BYTEA")
        add_check_not_valid(TABLE, DIGEST_CHECK, "auth.is_token_digest(fingerprint_hash)")
    if column_exists(TABLE, "device_id"):  # not on a re-run after step 3
        backfill_computed(TABLE, **fill, where="fingerprint_hash IS NULL")
    drain_write_log(
        LOG, lambda table, where: fill_computed_now(table, **fill, where=where), final=False
    )
    for name, columns in UNIQUE.items():
        create_index_concurrently(name, TABLE, columns, unique=True)

    # 2. writers of user_devices wait a moment: the last rows, the constraints, device_id goes
    with step():
        op.execute(f"LOCK TABLE {SCHEMA}.{TABLE} IN SHARE ROW EXCLUSIVE MODE")
        drain_write_log(
            LOG, lambda table, where: fill_computed_now(table, **fill, where=where), final=True
        )
        drop_write_log(LOG, [TABLE])
        add_check_not_valid(
            TABLE, not_null_check(TABLE, "fingerprint_hash"), "fingerprint_hash IS NOT NULL"
        )
        op.execute(
            "-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the "
            "client's identifier must not be kept (see the docstring)\n"
            f"ALTER TABLE {SCHEMA}.{TABLE} DROP COLUMN IF EXISTS device_id"
        )
        for name in UNIQUE:
            if not constraint_exists(TABLE, name):
                op.execute(
                    "-- squawk-ignore prefer-robust-stmts -- a re-run skips it: the revision "
                    "checks the catalog for the constraint first (constraint_exists)\n"
                    f"ALTER TABLE {SCHEMA}.{TABLE} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
                )
    prepare_not_null(TABLE, "fingerprint_hash", check_added=True)
    with step():
        validate_constraint(TABLE, DIGEST_CHECK)

    # 3. sessions name their device: the column (instant), its index, the reference
    with step():
        op.execute("ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS device_id UUID")
    create_index_concurrently(
        SESSIONS_INDEX, "sessions", "device_id", where="device_id IS NOT NULL"
    )
    with step():
        op.execute(
            f"{RERUN_GUARD}ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS {FOREIGN_KEY}"
        )
        op.execute(
            f"ALTER TABLE auth.sessions ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (device_id, "
            f"user_id) REFERENCES {SCHEMA}.{TABLE} (id, user_id) ON DELETE SET NULL (device_id) "
            "NOT VALID"
        )
    with step():
        validate_constraint("sessions", FOREIGN_KEY)

    # 4. the final transaction: NOT NULL, proved by the validated check
    finish_not_null(TABLE, "fingerprint_hash")


def downgrade() -> None:
    op.execute(f"ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS {FOREIGN_KEY}")
    drop_index_concurrently(SESSIONS_INDEX)
    op.execute("ALTER TABLE auth.sessions DROP COLUMN IF EXISTS device_id")

    # the identifier cannot be recovered from its keyed hash: a text form of the hash instead,
    # in batches, then (writers waiting) the rows written meanwhile
    with step():
        op.execute(f"ALTER TABLE {SCHEMA}.{TABLE} ADD COLUMN IF NOT EXISTS device_id TEXT")
    batched(
        f"SELECT id FROM {SCHEMA}.{TABLE} WHERE id > coalesce(CAST(:after AS uuid), "
        f"'{NIL_UUID}'::uuid) AND device_id IS NULL ORDER BY id LIMIT :limit",
        _fill_device_ids,
    )
    with step():
        op.execute(f"LOCK TABLE {SCHEMA}.{TABLE} IN SHARE ROW EXCLUSIVE MODE")
        op.execute(FILL_DEVICE_ID.replace("id = ANY(:ids)", "device_id IS NULL"))
        add_check_not_valid(TABLE, not_null_check(TABLE, "device_id"), "device_id IS NOT NULL")
        add_check_not_valid(TABLE, *OLD_LENGTH)
    prepare_not_null(TABLE, "device_id", check_added=True)
    with step():
        validate_constraint(TABLE, OLD_LENGTH[0])
    create_index_concurrently(OLD_UNIQUE, TABLE, "user_id, device_id", unique=True)
    finish_not_null(TABLE, "device_id")
    op.execute(
        f"ALTER TABLE {SCHEMA}.{TABLE} ADD CONSTRAINT {OLD_UNIQUE} UNIQUE USING INDEX {OLD_UNIQUE}"
    )
    for name in UNIQUE:
        op.execute(f"ALTER TABLE {SCHEMA}.{TABLE} DROP CONSTRAINT IF EXISTS {name}")
    op.execute(f"ALTER TABLE {SCHEMA}.{TABLE} DROP COLUMN IF EXISTS fingerprint_hash")


def _fill_device_ids(conn: Connection, rows: Sequence[Any]) -> None:
    conn.execute(text(FILL_DEVICE_ID), {"ids": [r[0] for r in rows]})
