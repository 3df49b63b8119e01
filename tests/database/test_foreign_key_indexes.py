"""Every foreign key at head has an index its checks and actions can use.

Without one, each deleted parent row makes PostgreSQL scan the whole referencing table (to cascade,
set NULL or check): a purge or an account deletion then grows with the square of the table.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def test_every_foreign_key_leads_an_index(authmodels_session: Session) -> None:
    unindexed = (
        authmodels_session.execute(
            text(
                """
            SELECT c.conrelid::regclass::text || '.' || a.attname
              FROM pg_constraint AS c
              JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
              JOIN pg_class AS r ON r.oid = c.conrelid
             WHERE c.contype = 'f' AND c.connamespace = 'auth'::regnamespace
               AND NOT r.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_index AS i
                                WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
             ORDER BY 1
            """
            )
        )
        .scalars()
        .all()
    )
    assert unindexed == []


def test_deleting_a_token_does_not_scan_its_table(authmodels_session: Session) -> None:
    """The foreign key's SET NULL action can use the index (on an empty table the planner would
    rather scan, so scans are ruled out to see whether the index applies at all)."""
    authmodels_session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        authmodels_session.execute(
            text(
                "EXPLAIN UPDATE auth.refresh_tokens SET parent_token_id = NULL "
                "WHERE parent_token_id = gen_random_uuid()"
            )
        ).scalars()
    )
    assert "ix_refresh_tokens_parent_token_id" in plan
