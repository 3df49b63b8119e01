SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0027_default_partitions -> 0028_owner_maintenance

REVOKE EXECUTE ON FUNCTION auth.purge_expired_data(integer) FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION auth.archive_audit_logs(interval, integer) FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION auth.designate_master_admin(text) FROM PUBLIC;

CREATE POLICY security_events_owner_insert ON auth.security_events AS PERMISSIVE FOR INSERT WITH CHECK (user_id = (SELECT auth.uid()));

CREATE POLICY password_history_owner_insert ON auth.password_history AS PERMISSIVE FOR INSERT WITH CHECK (user_id = (SELECT auth.uid()));

UPDATE auth.alembic_version SET version_num='0028_owner_maintenance' WHERE auth.alembic_version.version_num = '0027_default_partitions';

COMMIT;

