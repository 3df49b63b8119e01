"""Token shape checks: every digest column of the token tables accepts only a keyed digest.

Found in issue 12. ``CHECK (auth.is_token_digest(<column>))`` on the digest columns of
``sessions``, ``refresh_tokens``, ``access_tokens``, ``password_reset_tokens``,
``email_verification_tokens`` and ``device_flows``, added ``NOT VALID`` then validated; rows with a
malformed digest (and a session's tokens with it) go to quarantine first.

Downgrade: the checks are dropped and the quarantined rows put back. Nothing is lost.

See docs/phases/0026-token-shape-checks.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from authmodels.revision_ops import (
    NIL_UUID,
    PageWalk,
    add_check_not_valid,
    batched,
    quarantine_statement,
    restore_quarantined,
    step,
    validate_constraint,
)

revision: str = "0026_token_shape_checks"
down_revision: str | Sequence[str] | None = "0025_keyed_log_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("authmodels.migrations")

#: table -> its columns that hold keyed digests (TokenHasher / PrivacyHasher format).
DIGESTS: dict[str, tuple[str, ...]] = {
    "sessions": ("token_hash", "refresh_token_hash", "ip_hash", "ua_hash"),
    "refresh_tokens": ("token_hash",),
    "access_tokens": ("token_hash",),
    "password_reset_tokens": ("token_hash",),
    "email_verification_tokens": ("token_hash",),
    "device_flows": ("device_code_hash", "user_code_hash"),
}
#: Tables whose rows 0018's cascade deletes with their session.
SESSION_CHILDREN = ("refresh_tokens", "access_tokens", "step_up_tokens")


def _check(table: str, column: str) -> str:
    return f"ck_{table}_{column}_digest"


def _malformed(table: str) -> str:
    """SQL: the row ``t`` of ``table`` has a digest column of the wrong shape."""
    return " OR ".join(f"NOT auth.is_token_digest(t.{c})" for c in DIGESTS[table])


def _reason(table: str) -> str:
    """SQL: why the row ``t`` is quarantined, naming its malformed columns."""
    names = ", ".join(
        f"CASE WHEN NOT auth.is_token_digest(t.{c}) THEN '{c}' END" for c in DIGESTS[table]
    )
    return f"'not a keyed digest (auth.is_token_digest): ' || concat_ws(', ', {names})"


def _quarantine(table: str) -> int:
    """Walk ``table`` page by page in short transactions; move its malformed rows to quarantine.

    Each batch reads about 5,000 ids with a flag per row; only the rows flagged are moved (with, for
    sessions, their tokens first), so a batch without one costs one scan of its pages.
    """
    statements = []
    if table == "sessions":
        statements += [
            quarantine_statement(
                child,
                where="t.session_id = ANY(CAST(:bad AS uuid[]))",
                reason="'its session ' || t.session_id || ' was quarantined: it held a "
                "malformed digest'",
                revision=revision,
            )
            for child in SESSION_CHILDREN
        ]
    statements.append(
        quarantine_statement(
            table,
            where="t.id = ANY(CAST(:bad AS uuid[]))",
            reason=_reason(table),
            revision=revision,
        )
    )
    moved = 0

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        nonlocal moved
        bad = [row[0] for row in rows if row[1]]
        for statement in statements if bad else ():
            moved += conn.execute(text(statement), {"bad": bad}).rowcount

    batched(
        f"SELECT id, {_malformed(table)} FROM auth.{table} AS t "
        f"WHERE id > coalesce(CAST(:after AS uuid), '{NIL_UUID}'::uuid) ORDER BY id LIMIT :limit",
        apply,
        # page by page: the same rows (docs/benchmarks.md, "Migrations on a large database")
        walk=PageWalk(
            table, f"SELECT id, {_malformed(table)} FROM auth.{table} AS t WHERE {{pages}}"
        ),
    )
    if moved:
        log.info("0026: %d rows of %s (and its sessions' tokens) quarantined", moved, table)
    return moved


def _validate(table: str) -> None:
    """Validate the table's checks; a malformed row written since the walk: walk, validate again."""
    try:
        for column in DIGESTS[table]:
            with step():
                validate_constraint(table, _check(table, column))
    except IntegrityError:
        # a row written malformed between the walk and its check: walk again, then validate
        _quarantine(table)
        for column in DIGESTS[table]:
            with step():
                validate_constraint(table, _check(table, column))


def upgrade() -> None:
    for table, columns in DIGESTS.items():
        _quarantine(table)
        with step():
            for column in columns:
                add_check_not_valid(table, _check(table, column), f"auth.is_token_digest({column})")
        _validate(table)


def downgrade() -> None:
    for table, columns in DIGESTS.items():
        for column in columns:
            op.execute(
                "-- squawk-ignore ban-drop-constraint -- the downgrade removes this revision's "
                f"check\nALTER TABLE auth.{table} DROP CONSTRAINT IF EXISTS {_check(table, column)}"
            )
    for table in ("sessions", *(t for t in DIGESTS if t != "sessions"), "step_up_tokens"):
        restore_quarantined(table, revision=revision)
