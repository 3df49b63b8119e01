SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0034_account_lifecycle -> 0035_replica_revocations

CREATE OR REPLACE FUNCTION auth.revocation_waits_for_replicas() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- the rule: once a revocation commits, no synchronous standby accepts the credential
    PERFORM pg_catalog.set_config('synchronous_commit', 'remote_apply', true);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION auth.revocation_waits_for_replicas() IS 'Makes a revoking transaction commit with synchronous_commit = remote_apply (0035)';

CREATE TRIGGER revocation_waits_for_replicas AFTER UPDATE OF revoked_at, is_active ON auth.sessions FOR EACH ROW WHEN ((OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) OR (OLD.is_active AND NOT NEW.is_active)) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

CREATE TRIGGER revocation_waits_for_replicas_on_delete AFTER DELETE ON auth.sessions FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now()) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

CREATE TRIGGER revocation_waits_for_replicas AFTER UPDATE OF revoked_at ON auth.access_tokens FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

CREATE TRIGGER revocation_waits_for_replicas_on_delete AFTER DELETE ON auth.access_tokens FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now()) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

CREATE TRIGGER revocation_waits_for_replicas AFTER UPDATE OF revoked_at ON auth.api_keys FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

CREATE TRIGGER revocation_waits_for_replicas_on_delete AFTER DELETE ON auth.api_keys FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND (OLD.expires_at IS NULL OR OLD.expires_at > now())) EXECUTE FUNCTION auth.revocation_waits_for_replicas();

UPDATE auth.alembic_version SET version_num='0035_replica_revocations' WHERE auth.alembic_version.version_num = '0034_account_lifecycle';

COMMIT;

