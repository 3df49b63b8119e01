"""Retention policies: one table of windows that both purge paths follow, and indexes for them.

Seed 000 week 6, seed 001's cleanup jobs, seed 004's retention notes. ``auth.retention_policies``
(one row per accumulating table, read by ``authmodels purge`` and by the SQL function),
``auth.purge_expired_data()`` rewritten to follow it, and the expression indexes its conditions
need, built concurrently.

Downgrade: the policies table and the indexes go, 0007's function comes back; cannot be restored:
windows changed in the table.

See docs/phases/0016-retention-policies.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from authmodels.revision_ops import create_index_concurrently, drop_index_concurrently

revision: str = "0016_retention_policies"
down_revision: str | Sequence[str] | None = "0015_partitioned_logs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, expired condition, keep_for, archive_to, partitioned, position)
# fmt: off
POLICIES: list[tuple[str, str, str, str, str | None, bool, int]] = [
    ("device_flows", "auth.device_flows", "retention_expires_at < :cutoff", "0", None, False, 10),
    ("step_up_tokens", "auth.step_up_tokens", "least(expires_at, used_at) < :cutoff", "1 day",
     None, False, 15),
    ("dpop_jtis", "auth.dpop_jtis", "expires_at < :cutoff", "0", None, False, 16),
    ("access_tokens", "auth.access_tokens", "least(expires_at, revoked_at) < :cutoff",
     "7 days", None, False, 20),
    ("refresh_tokens", "auth.refresh_tokens",
     "least(expires_at, used_at, revoked_at) < :cutoff", "30 days", None, False, 30),
    ("sessions", "auth.sessions", "least(expires_at, revoked_at) < :cutoff",
     "30 days", None, False, 40),
    ("password_reset_tokens", "auth.password_reset_tokens",
     "least(expires_at, used_at) < :cutoff", "7 days", None, False, 50),
    ("email_verification_tokens", "auth.email_verification_tokens",
     "least(expires_at, verified_at) < :cutoff", "7 days", None, False, 60),
    ("app_logs", "auth.app_logs", "created_at < :cutoff", "90 days", None, False, 70),
    ("audit_logs", "auth.audit_logs", "created_at < :cutoff", "90 days",
     "auth.audit_logs_archive", True, 80),
    ("audit_logs_archive", "auth.audit_logs_archive", "archived_at < :cutoff", "730 days",
     None, False, 85),
    ("login_attempts", "auth.login_attempts", "created_at < :cutoff", "90 days", None, True, 90),
    ("security_events", "auth.security_events", "created_at < :cutoff", "365 days",
     None, False, 100),
    ("email_delivery_logs", "auth.email_delivery_logs", "created_at < :cutoff", "90 days",
     None, False, 110),
    ("sms_delivery_logs", "auth.sms_delivery_logs", "created_at < :cutoff", "90 days",
     None, False, 120),
    ("session_audits", "auth.session_audits", "created_at < :cutoff", "90 days",
     None, False, 130),
    ("account_recovery", "auth.account_recovery", "least(expires_at, completed_at) < :cutoff",
     "30 days", None, False, 140),
    ("two_factor_backup_codes", "auth.two_factor_backup_codes", "used_at < :cutoff", "30 days",
     None, False, 150),
]
# fmt: on
#: Policies whose rows are picked by something other than ``id``: ``dpop_jtis`` has the primary
#: key (jkt, jti), so its batches go by the row's physical address, stable within a statement.
KEY_COLUMNS = {"dpop_jtis": "ctid"}

#: (index name, table, expression) serving the policies above that no index served yet.
# fmt: off
INDEXES = [
    ("ix_access_tokens_retention", "access_tokens", "least(expires_at, revoked_at)"),
    ("ix_refresh_tokens_retention", "refresh_tokens", "least(expires_at, used_at, revoked_at)"),
    ("ix_sessions_retention", "sessions", "least(expires_at, revoked_at)"),
    ("ix_password_reset_tokens_retention", "password_reset_tokens", "least(expires_at, used_at)"),
    ("ix_email_verification_tokens_retention", "email_verification_tokens",
     "least(expires_at, verified_at)"),
    ("ix_step_up_tokens_retention", "step_up_tokens", "least(expires_at, used_at)"),
    ("ix_session_audits_created_at", "session_audits", "created_at"),
    ("ix_account_recovery_retention", "account_recovery", "least(expires_at, completed_at)"),
    ("ix_two_factor_backup_codes_used_at", "two_factor_backup_codes", "used_at"),
    ("ix_audit_logs_archive_archived_at", "audit_logs_archive", "archived_at"),
]
# fmt: on

PURGE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p auth.retention_policies;
    cutoff timestamptz;
    condition text;
    columns text;
    month record;
    n bigint;
BEGIN
    FOR p IN SELECT * FROM auth.retention_policies ORDER BY position, name LOOP
        cutoff := now() - p.keep_for;
        table_name := p.name;
        deleted := 0;
        IF p.partitioned THEN
            FOR month IN
                SELECT c.oid::regclass AS part FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = p.table_name::regclass
                   AND (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     'TO \(''([^'']+)''\)'))[1]::timestamptz <= cutoff
            LOOP
                BEGIN
                    SET LOCAL lock_timeout = '2s';
                    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', p.table_name, month.part);
                    IF p.archive_to IS NOT NULL THEN
                        -- by name: the archive's columns need not be in the table's order
                        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                          INTO columns FROM pg_attribute
                         WHERE attrelid = p.table_name::regclass AND attnum > 0
                           AND NOT attisdropped;
                        EXECUTE format('INSERT INTO %s (%s, archived_at) SELECT %s, now() FROM %s',
                                       p.archive_to, columns, columns, month.part);
                    END IF;
                    EXECUTE format('SELECT count(*) FROM %s', month.part) INTO n;
                    EXECUTE format('DROP TABLE %s', month.part);
                    deleted := deleted + n;
                EXCEPTION WHEN lock_not_available THEN
                    RAISE NOTICE 'purge_expired_data: % is busy; its month % waits for the next run',
                        p.table_name, month.part;
                END;
            END LOOP;
        ELSE
            -- the parameter's name is spelt in two pieces: op.execute would take it for a bind
            condition := replace(p.expired, ':' || 'cutoff', '$1');
            IF p.archive_to IS NULL THEN
                -- the keys as an array: each row is reached through its key, never by a
                -- join that could scan the whole table for every batch
                EXECUTE format(
                    'DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I FROM %2$s '
                    'WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED))',
                    p.key_column, p.table_name, condition)
                USING cutoff, batch_limit;
            ELSE
                SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                  INTO columns FROM pg_attribute
                 WHERE attrelid = p.table_name::regclass AND attnum > 0 AND NOT attisdropped;
                EXECUTE format(
                    'WITH moved AS (DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I '
                    'FROM %2$s WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING t.*) '
                    'INSERT INTO %4$s (%5$s, archived_at) SELECT %5$s, now() FROM moved',
                    p.key_column, p.table_name, condition, p.archive_to, columns)
                USING cutoff, batch_limit;
            END IF;
            GET DIAGNOSTICS deleted = ROW_COUNT;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$
"""


