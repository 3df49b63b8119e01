SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0019_owner_only_writes -> 0018_set_based_session_cascade

CREATE OR REPLACE FUNCTION auth.grant_app_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    t text;
BEGIN
    SELECT rolsuper, rolbypassrls INTO r FROM pg_roles WHERE rolname = role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % does not exist: create it first (CREATE ROLE % LOGIN ...)',
            role_name, role_name;
    END IF;
    IF r.rolsuper OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role % bypasses row-level security (superuser or BYPASSRLS): '
            'connect the application as an ordinary role', role_name;
    END IF;
    IF pg_has_role(role_name, (SELECT relowner FROM pg_class
                                WHERE oid = 'auth.users'::regclass), 'USAGE') THEN
        RAISE EXCEPTION 'role % owns the auth tables (or is a member of their owner), so '
            'row-level security does not apply to it: use another role', role_name;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA auth TO %I', role_name);
    FOR t IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
           AND c.relname NOT IN ('alembic_version', 'quarantine', 'audit_logs')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.%I TO %I', t, role_name);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT ON auth.audit_logs TO %I', role_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA auth TO %I', role_name);
END;
$$;

CREATE OR REPLACE FUNCTION auth.grant_service_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    policy text := 'service_' || role_name;
BEGIN
    PERFORM auth.grant_app_role(role_name);
    FOR t IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relrowsecurity 
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON auth.%I', policy, t);
        -- current_user, not membership: a role that is merely a member of role_name (the
        -- application's login role, so that it can SET ROLE) stays bound by the user policies.
        EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR %s TO %I '
                       'USING (current_user = %L)'
                       || CASE WHEN 'ALL' = 'SELECT' THEN ''
                               ELSE ' WITH CHECK (current_user = %L)' END,
                       policy, t, 'ALL', role_name, role_name, role_name);
    END LOOP;
END;
$$;

UPDATE auth.alembic_version SET version_num='0018_set_based_session_cascade' WHERE auth.alembic_version.version_num = '0019_owner_only_writes';

COMMIT;

