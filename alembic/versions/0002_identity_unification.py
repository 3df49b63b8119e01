"""Identity unification: every child table points at ``auth.users.id`` instead of an e-mail.

Seed 000, phase 1.4 week 1. ``user_profiles``, ``biometric_credentials``, ``device_flows`` and
``access_tokens`` gain ``user_id`` (a foreign key to ``auth.users``, ``ON DELETE CASCADE``),
backfilled by a case-insensitive e-mail match in batches, and lose their e-mail column; rows that
match no account, or several live ones, go to the new ``auth.quarantine`` (nothing is deleted).

Downgrade: the e-mail columns come back from ``users.email`` and the quarantined rows are put back;
cannot be restored: the original letter case of the addresses. Refuses to run while
``auth.quarantine`` holds rows of other revisions.

See docs/phases/0002-identity-unification.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import (
    NIL_UUID,
    PageWalk,
    add_check_not_valid,
    add_foreign_key,
    batched,
    column_exists,
    create_index_concurrently,
    drop_index_concurrently,
    finish_not_null,
    not_null_check,
    prepare_not_null,
    quarantine_statement,
    refuse,
    restore_quarantined,
    scalar,
    step,
)

revision: str = "0002_identity_unification"
down_revision: str | Sequence[str] | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> its e-mail key column, and whether every row must have a user.
CHILDREN: dict[str, tuple[str, bool]] = {
    "user_profiles": ("email", True),
    "biometric_credentials": ("user_email", True),
    "device_flows": ("user_email", False),
    "access_tokens": ("user_email", True),
}

#: Columns of each table at 0001, for putting quarantined rows back on downgrade.
BASELINE_COLUMNS: dict[str, list[str]] = {
    "user_profiles": [
        "id", "email", "display_name", "avatar_url", "bio", "locale", "timezone",
        "created_at", "updated_at",
    ],
    "biometric_credentials": [
        "id", "user_email", "credential_id", "public_key", "sign_count", "device_name",
        "created_at", "last_used_at", "revoked_at",
    ],
    "device_flows": [
        "id", "device_code", "user_code", "client_id", "scope", "status", "user_email",
        "expires_at", "approved_at", "created_at", "updated_at",
    ],
    "access_tokens": [
        "id", "token", "user_email", "client_id", "scope", "expires_at", "created_at",
    ],
}  # fmt: skip

#: Indexes of the e-mail keys at 0001: name, table, column, unique.
EMAIL_INDEXES = [
    ("ix_user_profiles_email", "user_profiles", "email", True),
    ("ix_biometric_credentials_user_email", "biometric_credentials", "user_email", False),
    ("ix_access_tokens_user_email", "access_tokens", "user_email", False),
]


def _attach_statement(table: str, email: str, rows: str) -> str:
    """Attach the rows selected by ``rows`` to their user, quarantine those that match none.

    ``rows`` is a condition on the table aliased ``{alias}``; it is repeated on the UPDATE so
    that the planner reaches a batch's rows through the primary key instead of scanning the table.
    """
    # LATERAL: one probe of ix_users_email_lower per row, whatever the size of auth.users
    verdicts = f"""
    verdict AS (
        SELECT c.id, m.matches, m.user_id
          FROM auth.{table} AS c
         CROSS JOIN LATERAL (
               SELECT count(u.id) AS matches,
                      CASE
                          WHEN count(u.id) FILTER (WHERE u.deleted_at IS NULL) = 1
                              THEN (array_agg(u.id) FILTER (WHERE u.deleted_at IS NULL))[1]
                          WHEN count(u.id) = 1 THEN (array_agg(u.id))[1]
                      END AS user_id
                 FROM auth.users AS u
                WHERE lower(u.email) = lower(c.{email})
         ) AS m
         WHERE ({rows.format(alias="c")}) AND c.user_id IS NULL AND c.{email} IS NOT NULL
    ),
    attached AS (
        UPDATE auth.{table} AS a SET user_id = verdict.user_id
          FROM verdict
         WHERE a.id = verdict.id AND verdict.user_id IS NOT NULL AND ({rows.format(alias="a")})
    )"""
    reason = (
        "CASE WHEN verdict.matches = 0 THEN 'no account has this e-mail address' "
        "ELSE 'the e-mail address matches ' || verdict.matches || ' accounts "
        "(they differ only in letter case, or are all deleted)' END"
    )
    return quarantine_statement(
        table,
        ctes=verdicts,
        using="verdict",
        where=f"t.id = verdict.id AND verdict.user_id IS NULL AND ({rows.format(alias='t')})",
        reason=reason,
        revision=revision,
    )


def _backfill(table: str, email: str) -> None:
    statement = text(_attach_statement(table, email, "{alias}.id = ANY(CAST(:ids AS uuid[]))"))

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        conn.execute(statement, {"ids": [row[0] for row in rows]})

    batched(
        f"SELECT id FROM auth.{table} "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
        f"AND user_id IS NULL AND {email} IS NOT NULL ORDER BY id LIMIT :limit",
        apply,
        # page by page: the same rows (docs/benchmarks.md, "Why 0002 grew faster than its data")
        walk=PageWalk(
            table,
            f"SELECT id FROM auth.{table} WHERE {{pages}} AND user_id IS NULL "
            f"AND {email} IS NOT NULL",
        ),
    )


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS auth.quarantine (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY,
            source_table TEXT NOT NULL,
            reason TEXT NOT NULL,
            row_data JSONB NOT NULL,
            revision TEXT NOT NULL,
            quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT pk_quarantine PRIMARY KEY (id)
        )""")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_quarantine_source_table_revision "
        "ON auth.quarantine (source_table, revision)"
    )
    for table in CHILDREN:
        op.execute(f"ALTER TABLE auth.{table} ADD COLUMN IF NOT EXISTS user_id UUID")

    create_index_concurrently("ix_users_email_lower", "users", "lower(email)")

    for table, (email, _) in CHILDREN.items():
        _backfill(table, email)

    with step():
        ranked = """
        ranked AS (
            SELECT id, row_number() OVER (
                       PARTITION BY user_id ORDER BY updated_at DESC, created_at DESC, id
                   ) AS position
              FROM auth.user_profiles
             WHERE user_id IS NOT NULL
        )"""
        op.execute(
            quarantine_statement(
                "user_profiles",
                ctes=ranked,
                using="ranked",
                where="t.id = ranked.id AND ranked.position > 1",
                reason="'the account has a more recently updated profile, which was kept'",
                revision=revision,
            )
        )

    create_index_concurrently("ix_user_profiles_user_id", "user_profiles", "user_id", unique=True)
    for table in ("biometric_credentials", "device_flows", "access_tokens"):
        create_index_concurrently(f"ix_{table}_user_id", table, "user_id")

    for table, (email, required) in CHILDREN.items():
        if not column_exists(table, email):
            continue  # a re-run after the column was dropped: this table is done
        with step():
            # Writers wait (readers do not) while rows written since the backfill are attached
            # and the constraints start applying to new rows.
            op.execute(f"LOCK TABLE auth.{table} IN SHARE ROW EXCLUSIVE MODE")
            op.execute(_attach_statement(table, email, "true"))
            if required:
                add_check_not_valid(table, not_null_check(table, "user_id"), "user_id IS NOT NULL")
        add_foreign_key(table, "user_id", "users", ondelete="CASCADE")
        if required:
            prepare_not_null(table, "user_id", check_added=True)

    # The revision's final transaction: instant changes only.
    for table, (email, required) in CHILDREN.items():
        if required:
            finish_not_null(table, "user_id")
        op.execute(
            "-- squawk-ignore ban-drop-column -- the e-mail key is replaced by user_id in this "
            "phase; the downgrade restores it from users.email\n"
            f"ALTER TABLE auth.{table} DROP COLUMN IF EXISTS {email}"
        )


