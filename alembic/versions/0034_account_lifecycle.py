"""Account lifecycle: magic links, request limits, session audits of refusals, the flows' writes.

Found in issue 13 ("account lifecycle"). The lifecycle flows (``authmodels.services.signup``,
``password_reset``, ``email_verification``, ``recovery``, ``magic_links``, ``devices``) need:

- ``auth.magic_link_tokens``: passwordless sign-in links (seed 004's "future" list). One row per
  link: its keyed digest (``uq_magic_link_tokens_token_hash``), the keyed hash of the value the
  requesting client holds when the link is bound to it (``client_hash``), the requesting
  address's keyed hash, ``expires_at`` (at most an hour after ``created_at``:
  ``ck_magic_link_tokens_lifetime``), ``used_at``. Users read their own links; only the service
  path writes them.
- ``auth.flow_requests``: one row per request a client makes, without being signed in, to a flow
  that sends a message to the address it typed (sign-up, password reset, magic link, account
  recovery), whether or not an account has that address: the keyed digest of the address, the
  keyed hash of the client's address. The per-address and per-client limits count these rows,
  so a refusal says nothing about whether the account exists. Users read their own rows.
- ``auth.session_audit_action`` gains ``reuse_detected`` and ``dpop_mismatch``: the two refusals
  about a session that ``session_audits`` records besides creation, rotation and revocation.
- ``audit_logs.event_type`` accepts the lifecycle's events (``signup``, ``email_change_requested``,
  ``email_changed``, ``magic_link_requested``, ``magic_link_login``,
  ``account_recovery_requested``, ``account_recovered``, ``account_recovery_cancelled``,
  ``device_trusted``, ``device_revoked``): the CHECK is replaced over the larger vocabulary,
  ``NOT VALID``, then validated partition by partition.
- Policies for writes a user's own request makes (0028's pattern): ``session_audits_owner_insert``
  (revoking one's own session records it), ``email_delivery_logs_owner_insert`` and
  ``flow_requests_owner_insert`` (an e-mail change or a new verification link requested by the
  signed-in user logs its message and counts towards the limits), ``account_recovery_owner_cancel``
  (a user cancels their own pending recovery: ``UPDATE`` from ``pending`` to ``cancelled`` only).
- Retention: magic links 7 days after they were used or expired, flow requests after 7 days
  (``auth.retention_policies``; the indexes serve the conditions).

Locks: the new tables are created empty; the enum values are a catalog change; the CHECK is
dropped and added ``NOT VALID`` in one short transaction (``ACCESS EXCLUSIVE`` on ``audit_logs``
and its partitions, catalog only) and validated without blocking writes; ``CREATE POLICY`` takes
``ACCESS EXCLUSIVE`` on its table for a catalog change only. Run ``auth.grant_app_role`` (and
``auth.grant_service_role``) again after this upgrade: the two new tables need their grants and
service policies.

Downgrade: the two tables and their rows go (refused while they hold rows, unless ``-x
allow_data_loss=true``), the policies and retention rows go, audit entries of the lifecycle's
event types move to ``auth.quarantine`` before the CHECK narrows, and session audits of the two
new actions too. The two enum values stay: PostgreSQL cannot drop a value from an enum type, and
nothing written before this revision is affected by their presence.

Docs: ``docs/phases/0034-account-lifecycle.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from authmodels.models.audit import (
    AUDIT_EVENT_TYPES,
    FLOW_AUDIT_EVENT_TYPES,
    LIFECYCLE_AUDIT_EVENT_TYPES,
)
from authmodels.models.flow_requests import FLOW_PATTERN
from authmodels.models.magic_links import MAGIC_LINK_MAX_LIFETIME_MINUTES
from authmodels.revision_ops import (
    RERUN_GUARD,
    SCHEMA,
    is_offline,
    quarantine_statement,
    refuse_to_drop_rows,
    restore_quarantined,
    step,
    validate_constraint,
)

revision: str = "0034_account_lifecycle"
down_revision: str | Sequence[str] | None = "0033_trusted_devices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST = "auth.is_token_digest({})"
UID = "(SELECT auth.uid())"
NEW_TABLES = ("flow_requests", "magic_link_tokens")
NEW_ACTIONS = ("reuse_detected", "dpop_mismatch")
EVENT_CHECK = "ck_audit_logs_event_type_known"

CREATE = [
    f"""
