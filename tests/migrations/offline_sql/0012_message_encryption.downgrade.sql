SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0012_message_encryption -> 0011_oauth_encrypted_tokens

COMMENT ON COLUMN auth.messages.encryption_version IS NULL;

COMMENT ON COLUMN auth.messages.content_encrypted IS NULL;

COMMENT ON COLUMN auth.messages.content_nonce IS NULL;

COMMENT ON COLUMN auth.messages.content IS NULL;

DROP FUNCTION IF EXISTS auth.get_message_encryption_stats();

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_messages_encryption_version;

BEGIN;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.messages DROP CONSTRAINT IF EXISTS ck_messages_version_2_is_encrypted;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.messages DROP CONSTRAINT IF EXISTS chk_messages_encryption_version_valid;

UPDATE auth.alembic_version SET version_num='0011_oauth_encrypted_tokens' WHERE auth.alembic_version.version_num = '0012_message_encryption';

COMMIT;

