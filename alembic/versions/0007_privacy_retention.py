"""Privacy and retention: sessions keep keyed IP / user-agent hashes only; expired data is purged.

Seed 000, phase 1.4 week 6. ``sessions.ip_hash`` and ``ua_hash`` (``PrivacyHasher`` digests) are
filled in batches and the raw ``ip_address`` and ``user_agent`` dropped;
``device_flows.retention_expires_at`` becomes NOT NULL, filled by a trigger;
``auth.purge_expired_data()`` purges in batches, scheduled daily when pg_cron is installed. Needs
``AUTHMODELS_PRIVACY_KEYS`` (or ``AUTHMODELS_HASH_KEYS``) when sessions hold rows.

Downgrade: cannot restore raw IP addresses and user agents (the columns come back NULL); the
trigger, the purge function and its job go.

See docs/phases/0007-privacy-retention.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import (
    NIL_UUID,
    backfill_computed,
    batched,
    create_catch_up_index,
    fill_computed_now,
    finish_not_null,
    prepare_not_null,
    require_privacy_keys,
)
from authmodels.security.privacy import PrivacyHasher

revision: str = "0007_privacy_retention"
down_revision: str | Sequence[str] | None = "0006_row_level_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Distinct addresses and user agents whose hashes are kept while the backfill runs.
HASH_CACHE_SIZE = 100_000

CRON_JOB = "authmodels-purge-expired-data"
CRON_SCHEDULE = "17 3 * * *"

ACTIVE_SESSIONS_0006 = """
CREATE VIEW auth.active_sessions WITH (security_invoker = true) AS
SELECT s.id AS session_id,
       s.user_id,
       u.email,
       s.ip_address,
       s.user_agent,
       s.device_fingerprint,
       s.created_at,
       s.last_activity_at,
       s.expires_at
  FROM auth.sessions s
  JOIN auth.users u ON u.id = s.user_id
 WHERE s.is_active
   AND s.expires_at > now()
   AND u.deleted_at IS NULL"""

ACTIVE_SESSIONS_0007 = ACTIVE_SESSIONS_0006.replace(
    "s.ip_address,\n       s.user_agent,", "s.ip_hash,\n       s.ua_hash,"
)

RETENTION_TRIGGER = """
CREATE OR REPLACE FUNCTION auth.set_retention_expires_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: how long after expires_at the row is kept
    IF NEW.retention_expires_at IS NULL THEN
        NEW.retention_expires_at := NEW.expires_at + TG_ARGV[0]::interval;
    END IF;
    RETURN NEW;
