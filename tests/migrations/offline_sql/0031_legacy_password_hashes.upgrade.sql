SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0030_security_reports -> 0031_legacy_password_hashes

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_history DROP CONSTRAINT IF EXISTS ck_password_history_password_hash_format;

ALTER TABLE auth.password_history ADD CONSTRAINT ck_password_history_password_hash_format CHECK (password_hash ~ '^(\$argon2id\$|\$2[aby]\$|pbkdf2_sha256\$|\$pbkdf2-sha256\$|argon2\$argon2)') NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_history VALIDATE CONSTRAINT ck_password_history_password_hash_format;

COMMIT;

BEGIN;

-- quarantined rows of password_history from 0031_legacy_password_hashes are put back online only;

UPDATE auth.alembic_version SET version_num='0031_legacy_password_hashes' WHERE auth.alembic_version.version_num = '0030_security_reports';

COMMIT;

