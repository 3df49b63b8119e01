"""Step-up tokens, the audit trail of sensitive actions, optimistic locking, master admin.

Seed 001 (migration ``0001_ancient_jasper_sitwell``), all four parts. ``auth.step_up_tokens``
(keyed digests, a purpose, 15 minutes at most); seed 001's audit columns merged into
``audit_logs`` and ``auth.audit_logs_archive`` with ``auth.archive_audit_logs()``;
``users.version`` and ``is_master_admin``, designated by the migration; the database guards MA001
to MA003 on ``auth.users`` (docs/guards.md); ``auth.is_token_digest`` and
``auth.is_field_envelope``.

Downgrade: what was recorded is folded back into ``details`` / ``context`` or quarantined, and the
archive moves back; cannot be restored: outstanding step-up tokens, row versions, and which admin
is the master admin after a transfer.

See docs/phases/0009-step-up-admin-safety.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import (
    NIL_UUID,
    add_check_not_valid,
    add_foreign_key,
    batched,
    create_index_concurrently,
    drop_index_concurrently,
    quarantine_statement,
    restore_quarantined,
    step,
    validate_constraint,
)

revision: str = "0009_step_up_admin_safety"
down_revision: str | Sequence[str] | None = "0008_type_hygiene"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Key of the transaction-level advisory lock that serialises removals of admins ("authadmn").
ADMIN_LOCK_KEY = 0x6175746861646D6E

#: audit_logs event types as revision 0001 created them, and the ones this revision adds.
EVENT_TYPES_0001 = (
    "login", "logout", "password_change", "password_reset_request", "password_reset_complete",
    "email_verification", "account_locked", "account_unlocked", "2fa_enabled", "2fa_disabled",
    "session_revoked",
)  # fmt: skip
EVENT_TYPES_ADDED = (
    "role_changed", "master_admin_designated", "master_admin_transferred", "step_up_issued",
    "step_up_used", "sensitive_action",
)  # fmt: skip

#: Columns of audit_logs at this revision, in their physical order; the archive has the same
#: order plus archived_at, so the retention engine's ``INSERT ... SELECT moved.*, now()`` fits.
AUDIT_COLUMNS = [
    "id", "user_id", "event_type", "ip_address", "user_agent", "details", "created_at",
    "event_status", "actor_user_id", "target_user_id", "action", "correlation_id",
]  # fmt: skip
#: The columns this revision adds to audit_logs, folded into ``details`` by the downgrade.
AUDIT_ADDED = ("actor_user_id", "target_user_id", "action", "correlation_id")

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


#: (table, name, condition) of the CHECKs added to existing tables.
CHECKS = [
    ("audit_logs", "ck_audit_logs_action_length", "char_length(action) BETWEEN 1 AND 100"),
    (
        "audit_logs",
        "ck_audit_logs_correlation_id_length",
        "char_length(correlation_id) BETWEEN 1 AND 200",
    ),
    (
        "audit_logs",
        "ck_audit_logs_sensitive_action_named",
        "event_type <> 'sensitive_action' OR action IS NOT NULL",
    ),
    (
        "app_logs",
        "ck_app_logs_correlation_id_length",
        "char_length(correlation_id) BETWEEN 1 AND 200",
    ),
    ("users", "ck_users_version_positive", "version > 0"),
    (
        "users",
        "ck_users_master_admin_is_active_admin",
        "NOT is_master_admin OR (role = 'admin' AND deleted_at IS NULL)",
    ),
]

#: (name, table, columns, unique, where) of the indexes built concurrently on existing tables.
INDEXES = [
    ("ix_users_is_master_admin", "users", "is_master_admin", True, "is_master_admin"),
    ("ix_users_admin_created_at", "users", "created_at, id", False,
     "role = 'admin' AND deleted_at IS NULL"),
    ("ix_audit_logs_actor_user_id_created_at", "audit_logs", "actor_user_id, created_at DESC",
     False, None),
    ("ix_audit_logs_target_user_id_created_at", "audit_logs", "target_user_id, created_at DESC",
     False, None),
    ("ix_audit_logs_action_created_at", "audit_logs", "action, created_at DESC", False,
     "action IS NOT NULL"),
    ("ix_audit_logs_correlation_id", "audit_logs", "correlation_id", False,
     "correlation_id IS NOT NULL"),
    ("ix_app_logs_correlation_id", "app_logs", "correlation_id", False,
     "correlation_id IS NOT NULL"),
]  # fmt: skip

SHAPE_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION auth.is_token_digest(value bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- b'\\x01' || len(kid) || kid || HMAC-SHA256 (32 bytes), kid 1..32 bytes
    SELECT CASE WHEN octet_length(value) BETWEEN 35 AND 66
                THEN get_byte(value, 0) = 1 AND get_byte(value, 1) = octet_length(value) - 34
                ELSE false END
$$""",
    """
CREATE OR REPLACE FUNCTION auth.is_field_envelope(value bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- b'\\x01' || len(kid) || kid || nonce (12) || ciphertext || tag (16), kid 1..32 bytes
    SELECT CASE WHEN octet_length(value) >= 31
                THEN get_byte(value, 0) = 1 AND get_byte(value, 1) BETWEEN 1 AND 32
                     AND octet_length(value) >= 30 + get_byte(value, 1)
                ELSE false END
$$""",
]

