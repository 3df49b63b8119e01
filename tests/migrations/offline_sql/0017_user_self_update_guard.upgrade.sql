SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0016_retention_policies -> 0017_user_self_update_guard

CREATE OR REPLACE FUNCTION auth.guard_user_self_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.id IS NOT DISTINCT FROM auth.uid() AND (
        NEW.role IS DISTINCT FROM OLD.role OR NEW.is_master_admin IS DISTINCT FROM OLD.is_master_admin OR NEW.email_verified IS DISTINCT FROM OLD.email_verified OR NEW.email_verified_at IS DISTINCT FROM OLD.email_verified_at OR NEW.failed_login_attempts IS DISTINCT FROM OLD.failed_login_attempts OR NEW.account_locked_until IS DISTINCT FROM OLD.account_locked_until
    ) THEN
        RAISE EXCEPTION 'A user cannot change their own role, verification or lockout state'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s tried to change one of: role, is_master_admin, email_verified, email_verified_at, failed_login_attempts, account_locked_until.', OLD.id),
                  HINT = 'Make this change on the service path (authmodels.rls.service_role).';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER users_guard_self_update BEFORE UPDATE ON auth.users FOR EACH ROW EXECUTE FUNCTION auth.guard_user_self_update();

UPDATE auth.alembic_version SET version_num='0017_user_self_update_guard' WHERE auth.alembic_version.version_num = '0016_retention_policies';

COMMIT;

