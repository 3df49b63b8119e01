SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0007_privacy_retention -> 0006_row_level_security

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'cron') THEN
        EXECUTE 'SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1'
          USING 'authmodels-purge-expired-data';
    END IF;
END;
$$;

DROP FUNCTION auth.purge_expired_data(integer);

DROP TRIGGER trg_device_flows_retention ON auth.device_flows;

DROP FUNCTION auth.set_retention_expires_at();

ALTER TABLE auth.device_flows ALTER COLUMN retention_expires_at DROP NOT NULL;

DROP VIEW auth.active_sessions;

ALTER TABLE auth.sessions ADD COLUMN ip_address INET, ADD COLUMN user_agent TEXT;

ALTER TABLE auth.sessions DROP COLUMN ip_hash, DROP COLUMN ua_hash;

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
   AND u.deleted_at IS NULL;

UPDATE auth.alembic_version SET version_num='0006_row_level_security' WHERE auth.alembic_version.version_num = '0007_privacy_retention';

COMMIT;