CREATE TABLE IF NOT EXISTS auth.magic_link_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    token_hash BYTEA NOT NULL,
    client_hash BYTEA,
    ip_hash BYTEA,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_magic_link_tokens PRIMARY KEY (id),
    CONSTRAINT fk_magic_link_tokens_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_magic_link_tokens_token_hash_digest CHECK ({DIGEST.format("token_hash")}),
    CONSTRAINT ck_magic_link_tokens_client_hash_digest CHECK ({DIGEST.format("client_hash")}),
    CONSTRAINT ck_magic_link_tokens_ip_hash_digest CHECK ({DIGEST.format("ip_hash")}),
    CONSTRAINT ck_magic_link_tokens_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT ck_magic_link_tokens_lifetime
        CHECK (expires_at <= created_at + interval '{MAGIC_LINK_MAX_LIFETIME_MINUTES} minutes'),
    CONSTRAINT ck_magic_link_tokens_used_after_created CHECK (used_at >= created_at)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_magic_link_tokens_token_hash "
    "ON auth.magic_link_tokens (token_hash)",
    "CREATE INDEX IF NOT EXISTS ix_magic_link_tokens_user_id_created_at "
    "ON auth.magic_link_tokens (user_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_magic_link_tokens_retention "
    "ON auth.magic_link_tokens (least(expires_at, used_at))",
    f"""
CREATE TABLE IF NOT EXISTS auth.flow_requests (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    flow TEXT NOT NULL,
    user_id UUID,
    identifier_hash BYTEA NOT NULL,
    ip_hash BYTEA,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_flow_requests PRIMARY KEY (id),
    CONSTRAINT fk_flow_requests_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT ck_flow_requests_flow_format CHECK (flow ~ '^{FLOW_PATTERN}$'),
    CONSTRAINT ck_flow_requests_identifier_hash_digest CHECK ({DIGEST.format("identifier_hash")}),
    CONSTRAINT ck_flow_requests_ip_hash_digest CHECK ({DIGEST.format("ip_hash")})
)""",
    "CREATE INDEX IF NOT EXISTS ix_flow_requests_flow_identifier_hash_created_at "
    "ON auth.flow_requests (flow, identifier_hash, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS ix_flow_requests_flow_ip_hash_created_at "
    "ON auth.flow_requests (flow, ip_hash, created_at DESC) WHERE ip_hash IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_flow_requests_user_id "
    "ON auth.flow_requests (user_id) WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_flow_requests_created_at ON auth.flow_requests (created_at)",
]

RLS_NEW = (
    "-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it "
    "is a no-op, so a re-run is safe\n"
)

#: (table, policy, command, USING, WITH CHECK)
POLICIES: list[tuple[str, str, str, str | None, str | None]] = [
    ("magic_link_tokens", "magic_link_tokens_owner_read", "SELECT", f"user_id = {UID}", None),
    ("flow_requests", "flow_requests_owner_read", "SELECT", f"user_id = {UID}", None),
    ("flow_requests", "flow_requests_owner_insert", "INSERT", None, f"user_id = {UID}"),
    ("session_audits", "session_audits_owner_insert", "INSERT", None, f"user_id = {UID}"),
    ("email_delivery_logs", "email_delivery_logs_owner_insert", "INSERT", None, f"user_id = {UID}"),
    (
        "account_recovery",
        "account_recovery_owner_cancel",
        "UPDATE",
        f"user_id = {UID} AND status = 'pending'",
        f"user_id = {UID} AND status = 'cancelled'",
    ),
]

#: (name, table, expired condition, keep_for, position)
RETENTION = [
    ("magic_link_tokens", "auth.magic_link_tokens", "least(expires_at, used_at) < :cutoff",
     timedelta(days=7), 55),
    ("flow_requests", "auth.flow_requests", "created_at < :cutoff", timedelta(days=7), 95),
]  # fmt: skip


def _in(values: Sequence[str]) -> str:
    return "event_type IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _partitions() -> list[str]:
    """The partitions of ``audit_logs`` (named when the upgrade runs; none offline)."""
    if is_offline():
        return []
    return [
        str(name)
        for name in op.get_bind()
        .execute(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'auth.audit_logs'::regclass ORDER BY c.relname"
            )
        )
        .scalars()
    ]


