SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0018_set_based_session_cascade -> 0017_user_self_update_guard

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens ADD CONSTRAINT fk_refresh_tokens_session_id_sessions FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE CASCADE NOT VALID;

ALTER TABLE auth.access_tokens ADD CONSTRAINT fk_access_tokens_session_id_sessions FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE CASCADE NOT VALID;

ALTER TABLE auth.step_up_tokens ADD CONSTRAINT fk_step_up_tokens_session_id_sessions FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE CASCADE NOT VALID;

ALTER TABLE auth.session_audits ADD CONSTRAINT fk_session_audits_session_id_sessions FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE SET NULL NOT VALID;

DROP TRIGGER IF EXISTS sessions_cascade_delete ON auth.sessions;

DROP TRIGGER IF EXISTS sessions_cascade_truncate ON auth.sessions;

DROP TRIGGER IF EXISTS sessions_id_immutable ON auth.sessions;

DROP TRIGGER IF EXISTS refresh_tokens_session_reference ON auth.refresh_tokens;

DROP TRIGGER IF EXISTS access_tokens_session_reference ON auth.access_tokens;

DROP TRIGGER IF EXISTS step_up_tokens_session_reference ON auth.step_up_tokens;

DROP FUNCTION IF EXISTS auth.sessions_cascade_delete();

DROP FUNCTION IF EXISTS auth.sessions_cascade_truncate();

DROP FUNCTION IF EXISTS auth.check_session_reference();

DROP FUNCTION IF EXISTS auth.sessions_id_immutable();

COMMIT;

BEGIN;

COMMIT;

BEGIN;

WITH moved AS (DELETE FROM auth.refresh_tokens AS t WHERE t.session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.sessions AS s WHERE s.id = t.session_id) RETURNING to_jsonb(t) AS row_data, 'its session no longer exists' AS reason) INSERT INTO auth.quarantine (source_table, reason, row_data, revision) SELECT 'refresh_tokens', moved.reason, moved.row_data, '0018_set_based_session_cascade' FROM moved;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

WITH moved AS (DELETE FROM auth.access_tokens AS t WHERE t.session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.sessions AS s WHERE s.id = t.session_id) RETURNING to_jsonb(t) AS row_data, 'its session no longer exists' AS reason) INSERT INTO auth.quarantine (source_table, reason, row_data, revision) SELECT 'access_tokens', moved.reason, moved.row_data, '0018_set_based_session_cascade' FROM moved;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

WITH moved AS (DELETE FROM auth.step_up_tokens AS t WHERE t.session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.sessions AS s WHERE s.id = t.session_id) RETURNING to_jsonb(t) AS row_data, 'its session no longer exists' AS reason) INSERT INTO auth.quarantine (source_table, reason, row_data, revision) SELECT 'step_up_tokens', moved.reason, moved.row_data, '0018_set_based_session_cascade' FROM moved;

COMMIT;

BEGIN;

-- batched backfill runs online only: SELECT id FROM auth.session_audits WHERE (CAST(NULL AS uuid) IS NULL OR id > NULL) ORDER BY id LIMIT NULL;

COMMIT;

BEGIN;

ALTER TABLE auth.refresh_tokens VALIDATE CONSTRAINT fk_refresh_tokens_session_id_sessions;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.access_tokens VALIDATE CONSTRAINT fk_access_tokens_session_id_sessions;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.step_up_tokens VALIDATE CONSTRAINT fk_step_up_tokens_session_id_sessions;

COMMIT;

BEGIN;

COMMIT;

BEGIN;

ALTER TABLE auth.session_audits VALIDATE CONSTRAINT fk_session_audits_session_id_sessions;

COMMIT;

BEGIN;

UPDATE auth.alembic_version SET version_num='0017_user_self_update_guard' WHERE auth.alembic_version.version_num = '0018_set_based_session_cascade';

COMMIT;