STEP_UP_TOKENS = [
    """
CREATE TABLE IF NOT EXISTS auth.step_up_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    session_id UUID,
    token_hash BYTEA NOT NULL,
    purpose TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    CONSTRAINT pk_step_up_tokens PRIMARY KEY (id),
    CONSTRAINT fk_step_up_tokens_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT fk_step_up_tokens_session_id_sessions
        FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE CASCADE,
    CONSTRAINT ck_step_up_tokens_token_hash_digest CHECK (auth.is_token_digest(token_hash)),
    CONSTRAINT ck_step_up_tokens_purpose_format
        CHECK (purpose ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
    CONSTRAINT ck_step_up_tokens_lifetime
        CHECK (expires_at > created_at AND expires_at <= created_at + interval '15 minutes'),
    CONSTRAINT ck_step_up_tokens_used_after_created
        CHECK (used_at IS NULL OR used_at >= created_at)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_step_up_tokens_token_hash ON auth.step_up_tokens (token_hash)",
    "CREATE INDEX IF NOT EXISTS ix_step_up_tokens_user_id ON auth.step_up_tokens (user_id)",
    "CREATE INDEX IF NOT EXISTS ix_step_up_tokens_session_id ON auth.step_up_tokens (session_id)",
    "CREATE INDEX IF NOT EXISTS ix_step_up_tokens_expires_at ON auth.step_up_tokens (expires_at)",
]

ARCHIVE = [
    """
CREATE TABLE IF NOT EXISTS auth.audit_logs_archive (
    id UUID NOT NULL,
    user_id UUID,
    event_type TEXT NOT NULL,
    ip_address INET,
    user_agent TEXT,
    details JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    event_status auth.audit_event_status NOT NULL,
    actor_user_id UUID,
    target_user_id UUID,
    action TEXT,
    correlation_id TEXT,
    archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_audit_logs_archive PRIMARY KEY (id)
)""",
    "CREATE INDEX IF NOT EXISTS ix_audit_logs_archive_created_at ON auth.audit_logs_archive (created_at)",
    "CREATE INDEX IF NOT EXISTS ix_audit_logs_archive_user_id_created_at "
    "ON auth.audit_logs_archive (user_id, created_at)",
]

_COLS = ", ".join(AUDIT_COLUMNS)

UID = "(SELECT auth.uid())"
RLS_RERUN = (
    "-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it "
    "is a no-op, so a re-run is safe\n"
)

#: Row-level security on the new tables, as revision 0006 does it: a user sees (and writes) their
#: own step-up tokens, and reads their own archived audit rows (the archive is append-only).
RLS = [
    f"{RLS_RERUN}ALTER TABLE auth.step_up_tokens ENABLE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS step_up_tokens_owner ON auth.step_up_tokens",
    "CREATE POLICY step_up_tokens_owner ON auth.step_up_tokens AS PERMISSIVE FOR ALL "
    f"USING (user_id = {UID}) WITH CHECK (user_id = {UID})",
    f"{RLS_RERUN}ALTER TABLE auth.audit_logs_archive ENABLE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS audit_logs_archive_owner_read ON auth.audit_logs_archive",
    "CREATE POLICY audit_logs_archive_owner_read ON auth.audit_logs_archive AS PERMISSIVE "
    f"FOR SELECT USING (user_id = {UID})",
]

FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION auth.guard_master_admin() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Fires only for the master admin's row (WHEN OLD.is_master_admin).
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'Cannot demote the master admin'
            USING ERRCODE = 'MA001',
                  DETAIL = format('User %s is the master admin; it cannot be deleted.', OLD.id),
                  HINT = 'Move the role first: SELECT auth.transfer_master_admin(<admin id>).';
    END IF;
    IF NEW.role IS DISTINCT FROM 'admin' THEN
        RAISE EXCEPTION 'Cannot demote the master admin'
            USING ERRCODE = 'MA001',
                  DETAIL = format('User %s is the master admin; its role cannot become %L.',
                                  OLD.id, NEW.role),
                  HINT = 'Move the role first: SELECT auth.transfer_master_admin(<admin id>).';
    END IF;
    IF NEW.deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'Cannot demote the master admin'
            USING ERRCODE = 'MA001',
                  DETAIL = format('User %s is the master admin; it cannot be soft-deleted.',
                                  OLD.id),
                  HINT = 'Move the role first: SELECT auth.transfer_master_admin(<admin id>).';
    END IF;
    IF NOT NEW.is_master_admin
       AND coalesce(current_setting('authmodels.master_admin_transfer', true), '') <> 'on' THEN
        RAISE EXCEPTION 'Cannot demote the master admin'
            USING ERRCODE = 'MA001',
                  DETAIL = 'is_master_admin is cleared only by auth.transfer_master_admin().',
                  HINT = 'SELECT auth.transfer_master_admin(<admin id>).';
    END IF;
    RETURN NEW;
END;
$$""",
    """
CREATE OR REPLACE TRIGGER users_guard_master_admin
    BEFORE UPDATE OF role, deleted_at, is_master_admin OR DELETE ON auth.users
    FOR EACH ROW WHEN (OLD.is_master_admin)
    EXECUTE FUNCTION auth.guard_master_admin()""",
    f"""
CREATE OR REPLACE FUNCTION auth.guard_last_admin() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    other record;
    unconfirmed integer := 0;
BEGIN
    -- Fires for rows that were live admins (WHEN); an UPDATE that leaves one is no removal.
    IF TG_OP = 'UPDATE' AND NEW.role = 'admin' AND NEW.deleted_at IS NULL THEN
        RETURN NULL;
    END IF;
    -- Normally taken already by users_lock_admin_changes (re-taking it is free); it serialises
    -- removals of admins, which would otherwise each count the other one (write skew).
    PERFORM pg_advisory_xact_lock({ADMIN_LOCK_KEY});
    IF current_setting('transaction_isolation') = 'read committed' THEN
        -- A fresh snapshot for this statement: it sees a removal committed while we waited.
        PERFORM 1 FROM auth.users
         WHERE role = 'admin' AND deleted_at IS NULL AND id <> OLD.id
         LIMIT 1;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    ELSE
        -- The transaction's snapshot cannot see that removal. Confirm another admin by locking
        -- it (without waiting: a removal in flight holds its row and waits for our lock):
        -- a row changed since our snapshot raises serialization_failure, a row locked by
        -- another transaction lock_not_available; either leaves it unconfirmed.
        FOR other IN
            SELECT id FROM auth.users
             WHERE role = 'admin' AND deleted_at IS NULL AND id <> OLD.id
             ORDER BY created_at, id
        LOOP
            BEGIN
                PERFORM 1 FROM auth.users
                 WHERE id = other.id AND role = 'admin' AND deleted_at IS NULL
                   FOR SHARE NOWAIT;
                IF FOUND THEN
                    RETURN NULL;
                END IF;
            EXCEPTION WHEN serialization_failure OR lock_not_available THEN
                unconfirmed := unconfirmed + 1;
            END;
        END LOOP;
    END IF;
    RAISE EXCEPTION 'Cannot remove the last admin'
        USING ERRCODE = 'MA002',
              DETAIL = CASE WHEN unconfirmed > 0
                  THEN format('No other admin could be confirmed: %s changed or locked by '
                              'concurrent transactions.', unconfirmed)
                  ELSE format('User %s is the only active admin.', OLD.id) END,
              HINT = CASE WHEN unconfirmed > 0
                  THEN 'Retry the transaction: a new snapshot gives the exact answer.'
                  ELSE 'Promote another user to admin first.' END;
END;
$$""",
    f"""
CREATE OR REPLACE FUNCTION auth.lock_admin_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Before the statement locks any row: admin removals queue here, one transaction at a time.
    PERFORM pg_advisory_xact_lock({ADMIN_LOCK_KEY});
    RETURN NULL;
END;
$$""",
    """
CREATE OR REPLACE TRIGGER users_lock_admin_changes
    BEFORE UPDATE OF role, deleted_at OR DELETE ON auth.users
    FOR EACH STATEMENT
    EXECUTE FUNCTION auth.lock_admin_changes()""",
    """
CREATE OR REPLACE TRIGGER users_guard_last_admin
    AFTER UPDATE OF role, deleted_at OR DELETE ON auth.users
    FOR EACH ROW WHEN (OLD.role = 'admin' AND OLD.deleted_at IS NULL)
    EXECUTE FUNCTION auth.guard_last_admin()""",
    """
CREATE OR REPLACE FUNCTION auth.bump_row_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$""",
    """
CREATE OR REPLACE FUNCTION auth.guard_users_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- TRUNCATE fires no row trigger: without this it would remove every admin at once.
    IF EXISTS (SELECT 1 FROM auth.users WHERE is_master_admin) THEN
        RAISE EXCEPTION 'Cannot demote the master admin'
            USING ERRCODE = 'MA001',
                  DETAIL = 'TRUNCATE would delete the master admin.',
                  HINT = 'Delete the other rows with DELETE, or drop the database.';
    END IF;
    IF EXISTS (SELECT 1 FROM auth.users WHERE role = 'admin' AND deleted_at IS NULL) THEN
        RAISE EXCEPTION 'Cannot remove the last admin'
            USING ERRCODE = 'MA002',
                  DETAIL = 'TRUNCATE would delete every active admin.',
                  HINT = 'Delete the other rows with DELETE, or drop the database.';
    END IF;
    RETURN NULL;
END;
$$""",
    """
CREATE OR REPLACE TRIGGER users_guard_truncate
    BEFORE TRUNCATE ON auth.users
    FOR EACH STATEMENT EXECUTE FUNCTION auth.guard_users_truncate()""",
    """
CREATE OR REPLACE TRIGGER users_bump_version
    BEFORE UPDATE ON auth.users
    FOR EACH ROW WHEN (NEW.version = OLD.version)
    EXECUTE FUNCTION auth.bump_row_version()""",
    f"""
CREATE OR REPLACE FUNCTION auth.designate_master_admin(audit_correlation_id text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    chosen uuid;
BEGIN
    PERFORM pg_advisory_xact_lock({ADMIN_LOCK_KEY});
    SELECT id INTO chosen FROM auth.users WHERE is_master_admin;
    IF FOUND THEN
        RETURN chosen;
    END IF;
    SELECT id INTO chosen FROM auth.users
     WHERE role = 'admin' AND deleted_at IS NULL
     ORDER BY created_at, id
     LIMIT 1;
    IF NOT FOUND THEN
        RAISE NOTICE 'No admin found. Create an admin first.';
        RETURN NULL;
    END IF;
    UPDATE auth.users SET is_master_admin = true WHERE id = chosen;
    INSERT INTO auth.audit_logs
           (user_id, target_user_id, event_type, action, correlation_id, details)
    VALUES (chosen, chosen, 'master_admin_designated', 'master_admin.designate',
            audit_correlation_id, '{{"rule": "first active admin by created_at"}}'::jsonb);
    RETURN chosen;
END;
$$""",
    f"""
CREATE OR REPLACE FUNCTION auth.transfer_master_admin(new_master uuid, audit_correlation_id text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    previous uuid;
BEGIN
    PERFORM pg_advisory_xact_lock({ADMIN_LOCK_KEY});
    PERFORM 1 FROM auth.users
     WHERE id = new_master AND role = 'admin' AND deleted_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'The new master admin must be an active admin'
            USING ERRCODE = 'MA003',
                  DETAIL = format('User %s is not an admin, is deleted, or does not exist.',
                                  new_master);
    END IF;
    SELECT id INTO previous FROM auth.users WHERE is_master_admin FOR UPDATE;
    IF previous = new_master THEN
        RETURN previous;
    END IF;
    IF previous IS NOT NULL THEN
        PERFORM set_config('authmodels.master_admin_transfer', 'on', true);
        UPDATE auth.users SET is_master_admin = false WHERE id = previous;
        PERFORM set_config('authmodels.master_admin_transfer', '', true);
    END IF;
    UPDATE auth.users SET is_master_admin = true WHERE id = new_master;
    INSERT INTO auth.audit_logs
           (user_id, target_user_id, event_type, action, correlation_id, details)
    VALUES (new_master, new_master, 'master_admin_transferred', 'master_admin.transfer',
            audit_correlation_id, jsonb_build_object('previous_master_admin_id', previous));
    RETURN previous;
END;
$$""",
    f"""
CREATE OR REPLACE FUNCTION auth.archive_audit_logs(
    older_than interval DEFAULT interval '90 days', batch_size integer DEFAULT 10000
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved bigint;
BEGIN
    IF older_than < interval '0' OR batch_size < 1 THEN
        RAISE EXCEPTION 'archive_audit_logs needs older_than >= 0 and batch_size >= 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One statement: a row leaves audit_logs only together with its copy in the archive.
    WITH batch AS (
        SELECT id FROM auth.audit_logs
         WHERE created_at < now() - older_than
         ORDER BY created_at
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM auth.audit_logs AS a USING batch WHERE a.id = batch.id
        RETURNING a.*
    )
    INSERT INTO auth.audit_logs_archive ({_COLS})
    SELECT {_COLS} FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END;
$$""",
]

