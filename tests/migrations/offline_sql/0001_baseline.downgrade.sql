SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0001_baseline -> 

DROP VIEW auth.user_security_status;

DROP VIEW auth.active_sessions;

DROP FUNCTION auth.cleanup_expired_tokens();

DROP FUNCTION auth.cleanup_expired_sessions();

DROP TRIGGER update_users_updated_at ON auth.users;

DROP FUNCTION auth.update_updated_at_column();

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.messages;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.conversation_participants;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.conversations;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.app_logs;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.access_tokens;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.device_flows;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.biometric_credentials;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.user_profiles;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.audit_logs;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.email_verification_tokens;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.password_reset_tokens;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.refresh_tokens;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.sessions;

-- squawk-ignore ban-drop-table -- the baseline's downgrade removes its own tables
DROP TABLE auth.users;

DELETE FROM auth.alembic_version WHERE auth.alembic_version.version_num = '0001_baseline';

COMMIT;

