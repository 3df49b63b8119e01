"""Set-based session cascade: deleting sessions costs one statement per child table, not per row.

Retention at scale. The four foreign keys pointing at ``auth.sessions`` are replaced, in one
transaction, by statement-level cascade triggers, per-row reference checks (SQLSTATE ``23503``), an
immutable session id, and a plain ``session_audits.session_id`` that outlives its session.

Downgrade: the foreign keys come back (``NOT VALID``, then validated); tokens whose session is gone
go to quarantine; cannot be restored: the ids of purged sessions in ``session_audits`` (set to
NULL, as ``SET NULL`` would have).

See docs/phases/0018-set-based-session-cascade.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from authmodels.revision_ops import batched, quarantine_statement, step, validate_constraint

revision: str = "0018_set_based_session_cascade"
down_revision: str | Sequence[str] | None = "0017_user_self_update_guard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables whose rows belong to a session, and their foreign key's name before this revision.
TOKEN_TABLES = ("refresh_tokens", "access_tokens", "step_up_tokens")
#: (table, ON DELETE action) of every foreign key to sessions this revision replaces.
FOREIGN_KEYS = (
    ("refresh_tokens", "CASCADE"),
    ("access_tokens", "CASCADE"),
    ("step_up_tokens", "CASCADE"),
    ("session_audits", "SET NULL"),
)


def _fk_name(table: str) -> str:
    return f"fk_{table}_session_id_sessions"


_DELETES = "\n".join(
    f"    DELETE FROM auth.{table} WHERE session_id = ANY(ARRAY(SELECT id FROM old_sessions));"
    for table in TOKEN_TABLES
)
_TRUNCATES = "\n".join(
    f"    DELETE FROM auth.{table} WHERE session_id IS NOT NULL;" for table in TOKEN_TABLES
)
_REFERENCED = " OR ".join(
    f"EXISTS (SELECT 1 FROM auth.{table} WHERE session_id = OLD.id)" for table in TOKEN_TABLES
)

FUNCTIONS = (
    f"""
CREATE OR REPLACE FUNCTION auth.sessions_cascade_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
{_DELETES}
    RETURN NULL;
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION auth.sessions_cascade_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
{_TRUNCATES}
    RETURN NULL;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION auth.check_session_reference() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM auth.sessions WHERE id = NEW.session_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates the reference to auth.sessions',
                TG_TABLE_NAME
            USING ERRCODE = '23503',
                  DETAIL = format('Key (session_id)=(%s) is not present in table "sessions".',
                                  NEW.session_id),
                  HINT = 'Create the session first, in the same or an earlier transaction.',
                  SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'session_id';
    END IF;
    RETURN NULL;
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION auth.sessions_id_immutable() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF {_REFERENCED} THEN
        RAISE EXCEPTION 'A session''s id cannot change while tokens refer to it'
            USING ERRCODE = '23503',
                  DETAIL = format('Key (id)=(%s) is still referenced.', OLD.id);
    END IF;
    RETURN NEW;
END
$$
""",
)

TRIGGERS = (
    "CREATE OR REPLACE TRIGGER sessions_cascade_delete AFTER DELETE ON auth.sessions "
    "REFERENCING OLD TABLE AS old_sessions FOR EACH STATEMENT "
    "EXECUTE FUNCTION auth.sessions_cascade_delete()",
    "CREATE OR REPLACE TRIGGER sessions_cascade_truncate AFTER TRUNCATE ON auth.sessions "
    "FOR EACH STATEMENT EXECUTE FUNCTION auth.sessions_cascade_truncate()",
    "CREATE OR REPLACE TRIGGER sessions_id_immutable BEFORE UPDATE OF id ON auth.sessions "
    "FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) "
    "EXECUTE FUNCTION auth.sessions_id_immutable()",
    *(
        f"CREATE OR REPLACE TRIGGER {table}_session_reference "
        f"AFTER INSERT OR UPDATE OF session_id ON auth.{table} FOR EACH ROW "
        "WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION auth.check_session_reference()"
        for table in TOKEN_TABLES
    ),
)


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(function)
    for trigger in TRIGGERS:
        op.execute(trigger)
    for table, _ in FOREIGN_KEYS:
        op.execute(
            "-- squawk-ignore ban-drop-constraint -- replaced, in this same transaction, by the "
            "triggers above (set-based cascade, reference check)\n"
            f"ALTER TABLE auth.{table} DROP CONSTRAINT IF EXISTS {_fk_name(table)}"
        )


def _null_orphan_audits(conn: Connection, rows: Sequence[Any]) -> None:
    conn.execute(
        text(
            "UPDATE auth.session_audits AS a SET session_id = NULL "
            "WHERE a.id = ANY(:ids) AND a.session_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM auth.sessions AS s WHERE s.id = a.session_id)"
        ),
        {"ids": [row[0] for row in rows]},
    )


def downgrade() -> None:
    with step():
        for table, action in FOREIGN_KEYS:
            op.execute(
                f"ALTER TABLE auth.{table} ADD CONSTRAINT {_fk_name(table)} FOREIGN KEY "
                f"(session_id) REFERENCES auth.sessions (id) ON DELETE {action} NOT VALID"
            )
        for trigger in (
            "sessions_cascade_delete ON auth.sessions",
            "sessions_cascade_truncate ON auth.sessions",
            "sessions_id_immutable ON auth.sessions",
            *(f"{table}_session_reference ON auth.{table}" for table in TOKEN_TABLES),
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for function in (
            "sessions_cascade_delete",
            "sessions_cascade_truncate",
            "check_session_reference",
            "sessions_id_immutable",
        ):
            op.execute(f"DROP FUNCTION IF EXISTS auth.{function}()")
    for table in TOKEN_TABLES:
        with step():
            op.execute(
                quarantine_statement(
                    table,
                    where="t.session_id IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM auth.sessions AS s WHERE s.id = t.session_id)",
                    reason="'its session no longer exists'",
                    revision=revision,
                )
            )
    batched(
        "SELECT id FROM auth.session_audits WHERE (CAST(:after AS uuid) IS NULL OR id > :after) "
        "ORDER BY id LIMIT :limit",
        _null_orphan_audits,
    )
    for table, _ in FOREIGN_KEYS:
        with step():
            validate_constraint(table, _fk_name(table))
