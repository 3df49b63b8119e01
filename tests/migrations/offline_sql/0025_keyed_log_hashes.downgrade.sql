SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0025_keyed_log_hashes -> 0024_insert_guards

ALTER TABLE auth.audit_logs ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT;

ALTER TABLE auth.audit_logs_archive ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT;

ALTER TABLE auth.password_reset_tokens ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT;

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
    INSERT INTO auth.audit_logs_archive (id, user_id, event_type, ip_address, user_agent, details, created_at, event_status, actor_user_id, target_user_id, action, correlation_id)
    SELECT id, user_id, event_type, ip_address, user_agent, details, created_at, event_status, actor_user_id, target_user_id, action, correlation_id FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END;
$$;

-- squawk-ignore require-concurrent-index-creation -- ON ONLY a partitioned table: no rows to build (each partition's index is built concurrently, then attached)
CREATE INDEX IF NOT EXISTS ix_audit_logs_ip_address_created_at ON ONLY auth.audit_logs (ip_address, created_at DESC);

-- each partition of auth.audit_logs gets ix_audit_logs_ip_address_created_at concurrently (online only);

ALTER TABLE auth.audit_logs DROP COLUMN ip_hash, DROP COLUMN ua_hash;

ALTER TABLE auth.audit_logs_archive DROP COLUMN ip_hash, DROP COLUMN ua_hash;

ALTER TABLE auth.password_reset_tokens DROP COLUMN ip_hash, DROP COLUMN ua_hash;

UPDATE auth.alembic_version SET version_num='0024_insert_guards' WHERE auth.alembic_version.version_num = '0025_keyed_log_hashes';

COMMIT;