#: 0007's function, put back by the downgrade (a revision keeps its own copy: 0007 may not change).
PURGE_FUNCTION_0007 = """
CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Each DELETE takes at most batch_limit rows, skipping rows another purge holds, so runs
    -- stay short and may overlap; call again until every count is 0.
    table_name := 'device_flows';
    DELETE FROM auth.device_flows WHERE id IN (
        SELECT id FROM auth.device_flows WHERE retention_expires_at < now()
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'sessions';  -- their refresh tokens go with them (ON DELETE CASCADE)
    DELETE FROM auth.sessions WHERE id IN (
        SELECT id FROM auth.sessions
         WHERE expires_at < now() - interval '30 days'
            OR revoked_at < now() - interval '30 days'
            OR (NOT is_active AND last_activity_at < now() - interval '30 days')
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'refresh_tokens';
    DELETE FROM auth.refresh_tokens WHERE id IN (
        SELECT id FROM auth.refresh_tokens
         WHERE expires_at < now() - interval '30 days'
            OR used_at < now() - interval '30 days'
            OR revoked_at < now() - interval '30 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'access_tokens';
    DELETE FROM auth.access_tokens WHERE id IN (
        SELECT id FROM auth.access_tokens
         WHERE expires_at < now() - interval '7 days'
            OR revoked_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'password_reset_tokens';
    DELETE FROM auth.password_reset_tokens WHERE id IN (
        SELECT id FROM auth.password_reset_tokens
         WHERE expires_at < now() - interval '7 days'
            OR used_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'email_verification_tokens';
    DELETE FROM auth.email_verification_tokens WHERE id IN (
        SELECT id FROM auth.email_verification_tokens
         WHERE expires_at < now() - interval '7 days'
            OR verified_at < now() - interval '7 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;

    table_name := 'app_logs';
    DELETE FROM auth.app_logs WHERE id IN (
        SELECT id FROM auth.app_logs WHERE created_at < now() - interval '90 days'
         LIMIT batch_limit FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN NEXT;
END;
$$"""


