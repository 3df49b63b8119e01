SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0004_device_flow_hardening -> 0005_token_session_safety

ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS token_hash_keyed BYTEA;

ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS refresh_token_hash_keyed BYTEA;

ALTER TABLE auth.sessions
ADD COLUMN IF NOT EXISTS -- squawk-ignore prefer-bigint-over-smallint -- a scheme number, 1 or 2 (ck_<table>_digest_scheme_known)
digest_scheme SMALLINT NOT NULL DEFAULT 1;

ALTER TABLE auth.refresh_tokens ADD COLUMN IF NOT EXISTS token_hash_keyed BYTEA;

ALTER TABLE auth.refresh_tokens
ADD COLUMN IF NOT EXISTS -- squawk-ignore prefer-bigint-over-smallint -- a scheme number, 1 or 2 (ck_<table>_digest_scheme_known)
digest_scheme SMALLINT NOT NULL DEFAULT 1;

ALTER TABLE auth.password_reset_tokens ADD COLUMN IF NOT EXISTS token_hash_keyed BYTEA;

ALTER TABLE auth.password_reset_tokens
ADD COLUMN IF NOT EXISTS -- squawk-ignore prefer-bigint-over-smallint -- a scheme number, 1 or 2 (ck_<table>_digest_scheme_known)
digest_scheme SMALLINT NOT NULL DEFAULT 1;

ALTER TABLE auth.email_verification_tokens ADD COLUMN IF NOT EXISTS token_hash_keyed BYTEA;

ALTER TABLE auth.email_verification_tokens
ADD COLUMN IF NOT EXISTS -- squawk-ignore prefer-bigint-over-smallint -- a scheme number, 1 or 2 (ck_<table>_digest_scheme_known)
digest_scheme SMALLINT NOT NULL DEFAULT 1;

ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS token_hash BYTEA;

ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS dpop_jkt TEXT;

ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS rotated_from UUID;

ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ;

ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS dpop_jkt TEXT;

ALTER TABLE auth.sessions ADD COLUMN IF NOT EXISTS last_rotated_at TIMESTAMPTZ;

ALTER TABLE auth.refresh_tokens ADD COLUMN IF NOT EXISTS dpop_jkt TEXT;

-- batched backfill runs online only: SELECT id, token_hash, refresh_token_hash FROM auth.sessions WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND (token_hash_keyed IS NULL) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, token_hash FROM auth.refresh_tokens WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND (token_hash_keyed IS NULL) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, token_hash FROM auth.password_reset_tokens WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND (token_hash_keyed IS NULL) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, token_hash FROM auth.email_verification_tokens WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND (token_hash_keyed IS NULL) ORDER BY id LIMIT NULL;

-- batched backfill runs online only: SELECT id, token FROM auth.access_tokens WHERE id > coalesce(CAST(NULL AS uuid), '00000000-0000-0000-0000-000000000000'::uuid) AND (token_hash IS NULL) ORDER BY id LIMIT NULL;

-- quarantined access tokens: plaintext replaced by digests (online only);

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_sessions_token_hash_keyed ON auth.sessions (token_hash_keyed) WHERE is_active;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_refresh_tokens_token_hash_keyed ON auth.refresh_tokens (token_hash_keyed) WHERE used_at IS NULL AND revoked_at IS NULL;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_password_reset_tokens_token_hash_keyed ON auth.password_reset_tokens (token_hash_keyed);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_email_verification_tokens_token_hash_keyed ON auth.email_verification_tokens (token_hash_keyed);

BEGIN;

COMMIT;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_access_tokens_token_hash ON auth.access_tokens (token_hash);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tokens_user_expires ON auth.access_tokens (user_id, expires_at);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tokens_jkt ON auth.access_tokens (dpop_jkt);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tokens_revoked ON auth.access_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_access_tokens_user_id;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS fk_access_tokens_rotated_from_access_tokens;

ALTER TABLE auth.access_tokens ADD CONSTRAINT fk_access_tokens_rotated_from_access_tokens FOREIGN KEY (rotated_from) REFERENCES auth.access_tokens (id) ON DELETE SET NULL NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens VALIDATE CONSTRAINT fk_access_tokens_rotated_from_access_tokens;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

LOCK TABLE auth.sessions IN SHARE ROW EXCLUSIVE MODE;

