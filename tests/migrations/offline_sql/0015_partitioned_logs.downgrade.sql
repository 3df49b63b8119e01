SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0015_partitioned_logs -> 0014_dpop_replay

-- rebuild of auth.audit_logs as a plain table runs online only (it copies the rows in batches);

-- rebuild of auth.login_attempts as a plain table runs online only (it copies the rows in batches);

DROP FUNCTION auth.ensure_monthly_partitions(regclass, integer, date, date);

UPDATE auth.alembic_version SET version_num='0014_dpop_replay' WHERE auth.alembic_version.version_num = '0015_partitioned_logs';

COMMIT;

