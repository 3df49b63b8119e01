"""Row-level security: every user-owned table shows a user their own rows, and nothing else.

Seed 000, phase 1.4 week 5. ``auth.uid()`` (the transaction's ``authmodels.user_id``), row-level
security enabled with owner policies on the user-owned tables (``audit_logs`` append-only,
conversations by membership), ``security_invoker`` views, and ``auth.grant_app_role`` /
``grant_service_role`` / ``revoke_service_role`` for the application's roles.

Downgrade: the policies, the functions and row-level security go; privileges granted to
application roles stay. Nothing is lost.

See docs/phases/0006-row-level-security.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_row_level_security"
down_revision: str | Sequence[str] | None = "0005_token_session_safety"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UID = "(SELECT auth.uid())"

#: Views over RLS tables: they must run with the querying role's rights (``security_invoker``),
#: or they would show every row with their owner's.
VIEWS = ["active_sessions", "user_security_status"]

#: Tables whose rows belong to ``user_id``.
OWNED_BY_USER_ID = [
    "user_profiles",
    "sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "webauthn_credentials",
    "device_flows",
    "access_tokens",
]
#: Every table with row-level security, in the order policies are created.
RLS_TABLES = [
    "users",
    *OWNED_BY_USER_ID,
    "audit_logs",
    "conversations",
    "conversation_participants",
    "messages",
]

#: (table, policy, command, USING, WITH CHECK)
POLICIES: list[tuple[str, str, str, str | None, str | None]] = [
    ("users", "users_self", "ALL", f"id = {UID}", f"id = {UID}"),
    *((t, f"{t}_owner", "ALL", f"user_id = {UID}", f"user_id = {UID}") for t in OWNED_BY_USER_ID),
    ("audit_logs", "audit_logs_owner_read", "SELECT", f"user_id = {UID}", None),
    ("audit_logs", "audit_logs_owner_insert", "INSERT", None, f"user_id = {UID}"),
    (
        "conversations",
        "conversations_member_read",
        "SELECT",
        f"created_by = {UID} OR auth.is_conversation_member(id)",
        None,
    ),
    ("conversations", "conversations_creator_insert", "INSERT", None, f"created_by = {UID}"),
    (
        "conversations",
        "conversations_creator_update",
        "UPDATE",
        f"created_by = {UID}",
        f"created_by = {UID}",
    ),
    ("conversations", "conversations_creator_delete", "DELETE", f"created_by = {UID}", None),
    (
        "conversation_participants",
        "conversation_participants_member_read",
        "SELECT",
        "auth.is_conversation_member(conversation_id)",
        None,
    ),
    (
        "conversation_participants",
        "conversation_participants_creator_insert",
        "INSERT",
        None,
        "EXISTS (SELECT 1 FROM auth.conversations AS c "
        f"WHERE c.id = conversation_id AND c.created_by = {UID})",
    ),
    (
        "conversation_participants",
        "conversation_participants_leave_or_remove",
        "DELETE",
        f"user_id = {UID} OR EXISTS (SELECT 1 FROM auth.conversations AS c "
        f"WHERE c.id = conversation_id AND c.created_by = {UID})",
        None,
    ),
    (
        "messages",
        "messages_member_read",
        "SELECT",
        "auth.is_conversation_member(conversation_id)",
        None,
    ),
    (
        "messages",
        "messages_member_post",
        "INSERT",
        None,
        f"sender_id = {UID} AND auth.is_conversation_member(conversation_id)",
    ),
    (
        "messages",
        "messages_sender_update",
        "UPDATE",
        f"sender_id = {UID}",
        f"sender_id = {UID}",
    ),
    ("messages", "messages_sender_delete", "DELETE", f"sender_id = {UID}", None),
]

FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('authmodels.user_id', true), '')::uuid
$$""",
    "COMMENT ON FUNCTION auth.uid() IS 'The current user: the transaction-local setting "
    "authmodels.user_id (set_config(''authmodels.user_id'', id, true)); NULL when unset.'",
    """
CREATE OR REPLACE FUNCTION auth.is_conversation_member(conversation uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM auth.conversation_participants AS p
         WHERE p.conversation_id = conversation AND p.user_id = auth.uid()
    )
$$""",
    # The application role: privileges only; row visibility is the policies' business.
    """
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
$$""",
    """
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
$$""",
    """
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
$$""",
    # Granting is the owner's decision: nobody else may call these.
    "REVOKE ALL ON FUNCTION auth.grant_app_role(text) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION auth.grant_service_role(text) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION auth.revoke_service_role(text) FROM PUBLIC",
]


def _policy(table: str, name: str, command: str, using: str | None, check: str | None) -> str:
    clauses = "".join(
        [f" USING ({using})" if using else "", f" WITH CHECK ({check})" if check else ""]
    )
    return f"CREATE POLICY {name} ON auth.{table} AS PERMISSIVE FOR {command}{clauses}"


def upgrade() -> None:
    for statement in FUNCTIONS:
        op.execute(statement)
    for table in RLS_TABLES:
        op.execute(f"ALTER TABLE auth.{table} ENABLE ROW LEVEL SECURITY")
    for view in VIEWS:
        op.execute(f"ALTER VIEW auth.{view} SET (security_invoker = true)")
    for table, name, command, using, check in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON auth.{table}")
        op.execute(_policy(table, name, command, using, check))


def downgrade() -> None:
    tables = ", ".join(f"'{t}'" for t in RLS_TABLES)
    op.execute(f"""
        DO $$
        DECLARE
            p record;
        BEGIN
            FOR p IN SELECT policyname, tablename FROM pg_policies
                      WHERE schemaname = 'auth' AND tablename IN ({tables})
            LOOP
                EXECUTE format('DROP POLICY %I ON auth.%I', p.policyname, p.tablename);
            END LOOP;
        END;
        $$""")
    for table in RLS_TABLES:
        op.execute(f"ALTER TABLE auth.{table} DISABLE ROW LEVEL SECURITY")
    for view in VIEWS:
        op.execute(f"ALTER VIEW auth.{view} RESET (security_invoker)")
    for function in (
        "revoke_service_role(text)",
        "grant_service_role(text)",
        "grant_app_role(text)",
        "is_conversation_member(uuid)",
        "uid()",
    ):
        op.execute(f"DROP FUNCTION auth.{function}")