END;
$$"""

PURGE = """
CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Each DELETE takes at most batch_limit rows, skipping rows another purge holds, so runs
    -- stay short and may overlap; call again until every count is 0.
    table_name := 'device_flows';
    DELETE FROM auth.device_flows WHERE id IN (
        SELECT id FROM auth.device_flows WHERE retention_expires_at < now()
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'sessions';  -- their refresh tokens go with them (ON DELETE CASCADE)
    DELETE FROM auth.sessions WHERE id IN (
        SELECT id FROM auth.sessions
         WHERE expires_at < now() - interval '30 days'
            OR revoked_at < now() - interval '30 days'
            OR (NOT is_active AND last_activity_at < now() - interval '30 days')
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'refresh_tokens';
    DELETE FROM auth.refresh_tokens WHERE id IN (
        SELECT id FROM auth.refresh_tokens
         WHERE expires_at < now() - interval '30 days'
            OR used_at < now() - interval '30 days'
            OR revoked_at < now() - interval '30 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'access_tokens';
    DELETE FROM auth.access_tokens WHERE id IN (
        SELECT id FROM auth.access_tokens
         WHERE expires_at < now() - interval '7 days'
            OR revoked_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'password_reset_tokens';
    DELETE FROM auth.password_reset_tokens WHERE id IN (
        SELECT id FROM auth.password_reset_tokens
         WHERE expires_at < now() - interval '7 days'
            OR used_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'email_verification_tokens';
    DELETE FROM auth.email_verification_tokens WHERE id IN (
        SELECT id FROM auth.email_verification_tokens
         WHERE expires_at < now() - interval '7 days'
            OR verified_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'app_logs';
    DELETE FROM auth.app_logs WHERE id IN (
        SELECT id FROM auth.app_logs WHERE created_at < now() - interval '90 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;
END;
$$"""

SCHEDULE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'cron') THEN
        EXECUTE format('SELECT cron.schedule(%L, %L, %L)',
                       '{CRON_JOB}', '{CRON_SCHEDULE}', 'SELECT auth.purge_expired_data()');
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


def upgrade() -> None:
    ring = require_privacy_keys(tables_with_rows=["sessions"])  # before any change
    hasher = None if ring is None else PrivacyHasher.from_ring(ring)

    # Many sessions share an address or a user agent: each distinct value is hashed once.
    @lru_cache(maxsize=HASH_CACHE_SIZE)
    def ip_hash(ip: str) -> bytes:
        assert hasher is not None  # rows exist, so a ring was required
        return hasher.ip_hash(ip)

    @lru_cache(maxsize=HASH_CACHE_SIZE)
    def ua_hash(user_agent: str) -> bytes:
        assert hasher is not None
        return hasher.ua_hash(user_agent)

    def hashes(row: Sequence[Any]) -> tuple[bytes | None, bytes | None]:
        ip, user_agent = row
        if hasher is None:  # unreachable: rows exist, so a ring was required
            raise AssertionError("no privacy key ring")
        return (
            None if ip is None else ip_hash(ip),
            None if user_agent is None else ua_hash(user_agent),
        )

    fill: dict[str, Any] = {
        # host() gives the address without a netmask, whatever the INET value carries
        "sources": ["host(ip_address)", "user_agent"],
        "targets": [("ip_hash", "bytea"), ("ua_hash", "bytea")],
        "compute": hashes,
        "where": "(ip_hash IS NULL AND ip_address IS NOT NULL) "
        "OR (ua_hash IS NULL AND user_agent IS NOT NULL)",
    }

    op.execute("ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS ip_hash BYTEA")
    op.execute("ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS ua_hash BYTEA")
    op.execute(RETENTION_TRIGGER)
    op.execute("DROP TRIGGER IF EXISTS trg_device_flows_retention ON auth.device_flows")
    op.execute(
        "CREATE TRIGGER trg_device_flows_retention BEFORE INSERT ON auth.device_flows "
        "FOR EACH ROW EXECUTE FUNCTION auth.set_retention_expires_at('1 day')"
    )
    op.execute(PURGE)
    op.execute(SCHEDULE)

    # page by page, on two connections: the same rows and hashes (docs/benchmarks.md,
    # "Migrations on a large database")
    backfill_computed("sessions", **fill, walk_pages=True, workers=2, passes=3)
    # Flows inserted between 0004 and the trigger above have no retention time yet.
    retain = text(
        "UPDATE auth.device_flows SET retention_expires_at = expires_at + interval '1 day' "
        "WHERE id = ANY(CAST(:ids AS uuid[])) AND retention_expires_at IS NULL"
    )

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(retain, {"ids": [row[0] for row in rows]})

    batched(
        "SELECT id FROM auth.device_flows "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
        "AND retention_expires_at IS NULL ORDER BY id LIMIT :limit",
        apply,
    )
    prepare_not_null("device_flows", "retention_expires_at")

    # The sessions written since the backfill, found under the lock below without a scan
    # (online only); the index goes with the raw columns its condition names.
    create_catch_up_index("sessions", fill["where"])

    # The revision's final transaction. Writers wait (readers do not) while sessions written
    # since the backfill are hashed; then the raw columns go, instantly.
    op.execute("LOCK TABLE auth.sessions IN SHARE ROW EXCLUSIVE MODE")
    fill_computed_now("sessions", **fill)
    finish_not_null("device_flows", "retention_expires_at")
    op.execute(
        "-- squawk-ignore ban-drop-view -- recreated below with the hashes instead of the raw "
        "columns it shows\n"
        "DROP VIEW IF EXISTS auth.active_sessions"
    )
    for column in ("ip_address", "user_agent"):
        op.execute(
            "-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the "
            "raw value must not be kept (see the docstring)\n"
            f"ALTER TABLE auth.sessions DROP COLUMN IF EXISTS {column}"
        )
    op.execute(ACTIVE_SESSIONS_0007)


def downgrade() -> None:
    op.execute(UNSCHEDULE)
    op.execute("DROP FUNCTION auth.purge_expired_data(integer)")
    op.execute("DROP TRIGGER trg_device_flows_retention ON auth.device_flows")
    op.execute("DROP FUNCTION auth.set_retention_expires_at()")
    op.execute("ALTER TABLE auth.device_flows ALTER COLUMN retention_expires_at DROP NOT NULL")
    op.execute("DROP VIEW auth.active_sessions")
    # The raw values cannot be recovered from keyed hashes: the columns come back empty.
    op.execute("ALTER TABLE auth.sessions ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT")
    op.execute("ALTER TABLE auth.sessions DROP COLUMN ip_hash, DROP COLUMN ua_hash")
    op.execute(ACTIVE_SESSIONS_0006)
