SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0025_keyed_log_hashes -> 0026_token_shape_checks

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.token_hash) OR NOT auth.is_token_digest(t.refresh_token_hash) OR NOT auth.is_token_digest(t.ip_hash) OR NOT auth.is_token_digest(t.ua_hash) FROM auth.sessions AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_digest;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_token_hash_digest CHECK (auth.is_token_digest(token_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_refresh_token_hash_digest;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_refresh_token_hash_digest CHECK (auth.is_token_digest(refresh_token_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_ip_hash_digest;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_ip_hash_digest CHECK (auth.is_token_digest(ip_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_ua_hash_digest;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_ua_hash_digest CHECK (auth.is_token_digest(ua_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_token_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_refresh_token_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_ip_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_ua_hash_digest;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.token_hash) FROM auth.refresh_tokens AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_digest;

ALTER TABLE auth.refresh_tokens ADD CONSTRAINT ck_refresh_tokens_token_hash_digest CHECK (auth.is_token_digest(token_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens VALIDATE CONSTRAINT ck_refresh_tokens_token_hash_digest;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.token_hash) FROM auth.access_tokens AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_hash_digest;

ALTER TABLE auth.access_tokens ADD CONSTRAINT ck_access_tokens_token_hash_digest CHECK (auth.is_token_digest(token_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens VALIDATE CONSTRAINT ck_access_tokens_token_hash_digest;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.token_hash) FROM auth.password_reset_tokens AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_digest;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_token_hash_digest CHECK (auth.is_token_digest(token_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_token_hash_digest;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.token_hash) FROM auth.email_verification_tokens AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_digest;

ALTER TABLE auth.email_verification_tokens ADD CONSTRAINT ck_email_verification_tokens_token_hash_digest CHECK (auth.is_token_digest(token_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.email_verification_tokens VALIDATE CONSTRAINT ck_email_verification_tokens_token_hash_digest;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id, NOT auth.is_token_digest(t.device_code_hash) OR NOT auth.is_token_digest(t.user_code_hash) FROM auth.device_flows AS t WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.device_flows DROP CONSTRAINT IF EXISTS ck_device_flows_device_code_hash_digest;

ALTER TABLE auth.device_flows ADD CONSTRAINT ck_device_flows_device_code_hash_digest CHECK (auth.is_token_digest(device_code_hash)) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.device_flows DROP CONSTRAINT IF EXISTS ck_device_flows_user_code_hash_digest;

ALTER TABLE auth.device_flows ADD CONSTRAINT ck_device_flows_user_code_hash_digest CHECK (auth.is_token_digest(user_code_hash)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.device_flows VALIDATE CONSTRAINT ck_device_flows_device_code_hash_digest;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.device_flows VALIDATE CONSTRAINT ck_device_flows_user_code_hash_digest;

COMMIT;

BEGIN;

UPDATE auth.alembic_version SET version_num='0026_token_shape_checks' WHERE auth.alembic_version.version_num = '0025_keyed_log_hashes';

COMMIT;

