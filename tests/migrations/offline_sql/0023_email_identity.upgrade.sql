SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0022_invoker_views -> 0023_email_identity

-- live accounts sharing an address in another letter case stop the upgrade;

COMMIT;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_users_email_identity ON auth.users (lower(email)) WHERE deleted_at IS NULL;

BEGIN;

UPDATE auth.alembic_version SET version_num='0023_email_identity' WHERE auth.alembic_version.version_num = '0022_invoker_views';

COMMIT;

