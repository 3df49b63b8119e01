"""The security tables: login attempts, security events, delivery logs, devices, MFA, API keys...

Seed 002, its twelve tables at once (``refresh_tokens`` exists since 0001), plus
``two_factor_backup_codes``: every token, code and identifier as a keyed digest, IP addresses and
user agents as keyed hashes, TOTP seeds as ``FieldCipher`` envelopes, row-level security as 0006
does it. Seed 004's plaintext ``users.two_factor_secret`` is moved, encrypted, into
``two_factor_auth`` in batches and dropped. Needs ``AUTHMODELS_ENCRYPTION_KEYS`` when seeds exist.

Downgrade: ``users.two_factor_secret`` comes back, decrypted; refuses while the other tables hold
rows unless ``-x allow_data_loss=true``; cannot be restored: those rows, and of a TOTP enrolment
everything but its seed.

See docs/phases/0010-security-tables.md.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.config import Settings
from authmodels.errors import MigrationError
from authmodels.revision_ops import (
    KEEP_UPDATED_AT,
    NIL_UUID,
    batched,
    column_exists,
    has_rows,
    is_offline,
    refuse,
    refuse_to_drop_rows,
    scalar,
    step,
)
from authmodels.security.encryption import FieldCipher, aad_for

revision: str = "0010_security_tables"
down_revision: str | Sequence[str] | None = "0009_step_up_admin_safety"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUMS: dict[str, tuple[str, ...]] = {
    "login_attempt_result": (
        "success", "failed_password", "failed_unknown_identifier", "failed_second_factor",
        "failed_locked", "failed_unverified", "blocked",
    ),
    "security_event_severity": ("low", "medium", "high", "critical"),
    "delivery_status": ("pending", "sent", "delivered", "failed", "bounced"),
    "account_recovery_method": ("email", "sms", "backup_code", "admin"),
    "account_recovery_status": ("pending", "completed", "expired", "cancelled"),
    "session_audit_action": (
        "created", "refreshed", "rotated", "stepped_up", "ip_changed", "revoked", "expired",
    ),
}  # fmt: skip

DIGEST = "auth.is_token_digest({})"
ENVELOPE = "auth.is_field_envelope({})"

TABLES = [
    f"""
CREATE TABLE IF NOT EXISTS auth.login_attempts (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID,
    identifier_hash BYTEA NOT NULL,
    ip_hash BYTEA,
    ua_hash BYTEA,
    attempt_result auth.login_attempt_result NOT NULL,
    failure_reason TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_login_attempts PRIMARY KEY (id),
    CONSTRAINT fk_login_attempts_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT ck_login_attempts_identifier_hash_digest CHECK ({DIGEST.format("identifier_hash")}),
    CONSTRAINT ck_login_attempts_ip_hash_digest CHECK ({DIGEST.format("ip_hash")}),
    CONSTRAINT ck_login_attempts_ua_hash_digest CHECK ({DIGEST.format("ua_hash")}),
    CONSTRAINT ck_login_attempts_failure_reason_length
        CHECK (char_length(failure_reason) BETWEEN 1 AND 500),
    CONSTRAINT ck_login_attempts_success_has_no_failure_reason
        CHECK (attempt_result <> 'success' OR failure_reason IS NULL)
)""",
    "CREATE INDEX IF NOT EXISTS ix_login_attempts_attempt_result_created_at "
    "ON auth.login_attempts (attempt_result, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_login_attempts_ip_hash_created_at "
    "ON auth.login_attempts (ip_hash, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_login_attempts_identifier_hash_created_at "
    "ON auth.login_attempts (identifier_hash, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_login_attempts_user_id_created_at "
    "ON auth.login_attempts (user_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_login_attempts_created_at ON auth.login_attempts (created_at)",
    f"""
