SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0020_purge_function_locks -> 0021_foreign_key_indexes

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_refresh_tokens_parent_token_id ON auth.refresh_tokens (parent_token_id) WHERE parent_token_id IS NOT NULL;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_access_tokens_rotated_from ON auth.access_tokens (rotated_from) WHERE rotated_from IS NOT NULL;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_refresh_tokens_user_id ON auth.refresh_tokens (user_id);

BEGIN;

UPDATE auth.alembic_version SET version_num='0021_foreign_key_indexes' WHERE auth.alembic_version.version_num = '0020_purge_function_locks';

COMMIT;

