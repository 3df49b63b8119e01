"""Message encryption: validate the E2EE columns, constrain the versions, add stats.

Seed 003, its migration 119, validation only: checks that ``messages`` has its encryption columns,
adds ``chk_messages_encryption_version_valid`` and ``ck_messages_version_2_is_encrypted`` (``NOT
VALID`` then validated; violating messages stop the upgrade before anything changes, with a query
that lists them), ``idx_messages_encryption_version``, ``auth.get_message_encryption_stats()``
and column comments.

Downgrade: the CHECKs, the index, the function and the comments go. Nothing is lost.

See docs/phases/0012-message-encryption.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from authmodels.revision_ops import (
    add_check_not_valid,
    create_index_concurrently,
    drop_index_concurrently,
    is_offline,
    refuse,
    scalar,
    step,
    validate_constraint,
)

revision: str = "0012_message_encryption"
down_revision: str | Sequence[str] | None = "0011_oauth_encrypted_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The columns seed 003's migrations 104 and 113 created, and their types.
REQUIRED_COLUMNS = {
    "encryption_version": "integer",
    "content_encrypted": "bytea",
    "content_nonce": "bytea",
}

VERSION_CHECK = ("chk_messages_encryption_version_valid", "encryption_version IN (1, 2)")
PAYLOAD_CHECK = (
    "ck_messages_version_2_is_encrypted",
    "encryption_version <> 2 OR (content_encrypted IS NOT NULL AND content_nonce IS NOT NULL "
    "AND octet_length(content_nonce) = 12 AND content = '')",
)

COMMENTS = {
    "encryption_version": "1 = plaintext content; 2 = end-to-end encrypted (content_encrypted)",
    "content_encrypted": "ChaCha20-Poly1305 ciphertext of an end-to-end encrypted message "
    "(version 2 only); the server never has the key",
    "content_nonce": "96-bit ChaCha20-Poly1305 nonce of content_encrypted (version 2 only)",
    "content": "Plaintext content (version 1); empty for end-to-end encrypted messages",
}  # the same text as the model's (authmodels.models.messaging)

STATS_FUNCTION = """
CREATE OR REPLACE FUNCTION auth.get_message_encryption_stats()
RETURNS TABLE (encryption_version integer, message_count bigint, percentage numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.encryption_version,
           count(*),
           round(100.0 * count(*) / sum(count(*)) OVER (), 2)
      FROM auth.messages AS m
     GROUP BY m.encryption_version
     ORDER BY m.encryption_version
$$"""


def _missing_columns_sql() -> str:
    """A DO block raising when a required column is missing (the offline form of the check)."""
    checks = "\n".join(
        f"""    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = 'auth' AND table_name = 'messages'
                      AND column_name = '{column}' AND data_type = '{data_type}') THEN
        RAISE EXCEPTION 'auth.messages.{column} ({data_type}) is missing: seed 003''s migrations '
            '104/113 add it; revision {revision} only validates';
    END IF;"""
        for column, data_type in REQUIRED_COLUMNS.items()
    )
    return f"DO $$\nBEGIN\n{checks}\nEND;\n$$"


def _require_columns() -> None:
    if is_offline():
        op.execute(_missing_columns_sql())
        return
    found: dict[str, str] = dict(
        op.get_bind()
        .execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'auth' AND table_name = 'messages'"
            )
        )
        .all()
    )
    problems = [
        f"{column} ({data_type}) is missing"
        if column not in found
        else f"{column} is {found[column]}, not {data_type}"
        for column, data_type in REQUIRED_COLUMNS.items()
        if found.get(column) != data_type
    ]
    if problems:
        refuse(
            f"auth.messages cannot be validated by {revision}: {'; '.join(problems)}. Seed 003's "
            "migrations 104 and 113 create these columns (revision 0001 here); this revision only "
            "validates them. Nothing was changed."
        )


def _require_valid_rows() -> None:
    if is_offline():
        return
    bad_version = scalar(f"SELECT count(*) FROM auth.messages WHERE NOT ({VERSION_CHECK[1]})")
    bad_payload = scalar(
        f"SELECT count(*) FROM auth.messages WHERE encryption_version = 2 "
        f"AND NOT ({PAYLOAD_CHECK[1]})"
    )
    if bad_version or bad_payload:
        refuse(
            f"{bad_version} messages have an encryption_version other than 1 or 2 and "
            f"{bad_payload} version-2 messages lack their ciphertext or 12-byte nonce or have a "
            f"non-empty content; {revision} adds CHECKs they would break. List them with "
            f"SELECT id FROM auth.messages WHERE NOT ({VERSION_CHECK[1]}) OR NOT "
            f"({PAYLOAD_CHECK[1]}), fix them, and run it again. Nothing was changed."
        )


def upgrade() -> None:
    _require_columns()  # before any change
    _require_valid_rows()

    with step():
        for name, condition in (VERSION_CHECK, PAYLOAD_CHECK):
            add_check_not_valid("messages", name, condition)
    for name, _ in (VERSION_CHECK, PAYLOAD_CHECK):
        with step():
            validate_constraint("messages", name)

    create_index_concurrently("idx_messages_encryption_version", "messages", "encryption_version")
    op.execute(STATS_FUNCTION)
    for column, comment in COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN auth.messages.{column} IS '{comment}'")


def downgrade() -> None:
    for column in COMMENTS:
        op.execute(f"COMMENT ON COLUMN auth.messages.{column} IS NULL")
    op.execute("DROP FUNCTION IF EXISTS auth.get_message_encryption_stats()")
    drop_index_concurrently("idx_messages_encryption_version")
    for name, _ in (PAYLOAD_CHECK, VERSION_CHECK):
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK\n"
            f"ALTER TABLE auth.messages DROP CONSTRAINT IF EXISTS {name}"
        )
