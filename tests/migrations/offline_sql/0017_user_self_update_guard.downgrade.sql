SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0017_user_self_update_guard -> 0016_retention_policies

DROP TRIGGER IF EXISTS users_guard_self_update ON auth.users;

DROP FUNCTION IF EXISTS auth.guard_user_self_update();

UPDATE auth.alembic_version SET version_num='0016_retention_policies' WHERE auth.alembic_version.version_num = '0017_user_self_update_guard';

COMMIT;