def _interval(text_value: str) -> timedelta:
    number, _, unit = text_value.partition(" ")
    return timedelta(days=int(number)) if unit in ("day", "days") else timedelta(0)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS auth.retention_policies (
            name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            expired TEXT NOT NULL,
            keep_for INTERVAL NOT NULL,
            key_column TEXT NOT NULL DEFAULT 'id',
            archive_to TEXT,
            partitioned BOOLEAN NOT NULL DEFAULT false,
            -- squawk-ignore prefer-bigint-over-smallint -- an ordering of a dozen policies
            position SMALLINT NOT NULL DEFAULT 100,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT pk_retention_policies PRIMARY KEY (name),
            CONSTRAINT ck_retention_policies_keep_for_not_negative
                CHECK (keep_for >= interval '0'),
            CONSTRAINT ck_retention_policies_expired_uses_cutoff
                CHECK (strpos(expired, ':' || 'cutoff') > 0)
        )
        """
    )
    op.execute(
        "-- squawk-ignore prefer-robust-stmts -- the table is new (created just above, empty)\n"
        "ALTER TABLE auth.retention_policies ENABLE ROW LEVEL SECURITY"
    )
    op.execute(
        "CREATE TRIGGER update_retention_policies_updated_at BEFORE UPDATE "
        "ON auth.retention_policies FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column()"
    )
    policies = sa.table(
        "retention_policies",
        sa.column("name", sa.Text),
        sa.column("table_name", sa.Text),
        sa.column("expired", sa.Text),
        sa.column("keep_for", sa.Interval),
        sa.column("archive_to", sa.Text),
        sa.column("partitioned", sa.Boolean),
        sa.column("position", sa.SmallInteger),
        sa.column("key_column", sa.Text),
        schema="auth",
    )
    op.bulk_insert(
        policies,
        [
            {
                "name": name,
                "table_name": table,
                "expired": expired,
                "keep_for": _interval(keep_for),
                "archive_to": archive_to,
                "partitioned": partitioned,
                "position": position,
                "key_column": KEY_COLUMNS.get(name, "id"),
            }
            for name, table, expired, keep_for, archive_to, partitioned, position in POLICIES
        ],
    )
    op.execute(PURGE_FUNCTION)
    for name, table, expression in INDEXES:
        create_index_concurrently(name, table, expression)


def downgrade() -> None:
    for name, _, _ in INDEXES:
        drop_index_concurrently(name)
    op.execute(PURGE_FUNCTION_0007)
    op.execute("DROP TABLE auth.retention_policies")
