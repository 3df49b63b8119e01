SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0024_insert_guards -> 0023_email_identity

DROP TRIGGER IF EXISTS audit_logs_actor ON auth.audit_logs;

DROP FUNCTION IF EXISTS auth.audit_actor_is_current_user();

DROP TRIGGER IF EXISTS device_key_events_actor ON auth.device_key_events;

DROP FUNCTION IF EXISTS auth.device_key_event_actor_is_current_user();

DROP TRIGGER IF EXISTS users_guard_self_insert ON auth.users;

DROP FUNCTION IF EXISTS auth.guard_user_self_insert();

UPDATE auth.alembic_version SET version_num='0023_email_identity' WHERE auth.alembic_version.version_num = '0024_insert_guards';

COMMIT;

