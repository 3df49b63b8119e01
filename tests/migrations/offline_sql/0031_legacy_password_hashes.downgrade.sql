SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0031_legacy_password_hashes -> 0030_security_reports

COMMIT;

BEGIN;

WITH moved AS (DELETE FROM auth.password_history AS t WHERE NOT (t.password_hash ~ '^\$(argon2id|2[aby])\$') RETURNING to_jsonb(t) AS row_data, 'a legacy scheme the password history of 0028 does not accept' AS reason) INSERT INTO auth.quarantine (source_table, reason, row_data, revision) SELECT 'password_history', moved.reason, moved.row_data, '0031_legacy_password_hashes' FROM moved;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_history DROP CONSTRAINT IF EXISTS ck_password_history_password_hash_format;

ALTER TABLE auth.password_history ADD CONSTRAINT ck_password_history_password_hash_format CHECK (password_hash ~ '^\$(argon2id|2[aby])\$') NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_history VALIDATE CONSTRAINT ck_password_history_password_hash_format;

COMMIT;

BEGIN;

UPDATE auth.alembic_version SET version_num='0030_security_reports' WHERE auth.alembic_version.version_num = '0031_legacy_password_hashes';

COMMIT;

