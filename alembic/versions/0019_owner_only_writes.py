"""Owner-only writes: application and service roles can no longer rewrite retention or the audit.

Found in review of 0015 and 0016. ``grant_app_role`` and ``grant_service_role`` give read-only
access to ``retention_policies`` and ``audit_logs_archive`` and nothing on partitions; the roles
granted before lose the write privileges and policies there.

Downgrade: 0006's grant functions come back; the privileges revoked are not granted again (run the
grant functions). Nothing is lost.

See docs/phases/0019-owner-only-writes.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_owner_only_writes"
down_revision: str | Sequence[str] | None = "0018_set_based_session_cascade"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables application and service roles may read but not write.
READ_ONLY = ("retention_policies", "audit_logs_archive")

_ROLE_CHECKS = """
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
    EXECUTE format('GRANT USAGE ON SCHEMA auth TO %I', role_name);"""


def _grant_app_role(*, owner_only_writes: bool) -> str:
    if owner_only_writes:
        read_only = ", ".join(f"'{t}'" for t in READ_ONLY)
        loop_filter = (
            f"AND NOT c.relispartition AND c.relname NOT IN ('alembic_version', 'quarantine', "
            f"'audit_logs', {read_only})"
        )
        extra = "".join(
            f"\n    EXECUTE format('GRANT SELECT ON auth.{t} TO %I', role_name);" for t in READ_ONLY
        )
    else:  # 0006's
        loop_filter = "AND c.relname NOT IN ('alembic_version', 'quarantine', 'audit_logs')"
        extra = ""
    return f"""
CREATE OR REPLACE FUNCTION auth.grant_app_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    t text;
BEGIN{_ROLE_CHECKS}
    FOR t IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
           {loop_filter}
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.%I TO %I', t, role_name);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT ON auth.audit_logs TO %I', role_name);{extra}
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA auth TO %I', role_name);
END;
$$"""


def _grant_service_role(*, owner_only_writes: bool) -> str:
    if owner_only_writes:
        read_only = ", ".join(f"'{t}'" for t in READ_ONLY)
        loop_filter = "AND NOT c.relispartition"
        command = f"CASE WHEN t IN ({read_only}) THEN 'SELECT' ELSE 'ALL' END"
    else:  # 0006's
        loop_filter = ""
        command = "'ALL'"
    return f"""
CREATE OR REPLACE FUNCTION auth.grant_service_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    policy text := 'service_' || role_name;
BEGIN
    PERFORM auth.grant_app_role(role_name);
    FOR t IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relrowsecurity {loop_filter}
    LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON auth.%I', policy, t);
        -- current_user, not membership: a role that is merely a member of role_name (the
        -- application's login role, so that it can SET ROLE) stays bound by the user policies.
        EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR {"%s"} TO %I '
                       'USING (current_user = %L)'
                       || CASE WHEN {command} = 'SELECT' THEN ''
                               ELSE ' WITH CHECK (current_user = %L)' END,
                       policy, t, {command}, role_name, role_name, role_name);
    END LOOP;
END;
$$"""


_APPLY_TO_EXISTING_ROLES = f"""
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
           AND (c.relname IN ({", ".join(f"'{t}'" for t in READ_ONLY)}) OR c.relispartition)
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
         WHERE c.relnamespace = 'auth'::regnamespace AND pol.polname LIKE 'service\\_%'
           AND (c.relname IN ({", ".join(f"'{t}'" for t in READ_ONLY)}) OR c.relispartition)
    LOOP
        EXECUTE format('DROP POLICY %I ON auth.%I', p.polname, p.relname);
        IF NOT p.relispartition THEN
            EXECUTE format('CREATE POLICY %I ON auth.%I AS PERMISSIVE FOR SELECT TO %s '
                           'USING (current_user = %L)', p.polname, p.relname,
                           p.polroles[1]::regrole::text, p.polroles[1]::regrole::text);
        END IF;
    END LOOP;
END;
$$"""


def upgrade() -> None:
    op.execute(_grant_app_role(owner_only_writes=True))
    op.execute(_grant_service_role(owner_only_writes=True))
    op.execute(_APPLY_TO_EXISTING_ROLES)


def downgrade() -> None:
    op.execute(_grant_app_role(owner_only_writes=False))
    op.execute(_grant_service_role(owner_only_writes=False))
