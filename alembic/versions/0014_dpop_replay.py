"""DPoP replay store, and what the authentication flows need from the schema.

Seed 000, phase 1.4 week 4 ("DPoP Validation: test DPoP binding and replay protection"), for the
flows of :mod:`authmodels.services` (issue 6). The seed binds tokens to a DPoP key (revision
0005) but keeps no record of the proofs it accepted, so a captured proof could be replayed for
as long as its ``iat`` is fresh; RFC 9449 section 11.1 asks the server to refuse a ``jti`` it has
already seen. This revision:

- ``auth.dpop_jtis`` (``jkt``, ``jti``, ``expires_at``, ``created_at``; primary key ``(jkt,
  jti)``): the replay store of :func:`authmodels.services.tokens.check_dpop_proof`, which records
  a proof with one ``INSERT ... ON CONFLICT`` (atomic under concurrency). ``jti`` is the proof's
  public identifier (not a secret) and is limited to 256 characters, ``jkt`` to 128, so index
  entries stay small. ``expires_at`` (``iat + max_age + leeway``) is the retention column:
  ``ix_dpop_jtis_expires_at`` serves ``auth.purge_expired_dpop_jtis(batch_limit)``, a ``SECURITY
  DEFINER`` function deleting expired rows in ``FOR UPDATE SKIP LOCKED`` batches, scheduled every
  10 minutes when pg_cron is installed (job ``authmodels-purge-dpop-jtis``). It is a function of
  its own rather than a branch of 0007's ``auth.purge_expired_data()`` so that no revision
  rewrites another's function body (the rows live minutes, not days, and need a tighter
  schedule anyway).
- Row-level security on ``dpop_jtis``: the rows belong to no user (a key thumbprint and a proof
  id), so there is no owner policy. RLS is enabled with **no** policy for the application role:
  it can neither read nor write the store; only the tables' owner and the service path (a role
  registered with ``auth.grant_service_role``, which covers every RLS table -- run it again after
  this upgrade) can. Replay checks run before a user is known, on the service path, like token
  lookups.
- ``access_tokens.session_id`` (``ON DELETE CASCADE``, index ``(session_id, created_at)``): the
  session an access token was issued from. Revoking a session revokes its access tokens, token
  checks join the session (the kill switch), and a rotation finds the session's newest access
  token for the new one's ``rotated_from``. NULL for tokens issued before this revision.
- ``ix_sessions_token_hash`` and ``ix_refresh_tokens_token_hash`` become full indexes (they were
  partial: ``WHERE is_active`` and ``WHERE used_at IS NULL AND revoked_at IS NULL``). The flows
  must find a token whatever its state -- to tell a revoked session from an unknown token, and to
  find a *used* refresh token, which is how reuse is detected (RFC 9700 section 4.14.2) -- and a
  lookup the index cannot serve would scan the table for every invalid token anyone presents.
  Each is built concurrently under a temporary name, the partial one dropped, and the new one
  renamed.
- ``audit_logs.event_type`` accepts the flows' events: ``refresh_token_reused``,
  ``refresh_token_grace_replay``, ``dpop_binding_mismatch``, ``dpop_proof_replayed``,
  ``access_token_revoked``, ``device_flow_approved``, ``device_flow_denied``,
  ``device_flow_user_code_rejected``, ``device_flow_tokens_issued``. The CHECK is replaced by a
  wider one added ``NOT VALID`` then validated.

Downgrade: the replay store, its function and schedule go (replays of proofs still fresh become
possible for up to ``max_age``); the partial indexes come back; ``access_tokens.session_id`` is
dropped; audit entries of the flows' event types are moved to ``auth.quarantine`` (nothing is
deleted) so that the narrower CHECK holds again, and an upgrade puts them back.
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
