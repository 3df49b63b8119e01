SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0022_invoker_views -> 0021_foreign_key_indexes

ALTER VIEW auth.user_security_status RESET (security_invoker);

UPDATE auth.alembic_version SET version_num='0021_foreign_key_indexes' WHERE auth.alembic_version.version_num = '0022_invoker_views';

COMMIT;

