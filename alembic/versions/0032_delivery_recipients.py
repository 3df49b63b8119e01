"""Delivery recipients: the delivery logs keep a keyed hash and a masked form, never the address.

Found in issue 13 ("account lifecycle", delivery logs). Revision 0010 created
``email_delivery_logs.to_email`` and ``sms_delivery_logs.to_phone`` as plain text: every address
and number a service ever wrote to, readable by whoever reads a backup. This revision does to them
what 0025 did to audit addresses:

- ``recipient_hash`` (BYTEA): the keyed, domain-separated HMAC of the address (lower case) or the
  E.164 number, from :class:`authmodels.security.privacy.PrivacyHasher` (``AUTHMODELS_PRIVACY_KEYS``,
  falling back to ``AUTHMODELS_HASH_KEYS``), computed in Python: the key never reaches the
  server. Checked by ``ck_<table>_recipient_hash_digest`` (``auth.is_token_digest``) and indexed
  with ``created_at`` (``ix_<table>_recipient_hash_created_at``: "what did we send to this
  address?").
- ``recipient_masked`` (TEXT): what a person recognises (``a***@example.com``, ``+44********50``,
  :func:`~authmodels.security.privacy.mask_email`, :func:`~authmodels.security.privacy.
  mask_phone`), with a CHECK of that form (``ck_<table>_recipient_masked_format``).
- Both NOT NULL; ``to_email``, ``to_phone`` and their CHECKs are dropped.

How it runs on a live database: a temporary write log (``auth.recipient_pending_0032``, filled by
a trigger with the id of every row written with a raw recipient from then on) is created first;
the columns and their shape checks (``NOT VALID``) follow; existing rows are converted in batches
walked by id, then the rows the log names, in batches, until few are left. One short transaction
keeps writers out (``SHARE ROW EXCLUSIVE``: reads go on) while it converts the last rows the log
names, adds ``CHECK (... IS NOT NULL) NOT VALID`` and drops the log and the raw columns: its
duration grows with the writes since the last batch, not with the tables. The checks are then
validated without blocking writes, and the final transaction sets ``NOT NULL`` (proved by the
validated checks, no scan). From the moment the raw columns go, code that writes ``to_email``
fails: deploy the library's code with this revision.

Keys: with rows in either table and no key configured, the revision stops before changing
anything, with an error naming the variables; empty tables migrate without keys.

Downgrade: the raw addresses cannot be recovered from keyed hashes, and 0010's ``to_email`` and
``to_phone`` are NOT NULL: every row moves to ``auth.quarantine`` (nothing is deleted; a new
upgrade puts them back), then the raw columns come back and the hashes go.

Docs: ``docs/phases/0032-delivery-recipients.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op

from authmodels.models.delivery import EMAIL_MASK_PATTERN, PHONE_MASK_PATTERN
from authmodels.revision_ops import (
    SCHEMA,
    add_check_not_valid,
    backfill_computed,
    column_exists,
    create_index_concurrently,
    create_write_log,
    drain_write_log,
    drop_index_concurrently,
    drop_write_log,
    fill_computed_now,
    finish_not_null,
    has_rows,
    not_null_check,
    prepare_not_null,
    quarantine_statement,
    require_privacy_keys,
    restore_quarantined,
    step,
    validate_constraint,
)
from authmodels.security.privacy import PrivacyHasher, mask_email, mask_phone

revision: str = "0032_delivery_recipients"
down_revision: str | Sequence[str] | None = "0031_legacy_password_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> (the raw column of 0010, the kind of recipient)
TABLES = {"email_delivery_logs": ("to_email", "email"), "sms_delivery_logs": ("to_phone", "phone")}
LOG = "recipient_pending_0032"
NEW_COLUMNS = ("recipient_hash", "recipient_masked")
#: The masked form's CHECK, per table (the patterns of authmodels.models.delivery).
MASKED = {
    "email_delivery_logs": f"recipient_masked ~ '^{EMAIL_MASK_PATTERN}$' "
    "AND char_length(recipient_masked) <= 320",
    "sms_delivery_logs": f"recipient_masked ~ '^{PHONE_MASK_PATTERN}$'",
}
#: 0010's CHECKs on the raw columns (dropped with them, restored by the downgrade).
RAW_CHECKS = {
    "email_delivery_logs": (
        "ck_email_delivery_logs_to_email_format",
        r"to_email ~ '^[^@\s]+@[^@\s]+$' AND char_length(to_email) <= 320",
    ),
    "sms_delivery_logs": (
        "ck_sms_delivery_logs_to_phone_e164",
        r"to_phone ~ '^\+[1-9][0-9]{6,14}$'",
    ),
}
#: Rows moved to quarantine per transaction by the downgrade.
QUARANTINE_BATCH = 5000


def _index(table: str) -> str:
    return f"ix_{table}_recipient_hash_created_at"


def _fill(hasher: PrivacyHasher | None, kind: str) -> dict[str, Any]:
    """The backfill of one table: its raw column -> (keyed hash, masked form)."""

    def convert(row: Sequence[Any]) -> tuple[bytes, str]:
        (raw,) = row
        if hasher is None:  # unreachable: rows exist, so a ring was required
            raise AssertionError("no privacy key ring")
        if kind == "email":
            return hasher.email_hash(raw), mask_email(raw)
        return hasher.phone_hash(raw), mask_phone(raw)

    column = next(c for c, k in TABLES.values() if k == kind)
    return {
        "sources": [column],
        "targets": [("recipient_hash", "bytea"), ("recipient_masked", "text")],
        "compute": convert,
    }


def upgrade() -> None:
    ring = require_privacy_keys(tables_with_rows=list(TABLES))  # before any change
    hasher = None if ring is None else PrivacyHasher.from_ring(ring)
    fills = {table: _fill(hasher, kind) for table, (_, kind) in TABLES.items()}

    def fill(table: str, where: str) -> int:
        return fill_computed_now(table, **fills[table], where=where)

    # 1. the write log first (no row written from now on escapes it), the columns, their checks
    with step():
        create_write_log(LOG, {table: raw for table, (raw, _) in TABLES.items()})
    for table in TABLES:
        with step():
            op.execute(
                f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS recipient_hash BYTEA, "
                "ADD COLUMN IF NOT EXISTS recipient_masked TEXT"
            )
            add_check_not_valid(
                table, f"ck_{table}_recipient_hash_digest", "auth.is_token_digest(recipient_hash)"
            )
            add_check_not_valid(table, f"ck_{table}_recipient_masked_format", MASKED[table])

    # 2. the rows that exist, then those written meanwhile, until few are left
    for table, (raw, _) in TABLES.items():
        if column_exists(table, raw):  # not on a re-run after step 3
            backfill_computed(
                table, **fills[table], where=f"recipient_hash IS NULL AND {raw} IS NOT NULL"
            )
    drain_write_log(LOG, fill, final=False)

    # 3. writers wait a moment: the last rows, the NOT NULL checks, the raw columns go
    with step():
        op.execute(
            f"LOCK TABLE {', '.join(f'{SCHEMA}.{t}' for t in TABLES)} IN SHARE ROW EXCLUSIVE MODE"
        )
        drain_write_log(LOG, fill, final=True)
        drop_write_log(LOG, list(TABLES))
        for table, (raw, _) in TABLES.items():
            for column in NEW_COLUMNS:
                add_check_not_valid(table, not_null_check(table, column), f"{column} IS NOT NULL")
            op.execute(
                "-- squawk-ignore ban-drop-column -- replaced by its keyed hash and masked form, "
                "filled above; the raw recipient must not be kept (see the docstring)\n"
                f"ALTER TABLE {SCHEMA}.{table} DROP COLUMN IF EXISTS {raw}"
            )

    # 4. without blocking writes: the checks validated, the index built
    for table in TABLES:
        for column in NEW_COLUMNS:
            prepare_not_null(table, column, check_added=True)
        with step():
            validate_constraint(table, f"ck_{table}_recipient_hash_digest")
            validate_constraint(table, f"ck_{table}_recipient_masked_format")
        create_index_concurrently(_index(table), table, "recipient_hash, created_at DESC")

    # 5. the final transaction: NOT NULL (instant), and the rows an earlier downgrade set aside
    for table in TABLES:
        for column in NEW_COLUMNS:
            finish_not_null(table, column)
        restore_quarantined(table, revision=revision)


def _quarantine(table: str) -> str:
    """The statement moving a batch of ``table``'s rows into ``auth.quarantine``."""
    return quarantine_statement(
        table,
        where=f"t.id IN (SELECT id FROM {SCHEMA}.{table} ORDER BY id LIMIT {QUARANTINE_BATCH})",
        reason="'its recipient is kept only as a keyed hash and a masked form since "
        f"{revision}; the schema before it needs the raw address'",
        revision=revision,
    )


def downgrade() -> None:
    for table in TABLES:  # in short transactions while writes go on ...
        while has_rows(table):
            with step():
                op.execute(_quarantine(table))
    for table, (raw, _) in TABLES.items():
        drop_index_concurrently(_index(table))
        name, condition = RAW_CHECKS[table]
        with step():  # ... then, writers waiting, the last rows and the columns of 0010
            op.execute(f"LOCK TABLE {SCHEMA}.{table} IN ACCESS EXCLUSIVE MODE")
            op.execute(_quarantine(table).replace(f" LIMIT {QUARANTINE_BATCH}", ""))
            op.execute(
                f"-- squawk-ignore adding-not-nullable-field -- the table is empty (its rows "
                f"were moved to auth.quarantine above, under this lock nothing is written)\n"
                f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {raw} TEXT NOT NULL"
            )
            add_check_not_valid(table, name, condition)
            validate_constraint(table, name)
            op.execute(
                f"ALTER TABLE {SCHEMA}.{table} DROP COLUMN IF EXISTS recipient_hash, "
                "DROP COLUMN IF EXISTS recipient_masked"
            )
