SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0023_email_identity -> 0024_insert_guards

CREATE OR REPLACE FUNCTION auth.guard_user_self_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- the rule: a user creating their own account gets the defaults of these columns
    IF auth.uid() IS NOT NULL AND NEW.id = auth.uid() AND (NEW.role IS DISTINCT FROM 'user' OR NEW.is_master_admin IS DISTINCT FROM false OR NEW.email_verified IS DISTINCT FROM false OR NEW.email_verified_at IS DISTINCT FROM NULL OR NEW.failed_login_attempts IS DISTINCT FROM 0 OR NEW.account_locked_until IS DISTINCT FROM NULL) THEN
        RAISE EXCEPTION 'A user cannot create their own account with a role, verification or '
                        'lockout state'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s inserted their own row with one of role, is_master_admin, email_verified, email_verified_at, failed_login_attempts, account_locked_until '
                                  'not at its default.', NEW.id),
                  HINT = 'Create the account with the defaults, or on the service path '
                         '(authmodels.rls.service_role, no user named).';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER users_guard_self_insert BEFORE INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION auth.guard_user_self_insert();

CREATE OR REPLACE FUNCTION auth.audit_actor_is_current_user() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_uid uuid := auth.uid();
BEGIN
    -- the rule: an entry written as a user has that user as its actor
    IF current_uid IS NOT NULL AND NEW.actor_user_id IS NULL THEN
        NEW.actor_user_id := current_uid;
    END IF;
    IF current_uid IS NOT NULL AND NEW.actor_user_id <> current_uid THEN
        RAISE EXCEPTION 'An entry written as a user cannot name another user as its actor'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s wrote an entry of %s naming %s as its actor.',
                                  current_uid, TG_TABLE_NAME, NEW.actor_user_id),
                  HINT = 'Leave actor_user_id empty, or write the entry on the service path '
                         '(authmodels.rls.service_role, no user named).';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER audit_logs_actor BEFORE INSERT ON auth.audit_logs FOR EACH ROW EXECUTE FUNCTION auth.audit_actor_is_current_user();

CREATE OR REPLACE FUNCTION auth.device_key_event_actor_is_current_user() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_uid uuid := auth.uid();
BEGIN
    -- the rule: an entry written as a user has that user as its actor
    IF current_uid IS NOT NULL AND NEW.actor_user_id <> current_uid THEN
        RAISE EXCEPTION 'An entry written as a user cannot name another user as its actor'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s wrote an entry of %s naming %s as its actor.',
                                  current_uid, TG_TABLE_NAME, NEW.actor_user_id),
                  HINT = 'Leave actor_user_id empty, or write the entry on the service path '
                         '(authmodels.rls.service_role, no user named).';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER device_key_events_actor BEFORE INSERT ON auth.device_key_events FOR EACH ROW EXECUTE FUNCTION auth.device_key_event_actor_is_current_user();

UPDATE auth.alembic_version SET version_num='0024_insert_guards' WHERE auth.alembic_version.version_num = '0023_email_identity';

COMMIT;