CREATE TABLE IF NOT EXISTS auth.security_events (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID,
    event_type TEXT NOT NULL,
    severity auth.security_event_severity NOT NULL,
    ip_hash BYTEA,
    ua_hash BYTEA,
    details JSONB NOT NULL DEFAULT '{{}}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_security_events PRIMARY KEY (id),
    CONSTRAINT fk_security_events_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT ck_security_events_event_type_format
        CHECK (event_type ~ '^[a-z][a-z0-9_.]{{0,63}}$'),
    CONSTRAINT ck_security_events_ip_hash_digest CHECK ({DIGEST.format("ip_hash")}),
    CONSTRAINT ck_security_events_ua_hash_digest CHECK ({DIGEST.format("ua_hash")})
)""",
    "CREATE INDEX IF NOT EXISTS ix_security_events_created_at_severity "
    "ON auth.security_events (created_at, severity)",
    "CREATE INDEX IF NOT EXISTS ix_security_events_user_id_created_at "
    "ON auth.security_events (user_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_security_events_event_type_created_at "
    "ON auth.security_events (event_type, created_at DESC)",
    """
CREATE TABLE IF NOT EXISTS auth.password_history (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_password_history PRIMARY KEY (id),
    CONSTRAINT fk_password_history_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_password_history_password_hash_format
        CHECK (password_hash ~ '^\\$(argon2id|2[aby])\\$')
)""",
    "CREATE INDEX IF NOT EXISTS ix_password_history_user_id_created_at "
    "ON auth.password_history (user_id, created_at DESC)",
    *(
        statement
        for table, recipient, check in (
            (
                "email_delivery_logs",
                "to_email TEXT NOT NULL,\n    subject TEXT,",
                "CONSTRAINT ck_email_delivery_logs_to_email_format\n"
                "        CHECK (to_email ~ '^[^@\\s]+@[^@\\s]+$' AND char_length(to_email) <= 320)",
            ),
            (
                "sms_delivery_logs",
                "to_phone TEXT NOT NULL,\n    cost NUMERIC(12, 4),\n    currency TEXT,",
                "CONSTRAINT ck_sms_delivery_logs_to_phone_e164\n"
                "        CHECK (to_phone ~ '^\\+[1-9][0-9]{6,14}$'),\n"
                "    CONSTRAINT ck_sms_delivery_logs_cost_not_negative CHECK (cost >= 0),\n"
                "    CONSTRAINT ck_sms_delivery_logs_currency_iso_4217 "
                "CHECK (currency ~ '^[A-Z]{3}$'),\n"
                "    CONSTRAINT ck_sms_delivery_logs_cost_has_currency\n"
                "        CHECK ((cost IS NULL) = (currency IS NULL))",
            ),
        )
        for statement in (
            f"""
CREATE TABLE IF NOT EXISTS auth.{table} (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID,
    {recipient}
    template TEXT NOT NULL,
    status auth.delivery_status NOT NULL DEFAULT 'pending',
    provider TEXT NOT NULL,
    provider_message_id TEXT,
    error_message TEXT,
    sent_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_{table} PRIMARY KEY (id),
    CONSTRAINT fk_{table}_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    {check},
    CONSTRAINT ck_{table}_template_format CHECK (template ~ '^[a-z][a-z0-9_.-]{{0,63}}$'),
    CONSTRAINT ck_{table}_sent_after_created CHECK (sent_at >= created_at),
    CONSTRAINT ck_{table}_delivered_after_sent CHECK (delivered_at >= sent_at),
    CONSTRAINT ck_{table}_sent_has_sent_at
        CHECK (status NOT IN ('sent', 'delivered') OR sent_at IS NOT NULL),
    CONSTRAINT ck_{table}_failure_has_error CHECK (status <> 'failed' OR error_message IS NOT NULL)
)""",
            f"CREATE INDEX IF NOT EXISTS ix_{table}_status_created_at "
            f"ON auth.{table} (status, created_at)",
            f"CREATE INDEX IF NOT EXISTS ix_{table}_created_at ON auth.{table} (created_at)",
            f"CREATE INDEX IF NOT EXISTS ix_{table}_user_id_created_at "
            f"ON auth.{table} (user_id, created_at DESC)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{table}_provider_provider_message_id "
            f"ON auth.{table} (provider, provider_message_id) "
            "WHERE provider_message_id IS NOT NULL",
        )
    ),
    f"""
