SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0005_token_session_safety -> 0004_device_flow_hardening

ALTER TABLE auth.access_tokens ADD COLUMN IF NOT EXISTS token TEXT;

UPDATE auth.access_tokens SET token = 'unrestorable-' || gen_random_uuid(), expires_at = least(expires_at, now()) WHERE token IS NULL;

UPDATE auth.quarantine SET row_data = row_data - 'token_hash' || jsonb_build_object('token', 'unrestorable-' || gen_random_uuid()) WHERE source_table = 'access_tokens' AND row_data ? 'token_hash';

ALTER TABLE auth.sessions RENAME COLUMN token_hash TO token_hash_keyed;

ALTER TABLE auth.sessions ADD COLUMN token_hash TEXT;

ALTER TABLE auth.sessions RENAME COLUMN refresh_token_hash TO refresh_token_hash_keyed;

ALTER TABLE auth.sessions ADD COLUMN refresh_token_hash TEXT;

UPDATE auth.sessions SET token_hash = CASE WHEN token_hash_keyed IS NULL THEN NULL ELSE 'unrestorable-' || gen_random_uuid() END, refresh_token_hash = CASE WHEN refresh_token_hash_keyed IS NULL THEN NULL ELSE 'unrestorable-' || gen_random_uuid() END, is_active = false, revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, 'token digest not restorable (downgrade)');

ALTER TABLE auth.refresh_tokens RENAME COLUMN token_hash TO token_hash_keyed;

ALTER TABLE auth.refresh_tokens ADD COLUMN token_hash TEXT;

UPDATE auth.refresh_tokens SET token_hash = CASE WHEN token_hash_keyed IS NULL THEN NULL ELSE 'unrestorable-' || gen_random_uuid() END, revoked_at = coalesce(revoked_at, now());

ALTER TABLE auth.password_reset_tokens RENAME COLUMN token_hash TO token_hash_keyed;

ALTER TABLE auth.password_reset_tokens ADD COLUMN token_hash TEXT;

UPDATE auth.password_reset_tokens SET token_hash = CASE WHEN token_hash_keyed IS NULL THEN NULL ELSE 'unrestorable-' || gen_random_uuid() END, used_at = coalesce(used_at, now());

ALTER TABLE auth.email_verification_tokens RENAME COLUMN token_hash TO token_hash_keyed;

ALTER TABLE auth.email_verification_tokens ADD COLUMN token_hash TEXT;

UPDATE auth.email_verification_tokens SET token_hash = CASE WHEN token_hash_keyed IS NULL THEN NULL ELSE 'unrestorable-' || gen_random_uuid() END, expires_at = least(expires_at, now());

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_not_null;

ALTER TABLE auth.access_tokens ADD CONSTRAINT ck_access_tokens_token_not_null CHECK (token IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens VALIDATE CONSTRAINT ck_access_tokens_token_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_not_null;

ALTER TABLE auth.sessions ADD CONSTRAINT ck_sessions_token_hash_not_null CHECK (token_hash IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.sessions VALIDATE CONSTRAINT ck_sessions_token_hash_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_not_null;

ALTER TABLE auth.refresh_tokens ADD CONSTRAINT ck_refresh_tokens_token_hash_not_null CHECK (token_hash IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens VALIDATE CONSTRAINT ck_refresh_tokens_token_hash_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_not_null;

ALTER TABLE auth.password_reset_tokens ADD CONSTRAINT ck_password_reset_tokens_token_hash_not_null CHECK (token_hash IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.password_reset_tokens VALIDATE CONSTRAINT ck_password_reset_tokens_token_hash_not_null;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

-- squawk-ignore ban-drop-constraint -- re-run guard: removes what an interrupted run of this revision left half-done; the next statement adds it again
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_not_null;

ALTER TABLE auth.email_verification_tokens ADD CONSTRAINT ck_email_verification_tokens_token_hash_not_null CHECK (token_hash IS NOT NULL) NOT VALID;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.email_verification_tokens VALIDATE CONSTRAINT ck_email_verification_tokens_token_hash_not_null;

COMMIT;

BEGIN;

COMMIT;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_access_tokens_token ON auth.access_tokens (token);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_access_tokens_user_id ON auth.access_tokens (user_id);

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.uq_access_tokens_token_hash;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_tokens_user_expires;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_tokens_jkt;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_tokens_revoked;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_sessions_token_hash;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_refresh_tokens_token_hash;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_password_reset_tokens_token_hash;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_email_verification_tokens_token_hash;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_sessions_token_hash ON auth.sessions (token_hash) WHERE is_active;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_refresh_tokens_token_hash ON auth.refresh_tokens (token_hash) WHERE used_at IS NULL AND revoked_at IS NULL;

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_password_reset_tokens_token_hash ON auth.password_reset_tokens (token_hash);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_email_verification_tokens_token_hash ON auth.email_verification_tokens (token_hash);

BEGIN;

ALTER TABLE auth.access_tokens ALTER COLUMN token SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS ck_access_tokens_token_not_null;

ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS fk_access_tokens_rotated_from_access_tokens;

ALTER TABLE auth.access_tokens DROP COLUMN token_hash, DROP COLUMN dpop_jkt, DROP COLUMN rotated_from, DROP COLUMN revoked_at;

ALTER TABLE auth.sessions DROP COLUMN dpop_jkt, DROP COLUMN last_rotated_at;

ALTER TABLE auth.refresh_tokens DROP COLUMN dpop_jkt;

ALTER TABLE auth.sessions ALTER COLUMN token_hash SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.sessions DROP CONSTRAINT IF EXISTS ck_sessions_token_hash_not_null;

ALTER TABLE auth.sessions DROP CONSTRAINT ck_sessions_digest_scheme_known;

ALTER TABLE auth.sessions DROP COLUMN token_hash_keyed, DROP COLUMN refresh_token_hash_keyed, DROP COLUMN digest_scheme;

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

ALTER TABLE auth.refresh_tokens ALTER COLUMN token_hash SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS ck_refresh_tokens_token_hash_not_null;

ALTER TABLE auth.refresh_tokens DROP CONSTRAINT ck_refresh_tokens_digest_scheme_known;

ALTER TABLE auth.refresh_tokens DROP COLUMN token_hash_keyed, DROP COLUMN digest_scheme;

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

ALTER TABLE auth.password_reset_tokens ALTER COLUMN token_hash SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT IF EXISTS ck_password_reset_tokens_token_hash_not_null;

ALTER TABLE auth.password_reset_tokens DROP CONSTRAINT ck_password_reset_tokens_digest_scheme_known;

ALTER TABLE auth.password_reset_tokens DROP COLUMN token_hash_keyed, DROP COLUMN digest_scheme;

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

ALTER TABLE auth.email_verification_tokens ALTER COLUMN token_hash SET NOT NULL;

-- squawk-ignore ban-drop-constraint -- the NOT NULL constraint just set guarantees what this temporary check did
ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT IF EXISTS ck_email_verification_tokens_token_hash_not_null;

ALTER TABLE auth.email_verification_tokens DROP CONSTRAINT ck_email_verification_tokens_digest_scheme_known;

ALTER TABLE auth.email_verification_tokens DROP COLUMN token_hash_keyed, DROP COLUMN digest_scheme;

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

UPDATE auth.alembic_version SET version_num='0004_device_flow_hardening' WHERE auth.alembic_version.version_num = '0005_token_session_safety';

COMMIT;

