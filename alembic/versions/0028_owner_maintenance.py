"""Owner maintenance, user logs: the application role may no longer run the owner's maintenance,
and a user's own requests may write their security events and password history.

Found in issue 12 ("guarantees that hold at head"), by running every flow as the application's
login role (``tests/services/test_production_roles.py``) and reading the catalog
(``tests/invariants``):

- ``auth.purge_expired_data(integer)``, ``auth.archive_audit_logs(interval, integer)`` and
  ``auth.designate_master_admin(text)`` are ``SECURITY DEFINER`` (they run as the owner) and were
  executable by ``PUBLIC``: the application role could move the whole live audit trail to the
  archive at once (``archive_audit_logs('0')``), run the purge (its locks included) whenever it
  liked, or designate a master admin. ``EXECUTE`` is revoked from ``PUBLIC``: they are the
  owner's (migrations, ``authmodels purge``, pg_cron jobs scheduled by the owner).
- ``security_events`` and ``password_history`` had no policy letting a user write: a refusal
  recorded while a request runs as its user (a replayed TOTP code, a reused step-up token) and a
  password change made as the user failed with a row-level security error. Each gets an
  ``INSERT`` policy for the user's own rows (``<table>_owner_insert``, ``WITH CHECK (user_id =
  auth.uid())``); reading stays as it was, updating and deleting stay closed.

Locks: ``ACCESS EXCLUSIVE`` on the two tables for ``CREATE POLICY`` (catalog only, no scan).

Downgrade: ``EXECUTE`` is granted to ``PUBLIC`` again and the two policies are dropped. Nothing
is lost. Docs: ``docs/phases/0028-owner-maintenance.md``.
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
