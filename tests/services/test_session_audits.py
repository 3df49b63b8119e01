"""Session audits: a row for a session's creation, each rotation, its revocation, a detected
reuse and a DPoP mismatch, written with the event (the refusals' rows committed on their own);
validating a session writes none."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import DPoPBindingMismatch, RefreshTokenReused
from authmodels.models import User
from authmodels.services import sessions, tokens
from tests.services.helpers import writes

TTL = timedelta(hours=1)


def audits(db: Session, session_id: object) -> list[tuple[str, dict]]:
    """(action, details) of a session's audit rows, in the order they were written."""
    return [
        (row.action, row.details)
        for row in db.execute(
            text(
                "SELECT action::text, details FROM auth.session_audits "
                "WHERE session_id = :s ORDER BY created_at, ctid"
            ),
            {"s": session_id},
        )
    ]


def test_creation_rotation_and_revocation_each_write_their_row(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL, ip="192.0.2.1", user_agent="UA")
    sid = issued.session.id
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    sessions.rotate_refresh_token(db, pair.refresh_token)
    sessions.revoke_session(db, sid)

    assert [a for a, _ in audits(db, sid)] == ["created", "rotated", "rotated", "revoked"]
    created, first_rotation = audits(db, sid)[0][1], audits(db, sid)[1][1]
    assert created == {"dpop_bound": False, "device_id": None}
    assert first_rotation == {
        "refresh_token_id": str(issued.refresh_token_id),
        "pair_id": str(pair.pair_id),
    }
    assert audits(db, sid)[3][1] == {"reason": "logout"}
    assert db.execute(
        text("SELECT ip_hash IS NOT NULL AND ua_hash IS NOT NULL FROM auth.session_audits "
             "WHERE session_id = :s AND action = 'created'"),
        {"s": sid},
    ).scalar_one()  # fmt: skip


def test_revoking_every_session_writes_a_row_for_each(db: Session, user: User) -> None:
    ids = [sessions.create_session(db, user, ttl=TTL).session.id for _ in range(3)]
    assert sessions.revoke_all_sessions(db, user, reason="compromised") == 3
    for sid in ids:
        assert audits(db, sid)[-1] == ("revoked", {"reason": "compromised"})


def test_validating_a_session_writes_no_audit(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    sessions.validate_session(db, issued.session_token)  # the first touch may be due
    before = writes(db)
    for _ in range(3):
        sessions.validate_session(db, issued.session_token)
    assert writes(db) == before
    assert [a for a, _ in audits(db, issued.session.id)] == ["created"]


def test_a_grace_replay_is_recorded_as_a_refresh(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    first = sessions.rotate_refresh_token(db, issued.refresh_token)
    again = sessions.rotate_refresh_token(db, issued.refresh_token)  # a second tab, at once
    assert again.pair_id == first.pair_id
    assert audits(db, issued.session.id)[-1] == (
        "refreshed",
        {"grace_replay": True, "pair_id": str(first.pair_id)},
    )


def test_reuse_and_dpop_mismatch_rows_survive_the_callers_rollback(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(refresh_grace_window=timedelta(0))
    jkt = secrets.token_urlsafe(32)
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        bound = sessions.create_session(db, fresh_user, ttl=TTL, dpop_jkt=jkt)
        access = tokens.issue_access_token(db, fresh_user, dpop_jkt=jkt)  # outside a session
        sessions.rotate_refresh_token(db, issued.refresh_token)
        db.commit()

    for refuse, error in [
        (lambda db: sessions.rotate_refresh_token(db, issued.refresh_token), RefreshTokenReused),
        (lambda db: sessions.validate_session(db, bound.session_token), DPoPBindingMismatch),
        (lambda db: sessions.rotate_refresh_token(db, bound.refresh_token), DPoPBindingMismatch),
        (lambda db: tokens.validate_access_token(db, access.token), DPoPBindingMismatch),
    ]:
        with factory() as db, pytest.raises(error), db.begin():  # rolled back on the error
            refuse(db)

    with factory() as db:
        assert [a for a, _ in audits(db, issued.session.id)] == [
            "created", "rotated", "revoked", "reuse_detected",
        ]  # fmt: skip
        assert audits(db, issued.session.id)[-2][1] == {"reason": "refresh_token_reused"}
        assert [a for a, _ in audits(db, bound.session.id)] == [
            "created", "dpop_mismatch", "dpop_mismatch",
        ]  # fmt: skip
        unbound = db.execute(
            text("SELECT count(*) FROM auth.session_audits WHERE session_id IS NULL "
                 "AND action = 'dpop_mismatch' AND details->>'access_token_id' = :a"),
            {"a": str(access.id)},
        ).scalar_one()  # fmt: skip
        assert unbound == 1
