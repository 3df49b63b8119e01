SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0010_security_tables -> 0009_step_up_admin_safety

ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS two_factor_secret TEXT;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.session_audits;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.account_recovery;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.api_keys;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.oauth_connections;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.two_factor_backup_codes;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.two_factor_auth;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.user_devices;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.sms_delivery_logs;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.email_delivery_logs;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.password_history;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.security_events;

-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused to run while one held rows it cannot keep, unless allow_data_loss was given
DROP TABLE IF EXISTS auth.login_attempts;

DROP TYPE IF EXISTS auth.login_attempt_result;

DROP TYPE IF EXISTS auth.security_event_severity;

DROP TYPE IF EXISTS auth.delivery_status;

DROP TYPE IF EXISTS auth.account_recovery_method;

DROP TYPE IF EXISTS auth.account_recovery_status;

DROP TYPE IF EXISTS auth.session_audit_action;

UPDATE auth.alembic_version SET version_num='0009_step_up_admin_safety' WHERE auth.alembic_version.version_num = '0010_security_tables';

COMMIT;

