SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0023_email_identity -> 0022_invoker_views

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.uq_users_email_identity;

BEGIN;

UPDATE auth.alembic_version SET version_num='0022_invoker_views' WHERE auth.alembic_version.version_num = '0023_email_identity';

COMMIT;

