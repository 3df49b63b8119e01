SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0021_foreign_key_indexes -> 0020_purge_function_locks

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_refresh_tokens_parent_token_id;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_access_tokens_rotated_from;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_refresh_tokens_user_id;

BEGIN;

UPDATE auth.alembic_version SET version_num='0020_purge_function_locks' WHERE auth.alembic_version.version_num = '0021_foreign_key_indexes';

COMMIT;

