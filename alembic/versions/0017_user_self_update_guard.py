"""Self-update guard: a user acting as themselves cannot change their own privileges or lockout.

Found in review of 0006 (row-level security): the policy ``users_self`` lets the application
role, acting as a user (``auth.uid()``), update that user's own row -- every column of it,
``role`` and ``is_master_admin`` included. One mass-assignment bug in an application ("update my
profile" passing every field through) would then let anyone make themselves an admin, or clear
their own lockout. The policies cannot compare old and new values, so a trigger does:

``users_guard_self_update`` (BEFORE UPDATE on ``auth.users``, function
``auth.guard_user_self_update()``) refuses, with SQLSTATE ``42501`` (insufficient privilege), an
UPDATE that changes ``role``, ``is_master_admin``, ``email_verified``, ``email_verified_at``,
``failed_login_attempts`` or ``account_locked_until`` of the row whose id is ``auth.uid()``. Those
columns change on the service path (``authmodels.rls.service_role``, where no user is set, or for
another user's row): role changes through ``authmodels.services.admin.change_role``, lockout
through ``authmodels.services.passwords``, verification through the verification flow. The owner
and migrations are unaffected (they set no user).

Downgrade: the trigger and its function are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017_user_self_update_guard"
down_revision: str | Sequence[str] | None = "0016_retention_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED = (
    "role",
    "is_master_admin",
    "email_verified",
    "email_verified_at",
    "failed_login_attempts",
    "account_locked_until",
)

FUNCTION = f"""
CREATE OR REPLACE FUNCTION auth.guard_user_self_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.id IS NOT DISTINCT FROM auth.uid() AND (
        {" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in GUARDED)}
    ) THEN
        RAISE EXCEPTION 'A user cannot change their own role, verification or lockout state'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s tried to change one of: {", ".join(GUARDED)}.', OLD.id),
                  HINT = 'Make this change on the service path (authmodels.rls.service_role).';
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(
        "CREATE OR REPLACE TRIGGER users_guard_self_update BEFORE UPDATE ON auth.users "
        "FOR EACH ROW EXECUTE FUNCTION auth.guard_user_self_update()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_guard_self_update ON auth.users")
    op.execute("DROP FUNCTION IF EXISTS auth.guard_user_self_update()")
