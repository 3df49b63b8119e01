"""WebAuthn storage: ``biometric_credentials`` becomes ``webauthn_credentials``, binary and complete.

Seed 000, phase 1.4 week 2. Credential ids (hex text) become bytes, unique overall and per user;
public keys become COSE bytes; sign counts BIGINT within 0..2^32-1; AAGUID, transports, the BE/BS
flags and ``last_uv_result`` are added. Rows are converted in batches; what cannot be converted
(not hex, not base64, a duplicate id) goes to quarantine.

Downgrade: back to ``biometric_credentials`` and its text columns, quarantined rows put back;
cannot be restored: AAGUID, transports, BE/BS flags, last UV result, and the letter case of hex ids.

See docs/phases/0003-webauthn-storage.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import (
    NIL_UUID,
    add_check_not_valid,
    batched,
    create_index_concurrently,
    drop_index_concurrently,
    finish_not_null,
    not_null_check,
    prepare_not_null,
    quarantine_statement,
    rename_not_null_constraints,
    restore_quarantined,
    step,
    validate_constraint,
)

revision: str = "0003_webauthn_storage"
down_revision: str | Sequence[str] | None = "0002_identity_unification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "biometric_credentials"
NEW = "webauthn_credentials"
MAX_CREDENTIAL_ID_BYTES = 1023
MAX_SIGN_COUNT = 2**32 - 1

#: Final names of the checks (constraint names do not follow a table rename).
CK_SIGN_COUNT = f"ck_{NEW}_sign_count_range"
CK_CREDENTIAL_ID = f"ck_{NEW}_credential_id_length"

#: Columns of the table at 0002, for putting quarantined rows back on downgrade.
COLUMNS_0002 = [
    "id", "user_id", "credential_id", "public_key", "sign_count", "device_name", "created_at",
    "last_used_at", "revoked_at",
]  # fmt: skip


def _convert_statement(rows: str) -> str:
    """Convert the rows selected by ``rows``; quarantine those that cannot be converted.

    ``rows`` is a condition on the table aliased ``{alias}``, repeated on the UPDATE and the
    DELETE so that a batch's rows are reached through the primary key.
    """
    ctes = f"""
    verdict AS (
        SELECT id, credential_id AS hex, sign_count,
               rtrim(translate(public_key, '-_', '+/'), '=') AS b64,
               CASE
                   WHEN credential_id !~ '^([0-9A-Fa-f]{{2}})+$'
                       THEN 'credential_id is not an even-length hexadecimal string'
                   WHEN length(credential_id) > {2 * MAX_CREDENTIAL_ID_BYTES}
                       THEN 'credential_id is ' || length(credential_id) / 2
                            || ' bytes; WebAuthn allows at most {MAX_CREDENTIAL_ID_BYTES}'
                   WHEN translate(public_key, '-_', '+/') !~ '^[A-Za-z0-9+/]+={{0,2}}$'
                        OR length(rtrim(public_key, '=')) % 4 = 1
                       THEN 'public_key is not base64 or base64url text'
               END AS problem
          FROM auth.{OLD}
         WHERE ({rows.format(alias=OLD)}) AND credential_id_new IS NULL
    ),
    converted AS (
        UPDATE auth.{OLD} AS c
           SET credential_id_new = decode(v.hex, 'hex'),
               cose_public_key = decode(v.b64 || repeat('=', (4 - length(v.b64) % 4) % 4),
                                        'base64'),
               sign_count_new = CASE WHEN v.sign_count < 0
                                     THEN v.sign_count::bigint + 4294967296
                                     ELSE v.sign_count END
          FROM verdict AS v
         WHERE c.id = v.id AND v.problem IS NULL AND ({rows.format(alias="c")})
    )"""
    return quarantine_statement(
        OLD,
        ctes=ctes,
        using="verdict",
        where=f"t.id = verdict.id AND verdict.problem IS NOT NULL AND ({rows.format(alias='t')})",
        reason="verdict.problem",
        revision=revision,
    )


def upgrade() -> None:
    for column in (
        "credential_id_new BYTEA",
        "cose_public_key BYTEA",
        "sign_count_new BIGINT DEFAULT 0",
        "aaguid UUID",
        "transports TEXT[] NOT NULL DEFAULT '{}'::text[]",
        "backup_eligible BOOLEAN NOT NULL DEFAULT false",
        "backup_state BOOLEAN NOT NULL DEFAULT false",
        "last_uv_result BOOLEAN",
    ):
        op.execute(f"ALTER TABLE auth.{OLD} ADD COLUMN IF NOT EXISTS {column}")

    convert = text(_convert_statement("{alias}.id = ANY(CAST(:ids AS uuid[]))"))

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(convert, {"ids": [row[0] for row in rows]})

    batched(
        f"SELECT id FROM auth.{OLD} "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
        "AND credential_id_new IS NULL ORDER BY id LIMIT :limit",
        apply,
    )

    with step():
        ranked = f"""
        ranked AS (
            SELECT id, row_number() OVER (
                       PARTITION BY credential_id_new ORDER BY created_at, id
                   ) AS position
              FROM auth.{OLD}
             WHERE credential_id_new IS NOT NULL
        )"""
        op.execute(
            quarantine_statement(
                OLD,
                ctes=ranked,
                using="ranked",
                where="t.id = ranked.id AND ranked.position > 1",
                reason="'duplicate credential id: the credential registered first was kept'",
                revision=revision,
            )
        )

    create_index_concurrently(f"uq_{NEW}_credential_id", OLD, "credential_id_new", unique=True)
    create_index_concurrently(
        "uq_webauthn_user_cred", OLD, "user_id, credential_id_new", unique=True
    )
    create_index_concurrently("idx_webauthn_aaguid", OLD, "aaguid")
    create_index_concurrently(
        "idx_webauthn_user_active", OLD, "user_id", where="revoked_at IS NULL"
    )
    drop_index_concurrently(f"ix_{OLD}_user_id")

    with step():
        # Writers wait (readers do not) while rows written since the backfill are converted and
        # the checks start applying to new rows.
        op.execute(f"LOCK TABLE auth.{OLD} IN SHARE ROW EXCLUSIVE MODE")
        op.execute(_convert_statement("true"))
        for column in ("credential_id_new", "cose_public_key", "sign_count_new"):
            add_check_not_valid(OLD, not_null_check(OLD, column), f"{column} IS NOT NULL")
        add_check_not_valid(OLD, CK_SIGN_COUNT, f"sign_count_new BETWEEN 0 AND {MAX_SIGN_COUNT}")
        add_check_not_valid(
            OLD,
            CK_CREDENTIAL_ID,
            f"octet_length(credential_id_new) BETWEEN 1 AND {MAX_CREDENTIAL_ID_BYTES}",
        )
    for column in ("credential_id_new", "cose_public_key", "sign_count_new"):
        prepare_not_null(OLD, column, check_added=True)
    for check in (CK_SIGN_COUNT, CK_CREDENTIAL_ID):
        with step():
            validate_constraint(OLD, check)

    # The revision's final transaction: instant changes only.
    for column in ("credential_id_new", "cose_public_key", "sign_count_new"):
        finish_not_null(OLD, column)
    for column in ("credential_id", "public_key", "sign_count"):
        op.execute(
            "-- squawk-ignore ban-drop-column -- replaced by its binary / 64-bit conversion, "
            "filled above; the downgrade rebuilds it\n"
            f"ALTER TABLE auth.{OLD} DROP COLUMN IF EXISTS {column}"
        )
    for column in ("credential_id", "sign_count"):
        op.execute(
            "-- squawk-ignore renaming-column -- the converted column takes the name of the one "
            "it replaces; the application release of this phase reads the new type\n"
            f"ALTER TABLE auth.{OLD} RENAME COLUMN {column}_new TO {column}"
        )
    op.execute(
        "-- squawk-ignore renaming-table -- the seed's rename: the table holds WebAuthn "
        "credentials (passkeys, security keys), not biometrics\n"
        f"ALTER TABLE auth.{OLD} RENAME TO {NEW}"
    )
    for kind in ("pk_{}", "fk_{}_user_id_users"):
        op.execute(
            "-- squawk-ignore renaming-object -- constraint names follow the table's new name "
            "(naming convention); no client refers to a constraint by name\n"
            f"ALTER TABLE auth.{NEW} RENAME CONSTRAINT {kind.format(OLD)} TO {kind.format(NEW)}"
        )
    rename_not_null_constraints(NEW)


def downgrade() -> None:
    for kind in ("pk_{}", "fk_{}_user_id_users"):
        op.execute(
            f"ALTER TABLE auth.{NEW} RENAME CONSTRAINT {kind.format(NEW)} TO {kind.format(OLD)}"
        )
    op.execute(f"ALTER TABLE auth.{NEW} RENAME TO {OLD}")
    op.execute(f"ALTER TABLE auth.{OLD} DROP CONSTRAINT IF EXISTS {CK_SIGN_COUNT}")
    op.execute(f"ALTER TABLE auth.{OLD} DROP CONSTRAINT IF EXISTS {CK_CREDENTIAL_ID}")
    for column in ("credential_id", "sign_count"):
        op.execute(f"ALTER TABLE auth.{OLD} RENAME COLUMN {column} TO {column}_bin")
    op.execute(f"ALTER TABLE auth.{OLD} ADD COLUMN credential_id TEXT")
    op.execute(f"ALTER TABLE auth.{OLD} ADD COLUMN public_key TEXT")
    op.execute(f"ALTER TABLE auth.{OLD} ADD COLUMN sign_count INTEGER DEFAULT 0")

    restore = text(
        f"UPDATE auth.{OLD} SET credential_id = encode(credential_id_bin, 'hex'), "
        "public_key = rtrim(translate(replace(encode(cose_public_key, 'base64'), E'\\n', ''), "
        "'+/', '-_'), '='), "
        "sign_count = CASE WHEN sign_count_bin > 2147483647 THEN sign_count_bin - 4294967296 "
        "ELSE sign_count_bin END "
        "WHERE id = ANY(CAST(:ids AS uuid[]))"
    )

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(restore, {"ids": [row[0] for row in rows]})

    batched(
        f"SELECT id FROM auth.{OLD} "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
        "AND credential_id IS NULL ORDER BY id LIMIT :limit",
        apply,
    )
    for column in ("credential_id", "public_key", "sign_count"):
        prepare_not_null(OLD, column)
    create_index_concurrently(f"ix_{OLD}_user_id", OLD, "user_id")
    create_index_concurrently(f"ix_{OLD}_credential_id", OLD, "credential_id")
    for name in (
        f"uq_{NEW}_credential_id",
        "uq_webauthn_user_cred",
        "idx_webauthn_aaguid",
        "idx_webauthn_user_active",
    ):
        drop_index_concurrently(name)

    for column in ("credential_id", "public_key", "sign_count"):
        finish_not_null(OLD, column)
    for column in (
        "credential_id_bin",
        "cose_public_key",
        "sign_count_bin",
        "aaguid",
        "transports",
        "backup_eligible",
        "backup_state",
        "last_uv_result",
    ):
        op.execute(f"ALTER TABLE auth.{OLD} DROP COLUMN {column}")
    rename_not_null_constraints(OLD)
    restore_quarantined(OLD, revision=revision, columns=COLUMNS_0002)
