SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0011_oauth_encrypted_tokens -> 0010_security_tables

CREATE OR REPLACE TRIGGER trg_oauth_connections_updated_at BEFORE UPDATE ON auth.oauth_connections FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column();

DROP FUNCTION IF EXISTS auth.update_oauth_connections_updated_at();

DROP FUNCTION IF EXISTS auth.count_old_oauth_tokens();

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_oauth_expiring_tokens;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.idx_oauth_last_refresh;

BEGIN;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_access_token_encrypted_envelope;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_refresh_token_encrypted_envelope;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_token_encryption_method_known;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_tokens_encrypted_consistent;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_refresh_status_has_attempt;

-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK
ALTER TABLE auth.oauth_connections DROP CONSTRAINT IF EXISTS ck_oauth_connections_refresh_error_is_a_failure;

-- squawk-ignore ban-drop-column -- this revision's columns; rows with encrypted tokens were refused above unless allow_data_loss was given
ALTER TABLE auth.oauth_connections DROP COLUMN IF EXISTS access_token_encrypted, DROP COLUMN IF EXISTS refresh_token_encrypted, DROP COLUMN IF EXISTS token_encryption_method, DROP COLUMN IF EXISTS tokens_encrypted, DROP COLUMN IF EXISTS last_token_refresh_attempt, DROP COLUMN IF EXISTS last_token_refresh_status, DROP COLUMN IF EXISTS token_refresh_error_message;

DROP TYPE IF EXISTS auth.oauth_refresh_status;

UPDATE auth.alembic_version SET version_num='0010_security_tables' WHERE auth.alembic_version.version_num = '0011_oauth_encrypted_tokens';

COMMIT;

