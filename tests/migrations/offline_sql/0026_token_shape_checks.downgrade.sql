SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0026_token_shape_checks -> 0025_keyed_log_hashes

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_refresh_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_ip_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_ua_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.device_flows DROP CONSTRAINT IF EXISTS ck_device_flows_device_code_hash_digest;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's check
ALTER TABLE auth.device_flows DROP CONSTRAINT IF EXISTS ck_device_flows_user_code_hash_digest;

-- quarantined rows of sessions from 0026_token_shape_checks are put back online only;

-- quarantined rows of refresh_tokens from 0026_token_shape_checks are put back online only;

-- quarantined rows of access_tokens from 0026_token_shape_checks are put back online only;

-- quarantined rows of password_reset_tokens from 0026_token_shape_checks are put back online only;

-- quarantined rows of email_verification_tokens from 0026_token_shape_checks are put back online only;

-- quarantined rows of device_flows from 0026_token_shape_checks are put back online only;

-- quarantined rows of step_up_tokens from 0026_token_shape_checks are put back online only;

UPDATE auth.alembic_version SET version_num='0025_keyed_log_hashes' WHERE auth.alembic_version.version_num = '0026_token_shape_checks';

COMMIT;

