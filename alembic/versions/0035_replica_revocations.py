"""Revocations wait for replicas: a revoked session, access token or API key is never accepted on
a synchronous standby once the revoking transaction has committed.

Found in issue 17. The trigger function ``auth.revocation_waits_for_replicas()`` sets
``synchronous_commit = remote_apply`` for the rest of its transaction; the row triggers
``revocation_waits_for_replicas`` call it when ``auth.sessions``, ``auth.access_tokens`` or
``auth.api_keys`` lose a live row: an ``UPDATE`` that sets ``revoked_at`` (or clears a session's
``is_active``), or a ``DELETE`` of a row still live. Whoever revokes -- a flow, an
administrator's SQL, a cascade -- the commit returns once the standbys listed in
``synchronous_standby_names`` have applied it.

Downgrade: the triggers and the function are dropped; revocations commit as other writes do.
Nothing is lost.

See docs/phases/0035-replica-revocations.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0035_replica_revocations"
down_revision: str | Sequence[str] | None = "0034_account_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables a replica may answer a credential lookup from: the update that revokes a row, and
#: which deleted rows were still live (a deleted expired row was refused already: the purge's
#: batches do not wait).
REVOCABLE = {
    "sessions": (
        "UPDATE OF revoked_at, is_active",
        "(OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) "
        "OR (OLD.is_active AND NOT NEW.is_active)",
        "OLD.revoked_at IS NULL AND OLD.expires_at > now()",
    ),
    "access_tokens": (
        "UPDATE OF revoked_at",
        "OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL",
        "OLD.revoked_at IS NULL AND OLD.expires_at > now()",
    ),
    "api_keys": (
        "UPDATE OF revoked_at",
        "OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL",
        "OLD.revoked_at IS NULL AND (OLD.expires_at IS NULL OR OLD.expires_at > now())",
    ),
}
TRIGGER = "revocation_waits_for_replicas"

# No SET clause (search_path): a function's SET clause ends every transaction-local setting made
# inside it when it returns, set_config(..., true) included. The body names pg_catalog itself.
FUNCTION = """
CREATE OR REPLACE FUNCTION auth.revocation_waits_for_replicas() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- the rule: once a revocation commits, no synchronous standby accepts the credential
    PERFORM pg_catalog.set_config('synchronous_commit', 'remote_apply', true);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(
        "COMMENT ON FUNCTION auth.revocation_waits_for_replicas() IS "
        "'Makes a revoking transaction commit with synchronous_commit = remote_apply (0035)'"
    )
    for table, (update, revoked, live) in REVOCABLE.items():
        # CREATE TRIGGER takes SHARE ROW EXCLUSIVE for a catalog change (lock_timeout applies)
        op.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER {update} ON auth.{table} FOR EACH ROW "
            f"WHEN ({revoked}) EXECUTE FUNCTION auth.revocation_waits_for_replicas()"
        )
        op.execute(
            f"CREATE TRIGGER {TRIGGER}_on_delete AFTER DELETE ON auth.{table} FOR EACH ROW "
            f"WHEN ({live}) EXECUTE FUNCTION auth.revocation_waits_for_replicas()"
        )


def downgrade() -> None:
    for table in REVOCABLE:
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}_on_delete ON auth.{table}")
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON auth.{table}")
    op.execute("DROP FUNCTION IF EXISTS auth.revocation_waits_for_replicas()")
