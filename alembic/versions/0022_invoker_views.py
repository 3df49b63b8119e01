"""Invoker views: every view of schema ``auth`` runs with the rights of the role that queries it.

Found in issue 12 ("guarantees that hold at head"). Revision 0015 re-pointed
``auth.user_security_status`` at the partitioned ``audit_logs`` with ``CREATE OR REPLACE VIEW``,
which replaces a view's options with the ones the statement names (none): the
``security_invoker`` option 0006 had set was gone. The view then read ``users``, ``sessions`` and
``audit_logs`` with its owner's rights, past row-level security: the application role, acting as
one user, read every user's e-mail address, failed-login count, lock state, second-factor flag
and session count.

What it does:

- ``security_invoker = true`` on every view of schema ``auth``, the list read from ``pg_class``
  when the upgrade runs (a DO block, so ``--sql`` renders the same loop), so a view added by a
  later revision or by a downstream application is not forgotten;
- the privileges a view lost when revision 0007 dropped and re-created ``active_sessions`` are
  given back: a role other than the owner that may read every table a view reads, but has no
  privilege on the view, gets what ``auth.grant_app_role`` gives on views. With invoker rights,
  a view shows such a role nothing its tables' policies hide.

What was checked, across the chain, for objects re-created without what they had: docs page
``docs/phases/0022-invoker-views.md`` (a catalog comparison before and after every revision from
0006 on, with an application and a service role granted).

Downgrade: ``user_security_status`` gets 0021's options back (owner rights: the leak described
above comes back with it); ``active_sessions`` keeps ``security_invoker``, which it had at 0021.
The privileges given back stay.
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
