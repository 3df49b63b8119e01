"""OAuth provider tokens stored encrypted, so they can be refreshed; hashed ones stay readable.

Seed 003, its migration 118. ``oauth_connections`` gains ``FieldCipher`` envelopes for the provider
tokens, ``tokens_encrypted`` (held honest by a CHECK), refresh bookkeeping, the seed's two indexes
(built concurrently), ``auth.count_old_oauth_tokens()`` and its own ``updated_at`` function.
Existing connections keep their digests (``tokens_encrypted = false``).

Downgrade: refuses while a connection holds encrypted tokens unless ``-x allow_data_loss=true``;
cannot be restored: the encrypted tokens and the refresh bookkeeping.

See docs/phases/0011-oauth-encrypted-tokens.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from authmodels.revision_ops import (
    add_check_not_valid,
    allow_data_loss,
    create_index_concurrently,
    drop_index_concurrently,
    is_offline,
    refuse,
    scalar,
    step,
    validate_constraint,
)

revision: str = "0011_oauth_encrypted_tokens"
down_revision: str | Sequence[str] | None = "0010_security_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "oauth_connections"

CHECKS = [
    (
        "ck_oauth_connections_access_token_encrypted_envelope",
        "auth.is_field_envelope(access_token_encrypted)",
    ),
    (
        "ck_oauth_connections_refresh_token_encrypted_envelope",
        "auth.is_field_envelope(refresh_token_encrypted)",
    ),
    (
        "ck_oauth_connections_token_encryption_method_known",
        "token_encryption_method = 'aes-256-gcm'",
    ),
    (
        "ck_oauth_connections_tokens_encrypted_consistent",
        "(tokens_encrypted AND access_token_encrypted IS NOT NULL "
        "AND token_encryption_method IS NOT NULL) "
        "OR (NOT tokens_encrypted AND access_token_encrypted IS NULL "
        "AND refresh_token_encrypted IS NULL)",
    ),
    (
        "ck_oauth_connections_refresh_status_has_attempt",
        "(last_token_refresh_status IS NULL) = (last_token_refresh_attempt IS NULL)",
    ),
    (
        "ck_oauth_connections_refresh_error_is_a_failure",
        "token_refresh_error_message IS NULL OR last_token_refresh_status = 'failed'",
    ),
]

INDEXES = [
    (
        "idx_oauth_expiring_tokens",
        "token_expires_at",
        "tokens_encrypted AND refresh_token_encrypted IS NOT NULL",
    ),
    ("idx_oauth_last_refresh", "last_token_refresh_attempt", None),
]

FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION auth.update_oauth_connections_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('authmodels.keep_updated_at', true), '') <> 'on' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$""",
    """
CREATE OR REPLACE TRIGGER trg_oauth_connections_updated_at
    BEFORE UPDATE ON auth.oauth_connections
    FOR EACH ROW EXECUTE FUNCTION auth.update_oauth_connections_updated_at()""",
    """
CREATE OR REPLACE FUNCTION auth.count_old_oauth_tokens()
RETURNS TABLE (provider text, old_tokens bigint, encrypted_tokens bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.provider,
           count(*) FILTER (WHERE NOT c.tokens_encrypted
                              AND (c.access_token_hash IS NOT NULL
                                   OR c.refresh_token_hash IS NOT NULL)),
           count(*) FILTER (WHERE c.tokens_encrypted)
      FROM auth.oauth_connections AS c
     GROUP BY c.provider
     ORDER BY c.provider
$$""",
]


def upgrade() -> None:
    op.execute("""
        DO $$
        BEGIN
            CREATE TYPE auth.oauth_refresh_status AS ENUM ('success', 'failed', 'skipped');
        EXCEPTION WHEN duplicate_object THEN NULL;  -- a re-run after a failure
        END;
        $$""")
    op.execute(
        f"ALTER TABLE auth.{TABLE} "
        "ADD COLUMN IF NOT EXISTS access_token_encrypted BYTEA, "
        "ADD COLUMN IF NOT EXISTS refresh_token_encrypted BYTEA, "
        "ADD COLUMN IF NOT EXISTS token_encryption_method TEXT, "
        "ADD COLUMN IF NOT EXISTS tokens_encrypted BOOLEAN NOT NULL DEFAULT false, "
        "ADD COLUMN IF NOT EXISTS last_token_refresh_attempt TIMESTAMPTZ, "
        "ADD COLUMN IF NOT EXISTS last_token_refresh_status auth.oauth_refresh_status, "
        "ADD COLUMN IF NOT EXISTS token_refresh_error_message TEXT"
    )
    # Set after the column exists: existing (hashed) rows keep NULL, new rows get the method.
    op.execute(
        "-- squawk-ignore prefer-robust-stmts -- setting the same default again is a no-op\n"
        f"ALTER TABLE auth.{TABLE} ALTER COLUMN token_encryption_method SET DEFAULT 'aes-256-gcm'"
    )
    for statement in FUNCTIONS:
        op.execute(statement)

    with step():
        for name, condition in CHECKS:
            add_check_not_valid(TABLE, name, condition)
    for name, _ in CHECKS:
        with step():
            validate_constraint(TABLE, name)
    for name, column, where in INDEXES:
        create_index_concurrently(name, TABLE, column, where=where)


def downgrade() -> None:
    if not is_offline() and not allow_data_loss():
        encrypted = scalar(f"SELECT count(*) FROM auth.{TABLE} WHERE tokens_encrypted")
        if encrypted:
            refuse(
                f"downgrading {revision} drops the encrypted provider tokens of {encrypted} "
                "OAuth connections (the legacy schema keeps only hashes; those users would have "
                "to sign in at their provider again). Run the downgrade with "
                "-x allow_data_loss=true to accept that."
            )

    op.execute(
        "CREATE OR REPLACE TRIGGER trg_oauth_connections_updated_at "
        "BEFORE UPDATE ON auth.oauth_connections "
        "FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column()"
    )
    op.execute("DROP FUNCTION IF EXISTS auth.update_oauth_connections_updated_at()")
    op.execute("DROP FUNCTION IF EXISTS auth.count_old_oauth_tokens()")
    for name, _, _ in INDEXES:
        drop_index_concurrently(name)
    for name, _ in CHECKS:
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK\n"
            f"ALTER TABLE auth.{TABLE} DROP CONSTRAINT IF EXISTS {name}"
        )
    op.execute(
        "-- squawk-ignore ban-drop-column -- this revision's columns; rows with encrypted tokens "
        "were refused above unless allow_data_loss was given\n"
        f"ALTER TABLE auth.{TABLE} "
        "DROP COLUMN IF EXISTS access_token_encrypted, "
        "DROP COLUMN IF EXISTS refresh_token_encrypted, "
        "DROP COLUMN IF EXISTS token_encryption_method, "
        "DROP COLUMN IF EXISTS tokens_encrypted, "
        "DROP COLUMN IF EXISTS last_token_refresh_attempt, "
        "DROP COLUMN IF EXISTS last_token_refresh_status, "
        "DROP COLUMN IF EXISTS token_refresh_error_message"
    )
    op.execute("DROP TYPE IF EXISTS auth.oauth_refresh_status")