-- rows of sessions where token_hash_keyed IS NULL are filled online only;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_keyed_not_null;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_token_hash_keyed_not_null CHECK (token_hash_keyed IS NOT NULL) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_digest_scheme_known;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_digest_scheme_known CHECK (digest_scheme IN (1, 2)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_token_hash_keyed_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_digest_scheme_known;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

LOCK TABLE auth.refresh_tokens IN SHARE ROW EXCLUSIVE MODE;

-- rows of refresh_tokens where token_hash_keyed IS NULL are filled online only;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_keyed_not_null;

ALTER TABLE auth.refresh_tokens ADD CONSTRAINT ck_refresh_tokens_token_hash_keyed_not_null CHECK (token_hash_keyed IS NOT NULL) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_digest_scheme_known;

ALTER TABLE auth.refresh_tokens ADD CONSTRAINT ck_refresh_tokens_digest_scheme_known CHECK (digest_scheme IN (1, 2)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens VALIDATE CONSTRAINT ck_refresh_tokens_token_hash_keyed_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens VALIDATE CONSTRAINT ck_refresh_tokens_digest_scheme_known;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

LOCK TABLE auth.password_reset_tokens IN SHARE ROW EXCLUSIVE MODE;

-- rows of password_reset_tokens where token_hash_keyed IS NULL are filled online only;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_keyed_not_null;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_token_hash_keyed_not_null CHECK (token_hash_keyed IS NOT NULL) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_digest_scheme_known;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_digest_scheme_known CHECK (digest_scheme IN (1, 2)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_token_hash_keyed_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_digest_scheme_known;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

LOCK TABLE auth.email_verification_tokens IN SHARE ROW EXCLUSIVE MODE;

-- rows of email_verification_tokens where token_hash_keyed IS NULL are filled online only;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_keyed_not_null;

ALTER TABLE auth.email_verification_tokens ADD CONSTRAINT ck_email_verification_tokens_token_hash_keyed_not_null CHECK (token_hash_keyed IS NOT NULL) NOT VALID;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_digest_scheme_known;

ALTER TABLE auth.email_verification_tokens ADD CONSTRAINT ck_email_verification_tokens_digest_scheme_known CHECK (digest_scheme IN (1, 2)) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.email_verification_tokens VALIDATE CONSTRAINT ck_email_verification_tokens_token_hash_keyed_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.email_verification_tokens VALIDATE CONSTRAINT ck_email_verification_tokens_digest_scheme_known;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

LOCK TABLE auth.access_tokens IN SHARE ROW EXCLUSIVE MODE;

-- rows of access_tokens where token_hash IS NULL are filled online only;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_hash_not_null;

ALTER TABLE auth.access_tokens ADD CONSTRAINT ck_access_tokens_token_hash_not_null CHECK (token_hash IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens VALIDATE CONSTRAINT ck_access_tokens_token_hash_not_null;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens ALTER COLUMN token_hash SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_hash_not_null;

-- squawk-ignore ban-drop-column -- the plaintext token is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.access_tokens DROP COLUMN IF EXISTS token;

ALTER TABLE auth.sessions ALTER COLUMN token_hash_keyed SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_keyed_not_null;

-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.sessions DROP COLUMN IF EXISTS token_hash;

-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash it replaces; the application release of this phase reads BYTEA digests
ALTER TABLE auth.sessions RENAME COLUMN token_hash_keyed TO token_hash;

-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.sessions DROP COLUMN IF EXISTS refresh_token_hash;

-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash it replaces; the application release of this phase reads BYTEA digests
ALTER TABLE auth.sessions RENAME COLUMN refresh_token_hash_keyed TO refresh_token_hash;

DO $$
        DECLARE
            c record;
        BEGIN
            FOR c IN
                SELECT con.conname, 'sessions_' || att.attname || '_not_null' AS wanted
                  FROM pg_constraint AS con
                  JOIN pg_attribute AS att
                    ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
                 WHERE con.conrelid = 'auth.sessions'::regclass AND con.contype = 'n'
                   AND con.conname <> 'sessions_' || att.attname || '_not_null'
            LOOP
                EXECUTE format('ALTER TABLE auth.sessions RENAME CONSTRAINT %I TO %I',
                               c.conname, c.wanted);
            END LOOP;
        END;
        $$;

ALTER TABLE auth.refresh_tokens ALTER COLUMN token_hash_keyed SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_keyed_not_null;

-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.refresh_tokens DROP COLUMN IF EXISTS token_hash;

-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash it replaces; the application release of this phase reads BYTEA digests
ALTER TABLE auth.refresh_tokens RENAME COLUMN token_hash_keyed TO token_hash;

DO $$
        DECLARE
            c record;
        BEGIN
            FOR c IN
                SELECT con.conname, 'refresh_tokens_' || att.attname || '_not_null' AS wanted
                  FROM pg_constraint AS con
                  JOIN pg_attribute AS att
                    ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
                 WHERE con.conrelid = 'auth.refresh_tokens'::regclass AND con.contype = 'n'
                   AND con.conname <> 'refresh_tokens_' || att.attname || '_not_null'
            LOOP
                EXECUTE format('ALTER TABLE auth.refresh_tokens RENAME CONSTRAINT %I TO %I',
                               c.conname, c.wanted);
            END LOOP;
        END;
        $$;

ALTER TABLE auth.password_reset_tokens ALTER COLUMN token_hash_keyed SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_keyed_not_null;

-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.password_reset_tokens DROP COLUMN IF EXISTS token_hash;

-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash it replaces; the application release of this phase reads BYTEA digests
ALTER TABLE auth.password_reset_tokens RENAME COLUMN token_hash_keyed TO token_hash;

DO $$
        DECLARE
            c record;
        BEGIN
            FOR c IN
                SELECT con.conname, 'password_reset_tokens_' || att.attname || '_not_null' AS wanted
                  FROM pg_constraint AS con
                  JOIN pg_attribute AS att
                    ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
                 WHERE con.conrelid = 'auth.password_reset_tokens'::regclass AND con.contype = 'n'
                   AND con.conname <> 'password_reset_tokens_' || att.attname || '_not_null'
            LOOP
                EXECUTE format('ALTER TABLE auth.password_reset_tokens RENAME CONSTRAINT %I TO %I',
                               c.conname, c.wanted);
            END LOOP;
        END;
        $$;

ALTER TABLE auth.email_verification_tokens ALTER COLUMN token_hash_keyed SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_keyed_not_null;

-- squawk-ignore ban-drop-column -- the unkeyed hash is replaced by its keyed digest, filled above; it cannot be restored (see the docstring)
ALTER TABLE auth.email_verification_tokens DROP COLUMN IF EXISTS token_hash;

-- squawk-ignore renaming-column -- the keyed digest takes the name of the hash it replaces; the application release of this phase reads BYTEA digests
ALTER TABLE auth.email_verification_tokens RENAME COLUMN token_hash_keyed TO token_hash;

DO $$
        DECLARE
            c record;
        BEGIN
            FOR c IN
                SELECT con.conname, 'email_verification_tokens_' || att.attname || '_not_null' AS wanted
                  FROM pg_constraint AS con
                  JOIN pg_attribute AS att
                    ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
                 WHERE con.conrelid = 'auth.email_verification_tokens'::regclass AND con.contype = 'n'
                   AND con.conname <> 'email_verification_tokens_' || att.attname || '_not_null'
            LOOP
                EXECUTE format('ALTER TABLE auth.email_verification_tokens RENAME CONSTRAINT %I TO %I',
                               c.conname, c.wanted);
            END LOOP;
        END;
        $$;

-- squawk-ignore renaming-object -- the index on the keyed digest takes the name of the one it replaces (dropped with the old column)
ALTER INDEX auth.ix_sessions_token_hash_keyed RENAME TO ix_sessions_token_hash;

-- squawk-ignore renaming-object -- the index on the keyed digest takes the name of the one it replaces (dropped with the old column)
ALTER INDEX auth.ix_refresh_tokens_token_hash_keyed RENAME TO ix_refresh_tokens_token_hash;

-- squawk-ignore renaming-object -- the index on the keyed digest takes the name of the one it replaces (dropped with the old column)
ALTER INDEX auth.ix_password_reset_tokens_token_hash_keyed RENAME TO ix_password_reset_tokens_token_hash;

-- squawk-ignore renaming-object -- the index on the keyed digest takes the name of the one it replaces (dropped with the old column)
ALTER INDEX auth.ix_email_verification_tokens_token_hash_keyed RENAME TO ix_email_verification_tokens_token_hash;

UPDATE auth.alembic_version SET version_num='0005_token_session_safety' WHERE auth.alembic_version.version_num = '0004_device_flow_hardening';

COMMIT;