def downgrade() -> None:
    others = scalar(
        "SELECT string_agg(DISTINCT revision, ', ') FROM auth.quarantine WHERE revision <> :r",
        {"r": revision},
    )
    if others:
        refuse(
            f"auth.quarantine holds rows quarantined by {others}; downgrading "
            f"{revision} drops the table. Export or resolve those rows first."
        )

    for table, (email, _) in CHILDREN.items():
        op.execute(f"ALTER TABLE auth.{table} ADD COLUMN IF NOT EXISTS {email} TEXT")

    for table, (email, _) in CHILDREN.items():
        statement = text(
            f"UPDATE auth.{table} AS c SET {email} = u.email FROM auth.users AS u "
            "WHERE u.id = c.user_id AND c.id = ANY(CAST(:ids AS uuid[]))"
        )

        def apply(conn: Connection, rows: Sequence[Any], statement: Any = statement) -> None:
            conn.execute(statement, {"ids": [row[0] for row in rows]})

        batched(
            f"SELECT id FROM auth.{table} "
            f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) "
            f"AND {email} IS NULL AND user_id IS NOT NULL ORDER BY id LIMIT :limit",
            apply,
        )

    for table, (email, required) in CHILDREN.items():
        if required:
            prepare_not_null(table, email)

    for name, table, column, unique in EMAIL_INDEXES:
        create_index_concurrently(name, table, column, unique=unique)

    for table, (email, required) in CHILDREN.items():
        if required:
            finish_not_null(table, email)

    for table in CHILDREN:
        op.execute(f"ALTER TABLE auth.{table} DROP CONSTRAINT IF EXISTS fk_{table}_user_id_users")
        op.execute(f"ALTER TABLE auth.{table} DROP COLUMN IF EXISTS user_id")
        restore_quarantined(table, revision=revision, columns=BASELINE_COLUMNS[table])

    drop_index_concurrently("ix_users_email_lower")
    if not scalar("SELECT EXISTS (SELECT 1 FROM auth.quarantine)"):
        op.execute(
            "-- squawk-ignore ban-drop-table -- this revision created it, and it is empty\n"
            "DROP TABLE IF EXISTS auth.quarantine"
        )