CREATE TABLE IF NOT EXISTS auth.user_devices (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    device_id TEXT NOT NULL,
    device_name TEXT,
    trust_token_hash BYTEA,
    trusted_at TIMESTAMPTZ,
    trust_expires_at TIMESTAMPTZ,
    last_seen_at TIMESTAMPTZ,
    last_ip_hash BYTEA,
    ua_hash BYTEA,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_user_devices PRIMARY KEY (id),
    CONSTRAINT fk_user_devices_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT uq_user_devices_user_id_device_id UNIQUE (user_id, device_id),
    CONSTRAINT ck_user_devices_device_id_length CHECK (char_length(device_id) BETWEEN 1 AND 255),
    CONSTRAINT ck_user_devices_trust_token_hash_digest CHECK ({DIGEST.format("trust_token_hash")}),
    CONSTRAINT ck_user_devices_last_ip_hash_digest CHECK ({DIGEST.format("last_ip_hash")}),
    CONSTRAINT ck_user_devices_ua_hash_digest CHECK ({DIGEST.format("ua_hash")}),
    CONSTRAINT ck_user_devices_trust_is_complete CHECK (
        (trust_token_hash IS NULL AND trusted_at IS NULL AND trust_expires_at IS NULL)
        OR (trust_token_hash IS NOT NULL AND trusted_at IS NOT NULL
            AND trust_expires_at IS NOT NULL AND trust_expires_at > trusted_at)
    ),
    CONSTRAINT ck_user_devices_revoked_after_created CHECK (revoked_at >= created_at)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_user_devices_trust_token_hash "
    "ON auth.user_devices (trust_token_hash) WHERE trust_token_hash IS NOT NULL",
    f"""
CREATE TABLE IF NOT EXISTS auth.two_factor_auth (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    secret_encrypted BYTEA NOT NULL,
    confirmed_at TIMESTAMPTZ,
    last_used_step BIGINT,
    last_used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_two_factor_auth PRIMARY KEY (id),
    CONSTRAINT fk_two_factor_auth_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT uq_two_factor_auth_user_id UNIQUE (user_id),
    CONSTRAINT ck_two_factor_auth_secret_encrypted_envelope
        CHECK ({ENVELOPE.format("secret_encrypted")}),
    CONSTRAINT ck_two_factor_auth_last_used_step_not_negative CHECK (last_used_step >= 0),
    CONSTRAINT ck_two_factor_auth_used_step_has_time
        CHECK ((last_used_step IS NULL) = (last_used_at IS NULL)),
    CONSTRAINT ck_two_factor_auth_confirmed_after_created CHECK (confirmed_at >= created_at)
)""",
    f"""
CREATE TABLE IF NOT EXISTS auth.two_factor_backup_codes (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    code_hash BYTEA NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_two_factor_backup_codes PRIMARY KEY (id),
    CONSTRAINT fk_two_factor_backup_codes_user_id_two_factor_auth
        FOREIGN KEY (user_id) REFERENCES auth.two_factor_auth (user_id) ON DELETE CASCADE,
    CONSTRAINT ck_two_factor_backup_codes_code_hash_digest CHECK ({DIGEST.format("code_hash")}),
    CONSTRAINT ck_two_factor_backup_codes_used_after_created CHECK (used_at >= created_at)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_two_factor_backup_codes_code_hash "
    "ON auth.two_factor_backup_codes (code_hash)",
    "CREATE INDEX IF NOT EXISTS ix_two_factor_backup_codes_user_id "
    "ON auth.two_factor_backup_codes (user_id)",
    f"""
CREATE TABLE IF NOT EXISTS auth.oauth_connections (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    provider TEXT NOT NULL,
    provider_user_id TEXT NOT NULL,
    email TEXT,
    name TEXT,
    picture_url TEXT,
    access_token_hash BYTEA,
    refresh_token_hash BYTEA,
    token_type TEXT,
    token_expires_at TIMESTAMPTZ,
    scopes TEXT,
    raw_data JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_oauth_connections PRIMARY KEY (id),
    CONSTRAINT fk_oauth_connections_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT uq_oauth_connections_provider_provider_user_id
        UNIQUE (provider, provider_user_id),
    CONSTRAINT ck_oauth_connections_provider_format CHECK (provider ~ '^[a-z0-9_.-]{{1,50}}$'),
    CONSTRAINT ck_oauth_connections_provider_user_id_length
        CHECK (char_length(provider_user_id) BETWEEN 1 AND 255),
    CONSTRAINT ck_oauth_connections_picture_url_length CHECK (char_length(picture_url) <= 1024),
    CONSTRAINT ck_oauth_connections_access_token_hash_digest
        CHECK ({DIGEST.format("access_token_hash")}),
    CONSTRAINT ck_oauth_connections_refresh_token_hash_digest
        CHECK ({DIGEST.format("refresh_token_hash")}),
    CONSTRAINT ck_oauth_connections_raw_data_has_no_tokens
        CHECK (NOT (raw_data ?| array['access_token', 'refresh_token', 'id_token']))
)""",
    "CREATE INDEX IF NOT EXISTS ix_oauth_connections_user_id ON auth.oauth_connections (user_id)",
    f"""
CREATE TABLE IF NOT EXISTS auth.api_keys (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash BYTEA NOT NULL,
    scopes TEXT[] NOT NULL DEFAULT '{{}}',
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_api_keys PRIMARY KEY (id),
    CONSTRAINT fk_api_keys_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT uq_api_keys_prefix UNIQUE (prefix),
    CONSTRAINT ck_api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT ck_api_keys_prefix_format CHECK (prefix ~ '^[A-Za-z0-9_-]{{8,32}}$'),
    CONSTRAINT ck_api_keys_key_hash_digest CHECK ({DIGEST.format("key_hash")}),
    CONSTRAINT ck_api_keys_scopes_have_no_null CHECK (array_position(scopes, NULL) IS NULL),
    CONSTRAINT ck_api_keys_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT ck_api_keys_revoked_after_created CHECK (revoked_at >= created_at)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_api_keys_key_hash ON auth.api_keys (key_hash)",
    "CREATE INDEX IF NOT EXISTS ix_api_keys_user_id ON auth.api_keys (user_id)",
    f"""
CREATE TABLE IF NOT EXISTS auth.account_recovery (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    method auth.account_recovery_method NOT NULL,
    status auth.account_recovery_status NOT NULL DEFAULT 'pending',
    token_hash BYTEA,
    requested_ip_hash BYTEA,
    expires_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_account_recovery PRIMARY KEY (id),
    CONSTRAINT fk_account_recovery_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_account_recovery_token_hash_digest CHECK ({DIGEST.format("token_hash")}),
    CONSTRAINT ck_account_recovery_requested_ip_hash_digest
        CHECK ({DIGEST.format("requested_ip_hash")}),
    CONSTRAINT ck_account_recovery_link_has_token
        CHECK (method NOT IN ('email', 'sms') OR token_hash IS NOT NULL),
    CONSTRAINT ck_account_recovery_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT ck_account_recovery_completed_after_created CHECK (completed_at >= created_at),
    CONSTRAINT ck_account_recovery_completed_has_time
        CHECK ((status = 'completed') = (completed_at IS NOT NULL))
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_account_recovery_token_hash "
    "ON auth.account_recovery (token_hash) WHERE token_hash IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_account_recovery_user_id_created_at "
    "ON auth.account_recovery (user_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_account_recovery_expires_at "
    "ON auth.account_recovery (expires_at) WHERE status = 'pending'",
    f"""
CREATE TABLE IF NOT EXISTS auth.session_audits (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    session_id UUID,
    user_id UUID NOT NULL,
    action auth.session_audit_action NOT NULL,
    ip_hash BYTEA,
    ua_hash BYTEA,
    details JSONB NOT NULL DEFAULT '{{}}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_session_audits PRIMARY KEY (id),
    CONSTRAINT fk_session_audits_session_id_sessions
        FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE SET NULL,
    CONSTRAINT fk_session_audits_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_session_audits_ip_hash_digest CHECK ({DIGEST.format("ip_hash")}),
    CONSTRAINT ck_session_audits_ua_hash_digest CHECK ({DIGEST.format("ua_hash")})
)""",
    "CREATE INDEX IF NOT EXISTS ix_session_audits_session_id_created_at "
    "ON auth.session_audits (session_id, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_session_audits_user_id_created_at "
    "ON auth.session_audits (user_id, created_at DESC)",
]

#: Tables this revision creates, in dependency order (children after their parents).
CREATED = [
    "login_attempts", "security_events", "password_history", "email_delivery_logs",
    "sms_delivery_logs", "user_devices", "two_factor_auth", "two_factor_backup_codes",
    "oauth_connections", "api_keys", "account_recovery", "session_audits",
]  # fmt: skip
WITH_UPDATED_AT = [
    "email_delivery_logs", "sms_delivery_logs", "user_devices", "two_factor_auth",
    "oauth_connections", "account_recovery",
]  # fmt: skip
#: Tables a user reads their own rows of (written on the service path) ...
OWNER_READ = [
    "login_attempts", "security_events", "password_history", "email_delivery_logs",
    "sms_delivery_logs", "account_recovery", "session_audits",
]  # fmt: skip
#: ... and tables a user manages their own rows of.
OWNER_ALL = [
    "user_devices", "two_factor_auth", "two_factor_backup_codes", "oauth_connections", "api_keys",
]  # fmt: skip

UID = "(SELECT auth.uid())"
RLS_RERUN = (
    "-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it "
    "is a no-op, so a re-run is safe\n"
)

#: The plaintext TOTP secrets of seed 004 ...
SEED_IS_SET = "u.two_factor_secret IS NOT NULL AND btrim(u.two_factor_secret) <> ''"
#: ... that are not moved yet.
LEGACY_SECRETS = (
    f"{SEED_IS_SET} AND NOT EXISTS (SELECT 1 FROM auth.two_factor_auth AS t WHERE t.user_id = u.id)"
)
BASE32 = "^[A-Za-z2-7 =-]+$"
INSERT_ENROLMENT = text(
    "INSERT INTO auth.two_factor_auth (id, user_id, secret_encrypted, confirmed_at) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS uuid[]), "
    "CAST(:secrets AS bytea[]), CAST(:confirmed AS timestamptz[])) "
    "ON CONFLICT (user_id) DO NOTHING"
)


def _decode_seed(user_id: uuid.UUID, secret: str) -> bytes:
    """The raw TOTP seed behind a base32 text (case, spaces, dashes and padding ignored)."""
    cleaned = secret.upper().replace(" ", "").replace("-", "").rstrip("=")
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise MigrationError(
            f"the two_factor_secret of user {user_id} is not valid base32 (its length does not "
            f"decode); fix or clear it and run {revision} again"
        ) from exc


def _move_secrets(conn: Connection, cipher: FieldCipher, rows: Sequence[Any]) -> None:
    """Encrypt the seeds of ``rows`` (user id, secret, enabled) into two_factor_auth."""
    ids, users, secrets, confirmed = [], [], [], []
    now = conn.execute(text("SELECT now()")).scalar()
    for user_id, secret, enabled in rows:
        row_id = uuid.uuid4()
        aad = aad_for("two_factor_auth", "secret_encrypted", row_id)
        ids.append(row_id)
        users.append(user_id)
        secrets.append(cipher.encrypt(_decode_seed(user_id, secret), aad=aad))
        confirmed.append(now if enabled else None)
    conn.execute(
        INSERT_ENROLMENT, {"ids": ids, "users": users, "secrets": secrets, "confirmed": confirmed}
    )


def _cipher_for_legacy_secrets() -> FieldCipher | None:
    """The cipher the secret migration needs, checked before anything changes."""
    if is_offline() or not column_exists("users", "two_factor_secret"):
        return None  # offline, or a re-run after the column was dropped: nothing left to move
    pending = (
        LEGACY_SECRETS if scalar("SELECT to_regclass('auth.two_factor_auth')") else SEED_IS_SET
    )
    if not scalar(f"SELECT EXISTS (SELECT 1 FROM auth.users AS u WHERE {pending})"):
        return None
    malformed = scalar(
        f"SELECT count(*) FROM auth.users AS u WHERE {pending} "
        f"AND u.two_factor_secret !~ '{BASE32}'"
    )
    if malformed:
        refuse(
            f"{malformed} users.two_factor_secret values are not base32 TOTP seeds; fix or clear "
            f"them first (SELECT id FROM auth.users WHERE two_factor_secret !~ '{BASE32}'), "
            f"then run {revision} again. Nothing was changed."
        )
    return FieldCipher.from_ring(Settings.from_env().require_encryption_keys())


def upgrade() -> None:
    cipher = _cipher_for_legacy_secrets()  # before any change

    for name, values in ENUMS.items():
        op.execute(f"""
            DO $$
            BEGIN
                CREATE TYPE auth.{name} AS ENUM ({", ".join(f"'{v}'" for v in values)});
            EXCEPTION WHEN duplicate_object THEN NULL;  -- a re-run after a failure
            END;
            $$""")
    for statement in TABLES:
        op.execute(statement)
    for table in WITH_UPDATED_AT:
        op.execute(
            f"CREATE OR REPLACE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON auth.{table} "
            "FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column()"
        )
    with step():
        for table in CREATED:
            op.execute(f"{RLS_RERUN}ALTER TABLE auth.{table} ENABLE ROW LEVEL SECURITY")
        for table in OWNER_READ:
            op.execute(f"DROP POLICY IF EXISTS {table}_owner_read ON auth.{table}")
            op.execute(
                f"CREATE POLICY {table}_owner_read ON auth.{table} AS PERMISSIVE FOR SELECT "
                f"USING (user_id = {UID})"
            )
        for table in OWNER_ALL:
            op.execute(f"DROP POLICY IF EXISTS {table}_owner ON auth.{table}")
            op.execute(
                f"CREATE POLICY {table}_owner ON auth.{table} AS PERMISSIVE FOR ALL "
                f"USING (user_id = {UID}) WITH CHECK (user_id = {UID})"
            )

    # Seed 004's plaintext TOTP secrets move to two_factor_auth, encrypted, in batches ...
    if cipher is not None:
        batch_cipher = cipher  # the name the batches close over (``cipher`` is reassigned below)
        batched(
            "SELECT u.id, u.two_factor_secret, u.two_factor_enabled FROM auth.users AS u "
            f"WHERE u.id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
            f"AND {LEGACY_SECRETS} ORDER BY u.id LIMIT :limit",
            lambda conn, rows: _move_secrets(conn, batch_cipher, rows),
        )
    with step():
        # ... then, with writers waiting a moment, the secrets written since move too and the
        # plaintext column goes, in one transaction: no secret is written in between.
        op.execute("LOCK TABLE auth.users IN SHARE ROW EXCLUSIVE MODE")
        if not is_offline() and column_exists("users", "two_factor_secret"):
            late = (
                op.get_bind()
                .execute(
                    text(
                        "SELECT u.id, u.two_factor_secret, u.two_factor_enabled "
                        f"FROM auth.users AS u WHERE {LEGACY_SECRETS}"
                    )
                )
                .all()
            )
            if late:
                cipher = cipher or _cipher_for_legacy_secrets()
                assert cipher is not None
                _move_secrets(op.get_bind(), cipher, late)
        op.execute(
            "-- squawk-ignore ban-drop-column -- the plaintext TOTP seeds now live encrypted in "
            "two_factor_auth; the downgrade decrypts them back into this column\n"
            "ALTER TABLE auth.users DROP COLUMN IF EXISTS two_factor_secret"
        )


def downgrade() -> None:
    # Before any change: rows that would be lost, and the keys the secrets need.
    refuse_to_drop_rows(revision, [t for t in CREATED if t != "two_factor_auth"])
    cipher = (
        FieldCipher.from_ring(Settings.from_env().require_encryption_keys())
        if has_rows("two_factor_auth")
        else None
    )

    op.execute("ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS two_factor_secret TEXT")
    if cipher is not None:
        restore = text(
            "UPDATE auth.users AS u SET two_factor_secret = src.secret "
            "FROM unnest(CAST(:users AS uuid[]), CAST(:secrets AS text[])) AS src(id, secret) "
            "WHERE u.id = src.id"
        )

        def apply(conn: Connection, rows: Sequence[Any]) -> None:
            conn.execute(text(f"SET LOCAL {KEEP_UPDATED_AT} = 'on'"))
            secrets = [
                base64.b32encode(
                    cipher.decrypt(
                        bytes(envelope), aad=aad_for("two_factor_auth", "secret_encrypted", row_id)
                    )
                )
                .decode("ascii")
                .rstrip("=")
                for row_id, _, envelope in rows
            ]
            conn.execute(restore, {"users": [r[1] for r in rows], "secrets": secrets})

        batched(
            "SELECT id, user_id, secret_encrypted FROM auth.two_factor_auth "
            f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
            "ORDER BY id LIMIT :limit",
            apply,
        )

    for table in reversed(CREATED):
        op.execute(
            "-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused "
            "to run while one held rows it cannot keep, unless allow_data_loss was given\n"
            f"DROP TABLE IF EXISTS auth.{table}"
        )
    for name in ENUMS:
        op.execute(f"DROP TYPE IF EXISTS auth.{name}")
