"""Self-update guard: a user acting as themselves cannot change their own privileges or lockout.

Found in review of 0006. ``users_guard_self_update`` refuses (SQLSTATE ``42501``) an UPDATE of the
role, master-admin flag, verification or lockout columns of the row whose id is ``auth.uid()``;
those change on the service path.

Downgrade: the trigger and its function are dropped. Nothing is lost.

See docs/phases/0017-user-self-update-guard.md.
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
