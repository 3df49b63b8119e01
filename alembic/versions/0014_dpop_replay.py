"""DPoP replay store, and what the authentication flows need from the schema.

Seed 000, phase 1.4 week 4 (DPoP validation), for ``authmodels.services``. ``auth.dpop_jtis`` (the
``jti`` replay store, RLS with no policy) and ``auth.purge_expired_dpop_jtis()``;
``access_tokens.session_id``; full (not partial) token-hash indexes on ``sessions`` and
``refresh_tokens``, built concurrently; the flows' audit event types.

Downgrade: the store and its function go, the partial indexes come back, the flows' audit entries
move to quarantine; cannot be restored: the records of accepted proofs and which session issued
each access token.

See docs/phases/0014-dpop-replay.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from authmodels.revision_ops import (
    RERUN_GUARD,
    add_foreign_key,
    create_index_concurrently,
    drop_index_concurrently,
    quarantine_statement,
    step,
    validate_constraint,
)

revision: str = "0014_dpop_replay"
down_revision: str | Sequence[str] | None = "0013_device_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CRON_JOB = "authmodels-purge-dpop-jtis"
CRON_SCHEDULE = "*/10 * * * *"

#: The event types the CHECK allows before this revision: seed 004's (0001) and seed 001's (0009).
SEED_EVENT_TYPES = [
    "login", "logout", "password_change", "password_reset_request", "password_reset_complete",
    "email_verification", "account_locked", "account_unlocked", "2fa_enabled", "2fa_disabled",
    "session_revoked",
    "role_changed", "master_admin_designated", "master_admin_transferred", "step_up_issued",
    "step_up_used", "sensitive_action",
]  # fmt: skip
#: The event types the flows add.
FLOW_EVENT_TYPES = [
    "refresh_token_reused", "refresh_token_grace_replay", "dpop_binding_mismatch",
    "dpop_proof_replayed", "access_token_revoked", "device_flow_approved", "device_flow_denied",
    "device_flow_user_code_rejected", "device_flow_tokens_issued",
]  # fmt: skip
EVENT_CHECK = "ck_audit_logs_event_type_known"

#: Puts back the audit entries a downgrade of this revision moved to quarantine. The row type of
#: ``audit_logs`` rebuilds every column, whatever columns later revisions add.
RESTORE_AUDIT_ENTRIES = f"""
WITH restored AS (
    INSERT INTO auth.audit_logs
    SELECT r.* FROM auth.quarantine AS q,
           jsonb_populate_record(NULL::auth.audit_logs, q.row_data) AS r
     WHERE q.source_table = 'audit_logs' AND q.revision = '{revision}'
    ON CONFLICT DO NOTHING
    RETURNING id
)
DELETE FROM auth.quarantine AS q USING restored
 WHERE q.source_table = 'audit_logs' AND q.revision = '{revision}'
   AND q.row_data->>'id' = restored.id::text"""

#: Token-hash indexes made full: name -> (table, the partial condition they had).
TOKEN_INDEXES = {
    "ix_sessions_token_hash": ("sessions", "is_active"),
    "ix_refresh_tokens_token_hash": ("refresh_tokens", "used_at IS NULL AND revoked_at IS NULL"),
}

CREATE_TABLE = """
CREATE TABLE auth.dpop_jtis (
    jkt TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_dpop_jtis PRIMARY KEY (jkt, jti),
    CONSTRAINT ck_dpop_jtis_jkt_length CHECK (char_length(jkt) BETWEEN 1 AND 128),
    CONSTRAINT ck_dpop_jtis_jti_length CHECK (char_length(jti) BETWEEN 1 AND 256)
)"""

PURGE = """
CREATE OR REPLACE FUNCTION auth.purge_expired_dpop_jtis(batch_limit integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deleted bigint;
BEGIN
    -- At most batch_limit rows, skipping rows another purge holds: call again until it returns 0.
    DELETE FROM auth.dpop_jtis AS d USING (
        SELECT jkt, jti FROM auth.dpop_jtis WHERE expires_at < now()
         LIMIT batch_limit FOR UPDATE SKIP LOCKED
    ) AS doomed
     WHERE d.jkt = doomed.jkt AND d.jti = doomed.jti;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$"""

SCHEDULE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'cron') THEN
        EXECUTE format('SELECT cron.schedule(%L, %L, %L)',
                       '{CRON_JOB}', '{CRON_SCHEDULE}', 'SELECT auth.purge_expired_dpop_jtis()');
    END IF;
END;
$$"""

UNSCHEDULE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'cron') THEN
        EXECUTE 'SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1'
          USING '{CRON_JOB}';
    END IF;
