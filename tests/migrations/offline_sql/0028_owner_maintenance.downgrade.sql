SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0028_owner_maintenance -> 0027_default_partitions

DROP POLICY IF EXISTS security_events_owner_insert ON auth.security_events;

DROP POLICY IF EXISTS password_history_owner_insert ON auth.password_history;

GRANT EXECUTE ON FUNCTION auth.purge_expired_data(integer) TO PUBLIC;

GRANT EXECUTE ON FUNCTION auth.archive_audit_logs(interval, integer) TO PUBLIC;

GRANT EXECUTE ON FUNCTION auth.designate_master_admin(text) TO PUBLIC;

UPDATE auth.alembic_version SET version_num='0027_default_partitions' WHERE auth.alembic_version.version_num = '0028_owner_maintenance';

COMMIT;

