SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0005_token_session_safety -> 0006_row_level_security

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('authmodels.user_id', true), '')::uuid
$$;

COMMENT ON FUNCTION auth.uid() IS 'The current user: the transaction-local setting authmodels.user_id (set_config(''authmodels.user_id'', id, true)); NULL when unset.';

CREATE OR REPLACE FUNCTION auth.is_conversation_member(conversation uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM auth.conversation_participants AS p
         WHERE p.conversation_id = conversation AND p.user_id = auth.uid()
    )
$$;

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
        EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR ALL TO %I '
                       'USING (current_user = %L) WITH CHECK (current_user = %L)',
                       policy, t, role_name, role_name, role_name);
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION auth.revoke_service_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relrowsecurity
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON auth.%I', 'service_' || role_name, t);
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION auth.grant_app_role(text) FROM PUBLIC;

REVOKE ALL ON FUNCTION auth.grant_service_role(text) FROM PUBLIC;

REVOKE ALL ON FUNCTION auth.revoke_service_role(text) FROM PUBLIC;

ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.user_profiles ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.sessions ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.refresh_tokens ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.password_reset_tokens ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.email_verification_tokens ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.webauthn_credentials ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.device_flows ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.access_tokens ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.audit_logs ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.conversations ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.conversation_participants ENABLE ROW LEVEL SECURITY;

ALTER TABLE auth.messages ENABLE ROW LEVEL SECURITY;

ALTER VIEW auth.active_sessions SET (security_invoker = true);

ALTER VIEW auth.user_security_status SET (security_invoker = true);

DROP POLICY IF EXISTS users_self ON auth.users;

CREATE POLICY users_self ON auth.users AS PERMISSIVE FOR ALL USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));

DROP POLICY IF EXISTS user_profiles_owner ON auth.user_profiles;

CREATE POLICY user_profiles_owner ON auth.user_profiles AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS sessions_owner ON auth.sessions;

CREATE POLICY sessions_owner ON auth.sessions AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS refresh_tokens_owner ON auth.refresh_tokens;

CREATE POLICY refresh_tokens_owner ON auth.refresh_tokens AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS password_reset_tokens_owner ON auth.password_reset_tokens;

CREATE POLICY password_reset_tokens_owner ON auth.password_reset_tokens AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS email_verification_tokens_owner ON auth.email_verification_tokens;

CREATE POLICY email_verification_tokens_owner ON auth.email_verification_tokens AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS webauthn_credentials_owner ON auth.webauthn_credentials;

CREATE POLICY webauthn_credentials_owner ON auth.webauthn_credentials AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS device_flows_owner ON auth.device_flows;

CREATE POLICY device_flows_owner ON auth.device_flows AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS access_tokens_owner ON auth.access_tokens;

CREATE POLICY access_tokens_owner ON auth.access_tokens AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS audit_logs_owner_read ON auth.audit_logs;

CREATE POLICY audit_logs_owner_read ON auth.audit_logs AS PERMISSIVE FOR SELECT USING (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS audit_logs_owner_insert ON auth.audit_logs;

CREATE POLICY audit_logs_owner_insert ON auth.audit_logs AS PERMISSIVE FOR INSERT WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS conversations_member_read ON auth.conversations;

CREATE POLICY conversations_member_read ON auth.conversations AS PERMISSIVE FOR SELECT USING (created_by = (SELECT auth.uid()) OR auth.is_conversation_member(id));

DROP POLICY IF EXISTS conversations_creator_insert ON auth.conversations;

CREATE POLICY conversations_creator_insert ON auth.conversations AS PERMISSIVE FOR INSERT WITH CHECK (created_by = (SELECT auth.uid()));

DROP POLICY IF EXISTS conversations_creator_update ON auth.conversations;

CREATE POLICY conversations_creator_update ON auth.conversations AS PERMISSIVE FOR UPDATE USING (created_by = (SELECT auth.uid())) WITH CHECK (created_by = (SELECT auth.uid()));

DROP POLICY IF EXISTS conversations_creator_delete ON auth.conversations;

CREATE POLICY conversations_creator_delete ON auth.conversations AS PERMISSIVE FOR DELETE USING (created_by = (SELECT auth.uid()));

DROP POLICY IF EXISTS conversation_participants_member_read ON auth.conversation_participants;

CREATE POLICY conversation_participants_member_read ON auth.conversation_participants AS PERMISSIVE FOR SELECT USING (auth.is_conversation_member(conversation_id));

DROP POLICY IF EXISTS conversation_participants_creator_insert ON auth.conversation_participants;

CREATE POLICY conversation_participants_creator_insert ON auth.conversation_participants AS PERMISSIVE FOR INSERT WITH CHECK (EXISTS (SELECT 1 FROM auth.conversations AS c WHERE c.id = conversation_id AND c.created_by = (SELECT auth.uid())));

DROP POLICY IF EXISTS conversation_participants_leave_or_remove ON auth.conversation_participants;

CREATE POLICY conversation_participants_leave_or_remove ON auth.conversation_participants AS PERMISSIVE FOR DELETE USING (user_id = (SELECT auth.uid()) OR EXISTS (SELECT 1 FROM auth.conversations AS c WHERE c.id = conversation_id AND c.created_by = (SELECT auth.uid())));

DROP POLICY IF EXISTS messages_member_read ON auth.messages;

CREATE POLICY messages_member_read ON auth.messages AS PERMISSIVE FOR SELECT USING (auth.is_conversation_member(conversation_id));

DROP POLICY IF EXISTS messages_member_post ON auth.messages;

CREATE POLICY messages_member_post ON auth.messages AS PERMISSIVE FOR INSERT WITH CHECK (sender_id = (SELECT auth.uid()) AND auth.is_conversation_member(conversation_id));

DROP POLICY IF EXISTS messages_sender_update ON auth.messages;

CREATE POLICY messages_sender_update ON auth.messages AS PERMISSIVE FOR UPDATE USING (sender_id = (SELECT auth.uid())) WITH CHECK (sender_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS messages_sender_delete ON auth.messages;

CREATE POLICY messages_sender_delete ON auth.messages AS PERMISSIVE FOR DELETE USING (sender_id = (SELECT auth.uid()));

UPDATE auth.alembic_version SET version_num='0006_row_level_security' WHERE auth.alembic_version.version_num = '0005_token_session_safety';

COMMIT;