END;
$$"""


def _in(values: Sequence[str]) -> str:
    return "event_type IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _replace_event_check(values: Sequence[str]) -> None:
    with step():
        op.execute(
            f"{RERUN_GUARD}ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS {EVENT_CHECK}"
        )
        op.execute(
            f"ALTER TABLE auth.audit_logs ADD CONSTRAINT {EVENT_CHECK} CHECK ({_in(values)}) "
            "NOT VALID"
        )
    with step():
        validate_constraint("audit_logs", EVENT_CHECK)


def upgrade() -> None:
    # access tokens know their session (the column is instant; FK and index without long locks)
    op.execute("ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS session_id UUID")
    add_foreign_key("access_tokens", "session_id", "sessions", ondelete="CASCADE")
    create_index_concurrently(
        "ix_access_tokens_session_id_created_at", "access_tokens", "session_id, created_at"
    )

    # token lookups whatever the token's state
    for name, (table, _) in TOKEN_INDEXES.items():
        create_index_concurrently(f"{name}_all", table, "token_hash")
        drop_index_concurrently(name)

    _replace_event_check([*SEED_EVENT_TYPES, *FLOW_EVENT_TYPES])

    # The revision's final transaction: the new table (its index needs no CONCURRENTLY), its
    # row-level security and purge, the entries a downgrade set aside, and instant renames.
    op.execute(CREATE_TABLE)
    op.execute("CREATE INDEX ix_dpop_jtis_expires_at ON auth.dpop_jtis (expires_at)")
    op.execute("ALTER TABLE auth.dpop_jtis ENABLE ROW LEVEL SECURITY")
    op.execute(PURGE)
    op.execute("REVOKE ALL ON FUNCTION auth.purge_expired_dpop_jtis(integer) FROM PUBLIC")
    op.execute(SCHEDULE)
    op.execute(RESTORE_AUDIT_ENTRIES)
    for name in TOKEN_INDEXES:
        op.execute(
            "-- squawk-ignore renaming-object -- the full index takes the name of the partial "
            "one it replaces (dropped above); the naming convention gives a full index on "
            "token_hash this name\n"
            f"ALTER INDEX auth.{name}_all RENAME TO {name}"
        )


def downgrade() -> None:
    with step():
        op.execute(
            quarantine_statement(
                "audit_logs",
                where=f"t.{_in(FLOW_EVENT_TYPES)}",
                reason="'event type added by 0014_dpop_replay (downgrade)'",
                revision=revision,
            )
        )
    _replace_event_check(SEED_EVENT_TYPES)

    for name, (table, where) in TOKEN_INDEXES.items():
        op.execute(f"ALTER INDEX auth.{name} RENAME TO {name}_all")
        create_index_concurrently(name, table, "token_hash", where=where)
        drop_index_concurrently(f"{name}_all")

    drop_index_concurrently("ix_access_tokens_session_id_created_at")
    op.execute("ALTER TABLE auth.access_tokens DROP COLUMN session_id")

    op.execute(UNSCHEDULE)
    op.execute("DROP FUNCTION auth.purge_expired_dpop_jtis(integer)")
    op.execute("DROP TABLE auth.dpop_jtis")