DROPPED_FUNCTIONS = [
    "auth.archive_audit_logs(interval, integer)",
    "auth.transfer_master_admin(uuid, text)",
    "auth.designate_master_admin(text)",
    "auth.bump_row_version()",
    "auth.guard_users_truncate()",
    "auth.guard_last_admin()",
    "auth.lock_admin_changes()",
    "auth.guard_master_admin()",
]
DROPPED_TRIGGERS = [
    "users_guard_truncate",
    "users_bump_version",
    "users_guard_last_admin",
    "users_lock_admin_changes",
    "users_guard_master_admin",
]


def _uuid_key(select_where: str, table: str) -> str:
    return (
        f"SELECT id FROM auth.{table} "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) AND ({select_where}) "
        "ORDER BY id LIMIT :limit"
    )


def _bigint_key(select_where: str, table: str) -> str:
    return (
        f"SELECT id FROM auth.{table} "
        f"WHERE id > coalesce(CAST(:after AS bigint), 0) AND ({select_where}) "
        "ORDER BY id LIMIT :limit"
    )


def _update_batches(select: str, update: str, id_type: str) -> None:
    """Run ``update`` (``... WHERE id = ANY(:ids)``) over the keys ``select`` walks."""
    statement = text(update.replace(":ids", f"CAST(:ids AS {id_type}[])"))

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(statement, {"ids": [row[0] for row in rows]})

    batched(select, apply)


