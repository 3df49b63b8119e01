SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0024_insert_guards -> 0025_keyed_log_hashes

COMMIT;

BEGIN;

CREATE TABLE IF NOT EXISTS auth.hash_pending_0025 (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name TEXT NOT NULL,
    row_id UUID NOT NULL
);

CREATE OR REPLACE FUNCTION auth.hash_pending_0025() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR NEW.ip_address IS NOT NULL OR NEW.user_agent IS NOT NULL THEN
        INSERT INTO auth.hash_pending_0025 (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id);
    END IF;
    RETURN NULL;
END
$$;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.audit_logs ADD COLUMN IF NOT EXISTS ip_hash BYTEA, ADD COLUMN IF NOT EXISTS ua_hash BYTEA;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS ck_audit_logs_ip_hash_digest;

ALTER TABLE auth.audit_logs ADD CONSTRAINT ck_audit_logs_ip_hash_digest CHECK (auth.is_token_digest(ip_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS ck_audit_logs_ua_hash_digest;

ALTER TABLE auth.audit_logs ADD CONSTRAINT ck_audit_logs_ua_hash_digest CHECK (auth.is_token_digest(ua_hash)) NOT VALID;

DROP TRIGGER IF EXISTS audit_logs_hash_pending_0025 ON auth.audit_logs;

CREATE TRIGGER audit_logs_hash_pending_0025 AFTER INSERT OR UPDATE OF ip_address, user_agent ON auth.audit_logs FOR EACH ROW EXECUTE FUNCTION auth.hash_pending_0025();

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.audit_logs_archive ADD COLUMN IF NOT EXISTS ip_hash BYTEA, ADD COLUMN IF NOT EXISTS ua_hash BYTEA;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.audit_logs_archive DROP CONSTRAINT IF EXISTS ck_audit_logs_archive_ip_hash_digest;

ALTER TABLE auth.audit_logs_archive ADD CONSTRAINT ck_audit_logs_archive_ip_hash_digest CHECK (auth.is_token_digest(ip_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.audit_logs_archive DROP CONSTRAINT IF EXISTS ck_audit_logs_archive_ua_hash_digest;

ALTER TABLE auth.audit_logs_archive ADD CONSTRAINT ck_audit_logs_archive_ua_hash_digest CHECK (auth.is_token_digest(ua_hash)) NOT VALID;

DROP TRIGGER IF EXISTS audit_logs_archive_hash_pending_0025 ON auth.audit_logs_archive;

CREATE TRIGGER audit_logs_archive_hash_pending_0025 AFTER INSERT OR UPDATE OF ip_address, user_agent ON auth.audit_logs_archive FOR EACH ROW EXECUTE FUNCTION auth.hash_pending_0025();

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens ADD COLUMN IF NOT EXISTS ip_hash BYTEA, ADD COLUMN IF NOT EXISTS ua_hash BYTEA;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_ip_hash_digest;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_ip_hash_digest CHECK (auth.is_token_digest(ip_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_ua_hash_digest;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_ua_hash_digest CHECK (auth.is_token_digest(ua_hash)) NOT VALID;

DROP TRIGGER IF EXISTS password_reset_tokens_hash_pending_0025 ON auth.password_reset_tokens;

CREATE TRIGGER password_reset_tokens_hash_pending_0025 AFTER INSERT OR UPDATE OF ip_address, user_agent ON auth.password_reset_tokens FOR EACH ROW EXECUTE FUNCTION auth.hash_pending_0025();

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, host(ip_address), user_agent FROM auth.audit_logs WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND ((ip_hash IS NULL AND ip_address IS NOT NULL) OR (ua_hash IS NULL AND user_agent IS NOT NULL)) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, host(ip_address), user_agent FROM auth.audit_logs_archive WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND ((ip_hash IS NULL AND ip_address IS NOT NULL) OR (ua_hash IS NULL AND user_agent IS NOT NULL)) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, host(ip_address), user_agent FROM auth.password_reset_tokens WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND ((ip_hash IS NULL AND ip_address IS NOT NULL) OR (ua_hash IS NULL AND user_agent IS NOT NULL)) ORDER BY id LIMIT NULL;

-- rows written with raw values during the backfill are hashed online only;

COMMIT;

BEGIN;

ALTER TABLE auth.audit_logs VALIDATE CONSTRAINT ck_audit_logs_ip_hash_digest;

ALTER TABLE auth.audit_logs VALIDATE CONSTRAINT ck_audit_logs_ua_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.audit_logs_archive VALIDATE CONSTRAINT ck_audit_logs_archive_ip_hash_digest;

ALTER TABLE auth.audit_logs_archive VALIDATE CONSTRAINT ck_audit_logs_archive_ua_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_ip_hash_digest;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_ua_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.audit_logs VALIDATE CONSTRAINT ck_audit_logs_ip_hash_digest;

ALTER TABLE auth.audit_logs VALIDATE CONSTRAINT ck_audit_logs_ua_hash_digest;

COMMIT;

BEGIN;

-- squawk-ignore require-concurrent-index-creation -- ON ONLY a partitioned table: no rows to build (each partition's index is built concurrently, then attached)
CREATE INDEX IF NOT EXISTS ix_audit_logs_ip_hash_created_at ON ONLY auth.audit_logs (ip_hash, created_at DESC);

-- each partition of auth.audit_logs gets ix_audit_logs_ip_hash_created_at concurrently (online only);

LOCK TABLE auth.audit_logs, auth.audit_logs_archive, auth.password_reset_tokens IN SHARE ROW EXCLUSIVE MODE;

-- rows written with raw values during the backfill are hashed online only;

-- squawk-ignore ban-drop-trigger -- the temporary trigger of this revision's change log
DROP TRIGGER IF EXISTS audit_logs_hash_pending_0025 ON auth.audit_logs;

-- squawk-ignore ban-drop-trigger -- the temporary trigger of this revision's change log
DROP TRIGGER IF EXISTS audit_logs_archive_hash_pending_0025 ON auth.audit_logs_archive;

-- squawk-ignore ban-drop-trigger -- the temporary trigger of this revision's change log
DROP TRIGGER IF EXISTS password_reset_tokens_hash_pending_0025 ON auth.password_reset_tokens;

-- squawk-ignore ban-drop-function -- the temporary change log's trigger function
DROP FUNCTION IF EXISTS auth.hash_pending_0025();

-- squawk-ignore ban-drop-table -- the temporary change log of this revision, empty now
DROP TABLE IF EXISTS auth.hash_pending_0025;

CREATE OR REPLACE FUNCTION auth.archive_audit_logs(
    older_than interval DEFAULT interval '90 days', batch_size integer DEFAULT 10000
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved bigint;
BEGIN
    IF older_than < interval '0' OR batch_size < 1 THEN
        RAISE EXCEPTION 'archive_audit_logs needs older_than >= 0 and batch_size >= 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One statement: a row leaves audit_logs only together with its copy in the archive.
    WITH batch AS (
        SELECT id FROM auth.audit_logs
         WHERE created_at < now() - older_than
         ORDER BY created_at
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM auth.audit_logs AS a USING batch WHERE a.id = batch.id
        RETURNING a.*
    )
    INSERT INTO auth.audit_logs_archive (id, user_id, event_type, details, created_at, event_status, actor_user_id, target_user_id, action, correlation_id, ip_hash, ua_hash)
    SELECT id, user_id, event_type, details, created_at, event_status, actor_user_id, target_user_id, action, correlation_id, ip_hash, ua_hash FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END;
$$;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.audit_logs DROP COLUMN IF EXISTS ip_address;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.audit_logs DROP COLUMN IF EXISTS user_agent;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.audit_logs_archive DROP COLUMN IF EXISTS ip_address;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.audit_logs_archive DROP COLUMN IF EXISTS user_agent;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.password_reset_tokens DROP COLUMN IF EXISTS ip_address;

-- squawk-ignore ban-drop-column -- replaced by its keyed hash, filled above; the raw value must not be kept (see the docstring)
ALTER TABLE auth.password_reset_tokens DROP COLUMN IF EXISTS user_agent;

UPDATE auth.alembic_version SET version_num='0025_keyed_log_hashes' WHERE auth.alembic_version.version_num = '0024_insert_guards';

COMMIT;