def _replace_event_check(values: Sequence[str]) -> None:
    """The event-type CHECK over ``values``: replaced in one short transaction (no moment
    without one), validated partition by partition, then on the parent (which only marks it)."""
    with step():
        op.execute(
            f"{RERUN_GUARD}ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS {EVENT_CHECK}"
        )
        op.execute(
            f"ALTER TABLE auth.audit_logs ADD CONSTRAINT {EVENT_CHECK} CHECK ({_in(values)}) "
            "NOT VALID"
        )
    for partition in _partitions():
        with step():
            validate_constraint(partition, EVENT_CHECK)
    with step():
        validate_constraint("audit_logs", EVENT_CHECK)


def _policy(table: str, name: str, command: str, using: str | None, check: str | None) -> str:
    clauses = "".join(
        [f" USING ({using})" if using else "", f" WITH CHECK ({check})" if check else ""]
    )
    return f"CREATE POLICY {name} ON auth.{table} AS PERMISSIVE FOR {command}{clauses}"


def upgrade() -> None:
    with step():
        # after the last value of 0010, in the order of SessionAuditAction
        for after, action in zip(("expired", *NEW_ACTIONS), NEW_ACTIONS, strict=False):
            op.execute(
                f"ALTER TYPE auth.session_audit_action ADD VALUE IF NOT EXISTS '{action}' "
                f"AFTER '{after}'"
            )
    _replace_event_check(
        [*AUDIT_EVENT_TYPES, *FLOW_AUDIT_EVENT_TYPES, *LIFECYCLE_AUDIT_EVENT_TYPES]
    )

    # the revision's final transaction: the new tables (empty: their indexes need no
    # CONCURRENTLY), row-level security, policies, retention, what a downgrade set aside
    for statement in CREATE:
        op.execute(statement)
    for table in NEW_TABLES:
        op.execute(f"{RLS_NEW}ALTER TABLE auth.{table} ENABLE ROW LEVEL SECURITY")
    for table, name, command, using, check in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON auth.{table}")
        op.execute(_policy(table, name, command, using, check))
    policies = sa.table(
        "retention_policies",
        sa.column("name", sa.Text),
        sa.column("table_name", sa.Text),
        sa.column("expired", sa.Text),
        sa.column("keep_for", sa.Interval),
        sa.column("position", sa.SmallInteger),
        schema=SCHEMA,
    )
    op.execute(
        f"DELETE FROM auth.retention_policies WHERE name IN "
        f"({', '.join(repr(name) for name, *_ in RETENTION)})"
    )
    op.bulk_insert(
        policies,
        [
            {"name": n, "table_name": t, "expired": e, "keep_for": k, "position": p}
            for n, t, e, k, p in RETENTION
        ],
    )
    restore_quarantined("audit_logs", revision=revision)
    restore_quarantined("session_audits", revision=revision)


def downgrade() -> None:
    refuse_to_drop_rows(revision, list(NEW_TABLES))  # before any change
    with step():
        op.execute(
            quarantine_statement(
                "audit_logs",
                where=f"t.{_in(LIFECYCLE_AUDIT_EVENT_TYPES)}",
                reason=f"'event type added by {revision} (downgrade)'",
                revision=revision,
            )
        )
        op.execute(
            quarantine_statement(
                "session_audits",
                where=f"t.action IN ({', '.join(repr(a) for a in NEW_ACTIONS)})",
                reason=f"'session audit action added by {revision} (downgrade)'",
                revision=revision,
            )
        )
    _replace_event_check([*AUDIT_EVENT_TYPES, *FLOW_AUDIT_EVENT_TYPES])
    op.execute(
        f"DELETE FROM auth.retention_policies WHERE name IN "
        f"({', '.join(repr(name) for name, *_ in RETENTION)})"
    )
    for table, name, *_ in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON auth.{table}")
    for table in reversed(NEW_TABLES):
        op.execute(
            "-- squawk-ignore ban-drop-table -- created by this revision; the downgrade refused "
            "to run while one held rows, unless allow_data_loss was given\n"
            f"DROP TABLE IF EXISTS auth.{table}"
        )
