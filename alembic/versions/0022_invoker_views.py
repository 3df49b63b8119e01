"""Invoker views: every view of schema ``auth`` runs with the rights of the role that queries it.

Found in issue 12. ``security_invoker = true`` on every view of the schema (the list read from the
catalog when it runs), and the privileges a re-created view lost given back to the roles that read
its tables.

Downgrade: ``user_security_status`` gets owner rights back (and with them the leak this revision
closes); ``active_sessions`` keeps ``security_invoker``; the privileges given back stay.

See docs/phases/0022-invoker-views.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022_invoker_views"
down_revision: str | Sequence[str] | None = "0021_foreign_key_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The view that had owner rights at 0021 (0015 re-created it without its option).
LOST_ITS_OPTION = "user_security_status"

INVOKER_RIGHTS = """
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind = 'v'
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER VIEW auth.%I SET (security_invoker = true)', v.relname);
    END LOOP;
END;
$$"""

# The privileges auth.grant_app_role gives on a view, for each non-owner role that can read every
# table the view reads but holds nothing on the view itself (0007 re-created active_sessions).
VIEW_GRANTS = """
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT v.relname AS view, acl.grantee::regrole::text AS grantee
          FROM pg_class AS v
          JOIN pg_class AS users ON users.oid = 'auth.users'::regclass
          CROSS JOIN LATERAL (SELECT DISTINCT (aclexplode(t.relacl)).grantee
                                FROM pg_class AS t
                               WHERE t.relnamespace = 'auth'::regnamespace
                                 AND t.relkind IN ('r', 'p')) AS acl
         WHERE v.relnamespace = 'auth'::regnamespace AND v.relkind = 'v'
           AND acl.grantee NOT IN (0, users.relowner)
           AND NOT EXISTS (SELECT 1 FROM aclexplode(v.relacl) AS held
                            WHERE held.grantee = acl.grantee)
           AND NOT EXISTS (
               SELECT 1 FROM pg_depend AS d
                 JOIN pg_rewrite AS r ON r.oid = d.objid
                WHERE r.ev_class = v.oid AND d.refobjid <> v.oid
                  AND d.refclassid = 'pg_class'::regclass
                  AND NOT has_table_privilege(acl.grantee, d.refobjid, 'SELECT'))
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.%I TO %s', g.view, g.grantee);
    END LOOP;
END;
$$"""


def upgrade() -> None:
    op.execute(INVOKER_RIGHTS)
    op.execute(VIEW_GRANTS)


def downgrade() -> None:
    op.execute(f"ALTER VIEW auth.{LOST_ITS_OPTION} RESET (security_invoker)")
