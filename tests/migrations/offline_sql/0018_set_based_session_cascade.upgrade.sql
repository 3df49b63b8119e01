SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0017_user_self_update_guard -> 0018_set_based_session_cascade

CREATE OR REPLACE FUNCTION auth.sessions_cascade_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM auth.refresh_tokens WHERE session_id = ANY(ARRAY(SELECT id FROM old_sessions));
    DELETE FROM auth.access_tokens WHERE session_id = ANY(ARRAY(SELECT id FROM old_sessions));
    DELETE FROM auth.step_up_tokens WHERE session_id = ANY(ARRAY(SELECT id FROM old_sessions));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION auth.sessions_cascade_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM auth.refresh_tokens WHERE session_id IS NOT NULL;
    DELETE FROM auth.access_tokens WHERE session_id IS NOT NULL;
    DELETE FROM auth.step_up_tokens WHERE session_id IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION auth.check_session_reference() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM auth.sessions WHERE id = NEW.session_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates the reference to auth.sessions',
                TG_TABLE_NAME
            USING ERRCODE = '23503',
                  DETAIL = format('Key (session_id)=(%s) is not present in table "sessions".',
                                  NEW.session_id),
                  HINT = 'Create the session first, in the same or an earlier transaction.',
                  SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'session_id';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION auth.sessions_id_immutable() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM auth.refresh_tokens WHERE session_id = OLD.id) OR EXISTS (SELECT 1 FROM auth.access_tokens WHERE session_id = OLD.id) OR EXISTS (SELECT 1 FROM auth.step_up_tokens WHERE session_id = OLD.id) THEN
        RAISE EXCEPTION 'A session''s id cannot change while tokens refer to it'
            USING ERRCODE = '23503',
                  DETAIL = format('Key (id)=(%s) is still referenced.', OLD.id);
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER sessions_cascade_delete AFTER DELETE ON auth.sessions REFERENCING OLD TABLE AS old_sessions FOR EACH STATEMENT EXECUTE FUNCTION auth.sessions_cascade_delete();

CREATE OR REPLACE TRIGGER sessions_cascade_truncate AFTER TRUNCATE ON auth.sessions FOR EACH STATEMENT EXECUTE FUNCTION auth.sessions_cascade_truncate();

CREATE OR REPLACE TRIGGER sessions_id_immutable BEFORE UPDATE OF id ON auth.sessions FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION auth.sessions_id_immutable();

CREATE OR REPLACE TRIGGER refresh_tokens_session_reference AFTER INSERT OR UPDATE OF session_id ON auth.refresh_tokens FOR EACH ROW WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION auth.check_session_reference();

CREATE OR REPLACE TRIGGER access_tokens_session_reference AFTER INSERT OR UPDATE OF session_id ON auth.access_tokens FOR EACH ROW WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION auth.check_session_reference();

CREATE OR REPLACE TRIGGER step_up_tokens_session_reference AFTER INSERT OR UPDATE OF session_id ON auth.step_up_tokens FOR EACH ROW WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION auth.check_session_reference();

-- squawk-ignore ban-drop-constraint -- replaced, in this same transaction, by the triggers above (set-based cascade, reference check)
ALTER TABLE auth.refresh_tokens DROP CONSTRAINT IF EXISTS fk_refresh_tokens_session_id_sessions;

-- squawk-ignore ban-drop-constraint -- replaced, in this same transaction, by the triggers above (set-based cascade, reference check)
ALTER TABLE auth.access_tokens DROP CONSTRAINT IF EXISTS fk_access_tokens_session_id_sessions;

-- squawk-ignore ban-drop-constraint -- replaced, in this same transaction, by the triggers above (set-based cascade, reference check)
ALTER TABLE auth.step_up_tokens DROP CONSTRAINT IF EXISTS fk_step_up_tokens_session_id_sessions;

-- squawk-ignore ban-drop-constraint -- replaced, in this same transaction, by the triggers above (set-based cascade, reference check)
ALTER TABLE auth.session_audits DROP CONSTRAINT IF EXISTS fk_session_audits_session_id_sessions;

UPDATE auth.alembic_version SET version_num='0018_set_based_session_cascade' WHERE auth.alembic_version.version_num = '0017_user_self_update_guard';

COMMIT;

