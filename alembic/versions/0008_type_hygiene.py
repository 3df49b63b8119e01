"""Type hygiene: ENUM types, ``updated_at`` triggers everywhere, CHECK constraints, names.

Seed 000, phase 1.4 week 7. ``users.role``, ``device_flows.status``, ``audit_logs.event_status``
and ``app_logs.level`` become ENUMs by a shadow-column swap (no table rewrite under a lock);
every table with ``updated_at`` gets its trigger; expiry and device-flow CHECKs are added ``NOT
VALID`` then validated, their violators quarantined. An unknown ``users.role`` value stops the
upgrade before anything changes.

Downgrade: the columns go back to TEXT with their CHECK lists, triggers and checks go, quarantined
rows are put back. Nothing is lost.

See docs/phases/0008-type-hygiene.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from alembic import op

from authmodels.revision_ops import (
    IndexSpec,
    add_check_not_valid,
    catch_up_index,
    finish_swap,
    quarantine_statement,
    refuse,
    restore_quarantined,
    scalar,
    step,
    swap_column_type,
    validate_constraint,
)

revision: str = "0008_type_hygiene"
down_revision: str | Sequence[str] | None = "0007_privacy_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class EnumColumn(NamedTuple):
    table: str
    column: str
    type_name: str
    values: tuple[str, ...]
    default: str
    indexes: tuple[IndexSpec, ...] = ()
    key_start: str = "'00000000-0000-0000-0000-000000000000'::uuid"
    #: whether a CHECK listed the values before (``ck_<table>_<column>_known``)
    had_check: bool = True


def _values_sql(enum: EnumColumn) -> str:
    return ", ".join(f"'{v}'" for v in enum.values)


ENUMS = [
    EnumColumn("users", "role", "user_role", ("user", "admin"), "user", had_check=False),
    EnumColumn(
        "device_flows",
        "status",
        "device_flow_status",
        ("pending", "approved", "denied", "expired", "consumed"),
        "pending",
        indexes=(
            IndexSpec(
                "uq_device_flows_user_code_hash_pending",
                "user_code_hash",
                unique=True,
                where="{new} = 'pending'",
            ),
        ),
    ),
    EnumColumn(
        "audit_logs",
        "event_status",
        "audit_event_status",
        ("success", "failure", "blocked", "pending"),
        "success",
        indexes=(IndexSpec("ix_audit_logs_event_status_event_type", "{new}, event_type"),),
    ),
    EnumColumn(
        "app_logs",
        "level",
        "log_level",
        ("debug", "info", "warning", "error", "critical"),
        "info",
        key_start="0",
    ),
]

TABLES_WITH_UPDATED_AT = ["users", "user_profiles", "device_flows", "conversations"]
EXPIRING = [
    "sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "access_tokens",
    "device_flows",
]


class Check(NamedTuple):
    table: str
    name: str
    #: SQL, with ``{t}`` before each column (the alias it is checked under)
    condition: str
    reason: str
    #: tables whose rows reference a violating row and would be deleted with it (CASCADE)
    children: tuple[tuple[str, str], ...] = ()


CHECKS = [
    *(
        Check(
            t,
            f"ck_{t}_expires_after_created",
            "{t}expires_at > {t}created_at",
            "expires_at is not after created_at",
            (("refresh_tokens", "session_id"),) if t == "sessions" else (),
        )
        for t in EXPIRING
    ),
    Check(
        "device_flows",
        "ck_device_flows_interval_seconds_range",
        "{t}interval_seconds BETWEEN 1 AND 3600",
        "interval_seconds is outside 1..3600",
    ),
    Check(
        "device_flows",
        "ck_device_flows_poll_count_nonnegative",
        "{t}poll_count >= 0",
        "poll_count is negative",
    ),
    Check(
        "device_flows",
        "ck_device_flows_retention_after_expiry",
        "{t}retention_expires_at >= {t}expires_at",
        "retention_expires_at is before expires_at",
    ),
    Check(
        "device_flows",
        "ck_device_flows_approved_has_user",
        # the shadow column: the check follows it when it takes the name ``status``
        "{t}status__new NOT IN ('approved', 'consumed') OR {t}user_id IS NOT NULL",
        "an approved or consumed flow without a user",
    ),
]

UPDATED_AT_FUNCTION = """
CREATE OR REPLACE FUNCTION auth.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A migration that converts a value without changing it (revision 0008) sets this.
    IF current_setting('authmodels.keep_updated_at', true) = 'on' THEN
        RETURN NEW;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$"""

UPDATED_AT_FUNCTION_0001 = """
CREATE OR REPLACE FUNCTION auth.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$"""


def _check_known_values() -> None:
    problems = []
    for enum in ENUMS:
        found = scalar(
            f"SELECT string_agg(format('%L (%s rows)', v, n), ', ') FROM ("
            f"SELECT {enum.column} AS v, count(*) AS n FROM auth.{enum.table} "
            f"WHERE {enum.column} NOT IN ({_values_sql(enum)}) GROUP BY 1 ORDER BY 1) AS unknown"
        )
        if found:
            problems.append(
                f"auth.{enum.table}.{enum.column} holds {found}, which auth.{enum.type_name} "
                f"does not know ({_values_sql(enum)})"
            )
    if problems:
        refuse(
            "; ".join(problems) + ". Map those rows to a known value first; nothing was changed."
        )


def _quarantine_violations(check: Check) -> None:
    for child, fk in check.children:
        op.execute(
            quarantine_statement(
                child,
                using=f"auth.{check.table} AS parent",
                where=f"t.{fk} = parent.id AND NOT ({check.condition.format(t='parent.')})",
                reason=f"'its parent row in {check.table} was quarantined: {check.reason}'",
                revision=revision,
            )
        )
    op.execute(
        quarantine_statement(
            check.table,
            where=f"NOT ({check.condition.format(t='t.')})",
            reason=f"'{check.reason}'",
            revision=revision,
        )
    )


def upgrade() -> None:
    _check_known_values()  # before any change

    for enum in ENUMS:
        op.execute(f"""
            DO $$
            BEGIN
                CREATE TYPE auth.{enum.type_name} AS ENUM ({_values_sql(enum)});
            EXCEPTION WHEN duplicate_object THEN NULL;  -- a re-run after a failure
            END;
            $$""")
    op.execute(UPDATED_AT_FUNCTION)

    for enum in ENUMS:
        swap_column_type(
            enum.table,
            enum.column,
            new_type=f"auth.{enum.type_name}",
            using=f"{{old}}::text::auth.{enum.type_name}",
            indexes=enum.indexes,
            key_start=enum.key_start,
        )

    for table in TABLES_WITH_UPDATED_AT[1:]:
        with step():
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON auth.{table}")
            op.execute(
                f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON auth.{table} "
                "FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column()"
            )

    for check in CHECKS:
        # the rows that break the check, found under the lock without a scan of the table
        # (online only): a partial index over them, built concurrently before the lock
        violations = f"NOT ({check.condition.format(t='')})"
        with catch_up_index(check.table, violations), step():
            # Writers wait (readers do not) while the rows that break the check are moved out
            # and the check starts applying to new rows.
            op.execute(f"LOCK TABLE auth.{check.table} IN SHARE ROW EXCLUSIVE MODE")
            _quarantine_violations(check)
            add_check_not_valid(check.table, check.name, check.condition.format(t=""))
        with step():
            validate_constraint(check.table, check.name)

    # The revision's final transaction: instant changes only.
    for enum in ENUMS:
        finish_swap(enum.table, enum.column, default=f"'{enum.default}'", indexes=enum.indexes)
    op.execute(
        "-- squawk-ignore renaming-object -- one name pattern for every updated_at trigger\n"
        "ALTER TRIGGER update_users_updated_at ON auth.users RENAME TO trg_users_updated_at"
    )


def downgrade() -> None:
    for check in CHECKS:
        op.execute(f"ALTER TABLE auth.{check.table} DROP CONSTRAINT IF EXISTS {check.name}")
    for table in TABLES_WITH_UPDATED_AT[1:]:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON auth.{table}")
    op.execute("ALTER TRIGGER trg_users_updated_at ON auth.users RENAME TO update_users_updated_at")

    for enum in ENUMS:
        swap_column_type(
            enum.table,
            enum.column,
            new_type="TEXT",
            using="{old}::text",
            indexes=enum.indexes,
            key_start=enum.key_start,
        )
        if not enum.had_check:
            continue
        with step():
            add_check_not_valid(
                enum.table,
                f"ck_{enum.table}_{enum.column}_known",
                f"{enum.column}__new IN ({_values_sql(enum)})",
            )
        with step():
            validate_constraint(enum.table, f"ck_{enum.table}_{enum.column}_known")

    for enum in ENUMS:
        finish_swap(enum.table, enum.column, default=f"'{enum.default}'", indexes=enum.indexes)
    op.execute(UPDATED_AT_FUNCTION_0001)
    for enum in ENUMS:
        op.execute(f"DROP TYPE auth.{enum.type_name}")
    for table in ("sessions", *EXPIRING[1:]):  # parents first: refresh tokens need sessions
        restore_quarantined(table, revision=revision)