def _json_text(column: str, key: str, max_length: int) -> str:
    """``column->>key`` when it is a JSON string of 1..max_length characters, else NULL."""
    return (
        f"CASE WHEN jsonb_typeof({column}->'{key}') = 'string' "
        f"AND char_length({column}->>'{key}') BETWEEN 1 AND {max_length} "
        f"THEN {column}->>'{key}' END"
    )


def _json_user(column: str, key: str) -> str:
    """The user whose id is ``column->>key``, if that account exists."""
    return (
        f"(SELECT u.id FROM auth.users AS u WHERE u.id = CASE WHEN {column}->>'{key}' "
        f"~ '{UUID_PATTERN}' THEN CAST({column}->>'{key}' AS uuid) END)"
    )


def upgrade() -> None:
    for statement in (*SHAPE_FUNCTIONS, *STEP_UP_TOKENS, *ARCHIVE):
        op.execute(statement)
    with step():
        for statement in RLS:
            op.execute(statement)
    op.execute(
        "ALTER TABLE auth.audit_logs ADD COLUMN IF NOT EXISTS actor_user_id UUID, "
        "ADD COLUMN IF NOT EXISTS target_user_id UUID, ADD COLUMN IF NOT EXISTS action TEXT, "
        "ADD COLUMN IF NOT EXISTS correlation_id TEXT"
    )
    op.execute("ALTER TABLE auth.app_logs ADD COLUMN IF NOT EXISTS correlation_id TEXT")
    op.execute(
        "-- squawk-ignore prefer-bigint-over-int -- the Versioned mixin's counter: one row is "
        "never updated 2^31 times\n"
        "ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS version INTEGER NOT NULL DEFAULT 1"
    )
    op.execute(
        "ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS is_master_admin BOOLEAN NOT NULL "
        "DEFAULT false"
    )
    for statement in FUNCTIONS:
        op.execute(statement)

    for column in ("actor_user_id", "target_user_id"):
        add_foreign_key("audit_logs", column, "users", ondelete="SET NULL")

    with step():
        # The event-type CHECK is replaced (same name, larger vocabulary) in one transaction, so
        # no moment is left without one; the new one is validated below without blocking writes.
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- replaced in this transaction by the same "
            "CHECK over a larger vocabulary\n"
            "ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS ck_audit_logs_event_type_known"
        )
        add_check_not_valid(
            "audit_logs",
            "ck_audit_logs_event_type_known",
            _in("event_type", (*EVENT_TYPES_0001, *EVENT_TYPES_ADDED)),
        )
        for table, name, condition in CHECKS:
            add_check_not_valid(table, name, condition)
    for table, name in [("audit_logs", "ck_audit_logs_event_type_known")] + [
        (t, n) for t, n, _ in CHECKS
    ]:
        with step():
            validate_constraint(table, name)

    # Fill the new columns from the JSON keys an application may already have written.
    _update_batches(
        _bigint_key(
            "correlation_id IS NULL AND "
            + _json_text("context", "correlation_id", 200)
            + " IS NOT NULL",
            "app_logs",
        ),
        "UPDATE auth.app_logs SET correlation_id = "
        + _json_text("context", "correlation_id", 200)
        + " WHERE id = ANY(:ids)",
        "bigint",
    )
    _update_batches(
        _uuid_key(
            "details ?| array['actor_user_id', 'target_user_id', 'action', 'correlation_id']",
            "audit_logs",
        ),
        "UPDATE auth.audit_logs SET "
        f"actor_user_id = coalesce(actor_user_id, {_json_user('details', 'actor_user_id')}), "
        f"target_user_id = coalesce(target_user_id, {_json_user('details', 'target_user_id')}), "
        f"action = coalesce(action, {_json_text('details', 'action', 100)}), "
        f"correlation_id = coalesce(correlation_id, {_json_text('details', 'correlation_id', 200)}) "
        "WHERE id = ANY(:ids)",
        "uuid",
    )

    for name, table, columns, unique, where in INDEXES:
        create_index_concurrently(name, table, columns, unique=unique, where=where)

    with step():
        # Rows a downgrade of this revision quarantined come back (references to accounts
        # deleted meanwhile become NULL, as ON DELETE SET NULL would have made them).
        for key in ("user_id", "actor_user_id", "target_user_id"):
            op.execute(
                f"UPDATE auth.quarantine AS q SET row_data = q.row_data || "
                f"jsonb_build_object('{key}', NULL) "
                f"WHERE q.source_table = 'audit_logs' AND q.revision = '{revision}' "
                f"AND q.row_data->>'{key}' IS NOT NULL AND NOT EXISTS ("
                f"SELECT 1 FROM auth.users AS u WHERE u.id::text = q.row_data->>'{key}')"
            )
        restore_quarantined("audit_logs", revision=revision, columns=AUDIT_COLUMNS)

    with step():
        # Seed 001, step 3: the first admin by creation date becomes the master admin.
        op.execute(f"SELECT auth.designate_master_admin('{revision}')")


