"""Step-up tokens, the merged audit log and its archive (revision 0009) on the schema at head."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from authmodels.security.hashing import TokenHasher, new_token

HASHER = TokenHasher({"k1": secrets.token_bytes(32)})

#: a keyed IP hash as audit entries store it (revision 0025): b"\x01" || kid length || kid || MAC
IP_HASH = b"\x01\x01k" + bytes(range(32))


def _constraint(error: DBAPIError) -> str | None:
    return getattr(getattr(error.orig, "diag", None), "constraint_name", None)


def _issue(conn: Connection, user_id: str, raw: str, minutes: int = 5) -> str:
    return str(
        conn.execute(
            text(
                "INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, expires_at) "
                "VALUES (:u, :h, 'admin.role_change', now() + make_interval(mins => :m)) "
                "RETURNING id"
            ),
            {"u": user_id, "h": HASHER.digest(raw), "m": minutes},
        ).scalar_one()
    )


CONSUME = text(
    "UPDATE auth.step_up_tokens SET used_at = now() "
    "WHERE token_hash = ANY(:candidates) AND purpose = :purpose "
    "AND used_at IS NULL AND expires_at > now() RETURNING id"
)


def test_a_step_up_token_is_spent_exactly_once(
    conn: Connection, make_user: Callable[..., str]
) -> None:
    raw = new_token()
    token = _issue(conn, make_user("admin"), raw)
    params = {"candidates": HASHER.candidates(raw), "purpose": "admin.role_change"}

    first = conn.execute(CONSUME, params).scalars().all()
    second = conn.execute(CONSUME, params).scalars().all()

    assert [str(t) for t in first] == [token]
    assert second == []


def test_a_step_up_token_earned_for_one_action_cannot_be_spent_on_another(
    conn: Connection, make_user: Callable[..., str]
) -> None:
    raw = new_token()
    _issue(conn, make_user("admin"), raw)
    spent = conn.execute(
        CONSUME, {"candidates": HASHER.candidates(raw), "purpose": "admin.delete_user"}
    ).all()
    assert spent == []


def test_step_up_tokens_live_at_most_fifteen_minutes(
    make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    error = refused(
        "INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, expires_at) "
        "VALUES (:u, :h, 'admin.role_change', now() + interval '16 minutes')",
        u=make_user(),
        h=HASHER.digest(new_token()),
    )
    assert _constraint(error) == "ck_step_up_tokens_lifetime"


def test_a_step_up_token_is_stored_only_as_a_keyed_digest(
    make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    raw = new_token()
    for stored in (raw.encode(), bytes.fromhex("ab" * 32), b""):
        error = refused(
            "INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, expires_at) "
            "VALUES (:u, :h, 'admin.role_change', now() + interval '5 minutes')",
            u=make_user(),
            h=stored,
        )
        assert _constraint(error) == "ck_step_up_tokens_token_hash_digest"


def test_a_sensitive_action_must_name_its_action(refused: Callable[..., DBAPIError]) -> None:
    error = refused("INSERT INTO auth.audit_logs (event_type) VALUES ('sensitive_action')")
    assert _constraint(error) == "ck_audit_logs_sensitive_action_named"


def test_archive_moves_old_rows_with_all_their_columns(
    conn: Connection, make_user: Callable[..., str]
) -> None:
    actor = make_user("admin")
    old = datetime.now(UTC) - timedelta(days=120)
    # audit_logs is partitioned by month (0015): the month of an old row needs its partition
    conn.execute(
        text("SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, CAST(:t AS date))"),
        {"t": old},
    )
    old_id = conn.execute(
        text(
            "INSERT INTO auth.audit_logs (user_id, actor_user_id, target_user_id, event_type, "
            "action, correlation_id, details, ip_hash, created_at) VALUES (:a, :a, :a, "
            "'sensitive_action', 'LENDING_UPDATE', 'req-1', '{\"k\": 1}', :ip, :t) "
            "RETURNING id"
        ),
        {"a": actor, "t": old, "ip": IP_HASH},
    ).scalar_one()
    recent_id = conn.execute(
        text("INSERT INTO auth.audit_logs (event_type) VALUES ('login') RETURNING id")
    ).scalar_one()

    moved = conn.execute(text("SELECT auth.archive_audit_logs()")).scalar_one()

    assert moved >= 1
    remaining = {r[0] for r in conn.execute(text("SELECT id FROM auth.audit_logs"))}
    assert recent_id in remaining
    assert old_id not in remaining
    archived = conn.execute(
        text(
            "SELECT actor_user_id::text, action, correlation_id, details, ip_hash, "
            "created_at, archived_at > created_at FROM auth.audit_logs_archive WHERE id = :i"
        ),
        {"i": old_id},
    ).one()
    assert archived == (actor, "LENDING_UPDATE", "req-1", {"k": 1}, IP_HASH, old, True)
