SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0016_retention_policies -> 0015_partitioned_logs

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_access_tokens_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_refresh_tokens_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_sessions_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_password_reset_tokens_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_email_verification_tokens_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_step_up_tokens_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_session_audits_created_at;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_account_recovery_retention;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_two_factor_backup_codes_used_at;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_audit_logs_archive_archived_at;

BEGIN;

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
$$;

DROP TABLE auth.retention_policies;

UPDATE auth.alembic_version SET version_num='0015_partitioned_logs' WHERE auth.alembic_version.version_num = '0016_retention_policies';

COMMIT;