def downgrade() -> None:
    for trigger in DROPPED_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON auth.users")

    # Archived rows go back to audit_logs (references to deleted accounts become NULL).
    nulled = ", ".join(
        f"CASE WHEN EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = m.{c}) THEN m.{c} END"
        if c in ("user_id", "actor_user_id", "target_user_id")
        else f"m.{c}"
        for c in AUDIT_COLUMNS
    )
    _update_batches(
        _uuid_key("true", "audit_logs_archive"),
        f"WITH m AS (DELETE FROM auth.audit_logs_archive WHERE id = ANY(:ids) "
        f"RETURNING {_COLS}) INSERT INTO auth.audit_logs ({_COLS}) SELECT {nulled} FROM m",
        "uuid",
    )

    with step():
        # The designation this revision recorded is undone with the column it set.
        op.execute(
            "DELETE FROM auth.audit_logs WHERE event_type = 'master_admin_designated' "
            f"AND correlation_id = '{revision}'"
        )
        op.execute(
            quarantine_statement(
                "audit_logs",
                where=f"NOT ({_in('t.event_type', EVENT_TYPES_0001)})",
                reason=(
                    f"'event type ' || t.event_type || ' was added by {revision}; "
                    "the CHECK of 0001_baseline refuses it'"
                ),
                revision=revision,
            )
        )
    folded = ", ".join(f"'{c}', {c}" for c in AUDIT_ADDED)
    _update_batches(
        _uuid_key(" OR ".join(f"{c} IS NOT NULL" for c in AUDIT_ADDED), "audit_logs"),
        f"UPDATE auth.audit_logs SET details = details || "
        f"jsonb_strip_nulls(jsonb_build_object({folded})) WHERE id = ANY(:ids)",
        "uuid",
    )
    _update_batches(
        _bigint_key("correlation_id IS NOT NULL", "app_logs"),
        "UPDATE auth.app_logs SET context = context || "
        "jsonb_build_object('correlation_id', correlation_id) WHERE id = ANY(:ids)",
        "bigint",
    )

    with step():
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- replaced in this transaction by the CHECK "
            "of 0001_baseline\n"
            "ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS ck_audit_logs_event_type_known"
        )
        add_check_not_valid(
            "audit_logs", "ck_audit_logs_event_type_known", _in("event_type", EVENT_TYPES_0001)
        )
    with step():
        validate_constraint("audit_logs", "ck_audit_logs_event_type_known")

    for name, _, _, _, _ in INDEXES:
        drop_index_concurrently(name)

    for table, name, _ in CHECKS:
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's CHECK\n"
            f"ALTER TABLE auth.{table} DROP CONSTRAINT IF EXISTS {name}"
        )
    for column in ("actor_user_id", "target_user_id"):
        op.execute(
            f"ALTER TABLE auth.audit_logs DROP CONSTRAINT IF EXISTS fk_audit_logs_{column}_users"
        )
    for function in DROPPED_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute(
        "-- squawk-ignore ban-drop-table -- emptied above: its rows are back in audit_logs\n"
        "DROP TABLE IF EXISTS auth.audit_logs_archive"
    )
    op.execute(
        "-- squawk-ignore ban-drop-table -- step-up tokens live at most 15 minutes; the "
        "downgrade discards the outstanding ones (their holders re-authenticate)\n"
        "DROP TABLE IF EXISTS auth.step_up_tokens"
    )
    op.execute(
        "-- squawk-ignore ban-drop-column -- folded into details above\n"
        "ALTER TABLE auth.audit_logs DROP COLUMN IF EXISTS actor_user_id, "
        "DROP COLUMN IF EXISTS target_user_id, DROP COLUMN IF EXISTS action, "
        "DROP COLUMN IF EXISTS correlation_id"
    )
    op.execute(
        "-- squawk-ignore ban-drop-column -- folded into context above\n"
        "ALTER TABLE auth.app_logs DROP COLUMN IF EXISTS correlation_id"
    )
    op.execute(
        "-- squawk-ignore ban-drop-column -- row versions and the master admin flag are this "
        "revision's; the next upgrade starts versions at 1 and designates the master again\n"
        "ALTER TABLE auth.users DROP COLUMN IF EXISTS version, "
        "DROP COLUMN IF EXISTS is_master_admin"
    )
    op.execute("DROP FUNCTION IF EXISTS auth.is_field_envelope(bytea)")
    op.execute("DROP FUNCTION IF EXISTS auth.is_token_digest(bytea)")
