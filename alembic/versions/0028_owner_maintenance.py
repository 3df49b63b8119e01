"""Owner maintenance, user logs: the owner's maintenance is closed to the application, and a
user's own requests may append their security events and password history.

Found in issue 12. ``EXECUTE`` on ``auth.purge_expired_data``, ``archive_audit_logs`` and
``designate_master_admin`` is revoked from ``PUBLIC``; ``security_events`` and
``password_history`` get an ``INSERT`` policy for the user's own rows.

Downgrade: ``EXECUTE`` is granted to ``PUBLIC`` again and the two policies are dropped. Nothing is
lost.

See docs/phases/0028-owner-maintenance.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0028_owner_maintenance"
down_revision: str | Sequence[str] | None = "0027_default_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: ``SECURITY DEFINER`` maintenance functions that only the owner may run.
OWNER_ONLY = (
    "auth.purge_expired_data(integer)",
    "auth.archive_audit_logs(interval, integer)",
    "auth.designate_master_admin(text)",
)
#: Tables a user's own requests may append their rows to.
USER_APPENDS = ("security_events", "password_history")


def upgrade() -> None:
    for function in OWNER_ONLY:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    for table in USER_APPENDS:
        op.execute(
            f"CREATE POLICY {table}_owner_insert ON auth.{table} AS PERMISSIVE FOR INSERT "
            "WITH CHECK (user_id = (SELECT auth.uid()))"
        )


def downgrade() -> None:
    for table in USER_APPENDS:
        op.execute(f"DROP POLICY IF EXISTS {table}_owner_insert ON auth.{table}")
    for function in OWNER_ONLY:
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
