SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0018_set_based_session_cascade -> 0019_owner_only_writes

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
           AND NOT c.relispartition AND c.relname NOT IN ('alembic_version', 'quarantine', 'audit_logs', 'retention_policies', 'audit_logs_archive')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.%I TO %I', t, role_name);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT ON auth.audit_logs TO %I', role_name);
    EXECUTE format('GRANT SELECT ON auth.retention_policies TO %I', role_name);
    EXECUTE format('GRANT SELECT ON auth.audit_logs_archive TO %I', role_name);
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
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relrowsecurity AND NOT c.relispartition
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON auth.%I', policy, t);
        -- current_user, not membership: a role that is merely a member of role_name (the
        -- application's login role, so that it can SET ROLE) stays bound by the user policies.
        EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR %s TO %I '
                       'USING (current_user = %L)'
                       || CASE WHEN CASE WHEN t IN ('retention_policies', 'audit_logs_archive') THEN 'SELECT' ELSE 'ALL' END = 'SELECT' THEN ''
                               ELSE ' WITH CHECK (current_user = %L)' END,
                       policy, t, CASE WHEN t IN ('retention_policies', 'audit_logs_archive') THEN 'SELECT' ELSE 'ALL' END, role_name, role_name, role_name);
    END LOOP;
END;
$$;

DO $$
DECLARE
    owner oid := (SELECT relowner FROM pg_class WHERE oid = 'auth.users'::regclass);
    g record;
    p record;
BEGIN
    -- every non-owner role holding a privilege on a read-only table or on a partition
    FOR g IN
        SELECT DISTINCT c.relname, c.relispartition, acl.grantee::regrole::text AS grantee
          FROM pg_class AS c, aclexplode(c.relacl) AS acl
         WHERE c.relnamespace = 'auth'::regnamespace
           AND (c.relname IN ('retention_policies', 'audit_logs_archive') OR c.relispartition)
           AND acl.grantee <> owner AND acl.grantee <> 0
    LOOP
        IF g.relispartition THEN
            EXECUTE format('REVOKE ALL ON auth.%I FROM %s', g.relname, g.grantee);
        ELSE
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON auth.%I FROM %s',
                           g.relname, g.grantee);
        END IF;
    END LOOP;
    -- service policies: read-only on the two tables, none on partitions
    FOR p IN
        SELECT pol.polname, c.relname, c.relispartition, pol.polroles
          FROM pg_policy AS pol JOIN pg_class AS c ON c.oid = pol.polrelid
         WHERE c.relnamespace = 'auth'::regnamespace AND pol.polname LIKE 'service\_%'
           AND (c.relname IN ('retention_policies', 'audit_logs_archive') OR c.relispartition)
    LOOP
        EXECUTE format('DROP POLICY %I ON auth.%I', p.polname, p.relname);
        IF NOT p.relispartition THEN
            EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR SELECT TO %s '
                           'USING (current_user = %L)', p.polname, p.relname,
                           p.polroles[1]::regrole::text, p.polroles[1]::regrole::text);
        END IF;
    END LOOP;
END;
$$;

UPDATE auth.alembic_version SET version_num='0019_owner_only_writes' WHERE auth.alembic_version.version_num = '0018_set_based_session_cascade';

COMMIT;

