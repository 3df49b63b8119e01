"""Sessions: creation, validation, touch, refresh-token rotation (reuse, grace window, DPoP) and
revocation, on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    DPoPBindingMismatch,
    InvalidInputError,
    InvalidTokenError,
    RefreshTokenReused,
    SessionExpiredError,
    SessionIdleTimeoutError,
    SessionRevokedError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models import User, token_lookup_params
from authmodels.security.privacy import PrivacyHasher
from authmodels.services import FlowSettings, sessions, tokens, use_settings
from authmodels.testing.factories import UserFactory
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

TTL = timedelta(hours=8)
JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
OTHER_JKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

#: a random value of the keyed-digest shape (``auth.is_token_digest``, revision 0026)
DIGEST = "'\\x01016b'::bytea || sha256(gen_random_uuid()::text::bytea)"


def age(db: Session, table: str, column: str, by: timedelta, row_id: object) -> None:
    """Move a timestamp of one row into the past (with ``created_at``, which must stay before
    ``expires_at``)."""
    also = ", created_at = created_at - :by" if column == "expires_at" else ""
    db.execute(
        text(f"UPDATE auth.{table} SET {column} = {column} - :by{also} WHERE id = :id"),
        {"by": by, "id": row_id},
    )


# --- create ----------------------------------------------------------------------------------


def test_create_session_returns_raw_tokens_once_and_stores_keyed_digests(
    db: Session, user: User, settings: FlowSettings
) -> None:
    issued = sessions.create_session(
        db, user, ttl=TTL, ip="::ffff:203.0.113.9", user_agent="curl/8", dpop_jkt=JKT
    )

    row = db.execute(
        text(
            "SELECT token_hash, digest_scheme, dpop_jkt, ip_hash, ua_hash, refresh_token_hash, "
            "expires_at - created_at AS ttl FROM auth.sessions WHERE id = :id"
        ),
        {"id": issued.session.id},
    ).one()
    assert settings.hasher.matches(issued.session_token, row.token_hash)
    assert row.digest_scheme == 1 and row.dpop_jkt == JKT and row.ttl == TTL
    privacy = PrivacyHasher.from_ring(settings.hash_keys)
    assert row.ip_hash == privacy.ip_hash("203.0.113.9")
    assert row.ua_hash == privacy.ua_hash("curl/8")
    assert row.refresh_token_hash is None  # refresh tokens live in auth.refresh_tokens

    refresh = db.execute(
        text("SELECT * FROM auth.refresh_tokens WHERE session_id = :s"), {"s": issued.session.id}
    ).one()
    assert refresh.id == issued.refresh_token_id and refresh.parent_token_id is None
    assert settings.hasher.matches(issued.refresh_token, refresh.token_hash)
    assert refresh.dpop_jkt == JKT and refresh.expires_at == issued.refresh_expires_at
    assert audit_events(db, user.id) == [("login", "success")]
    assert_no_raw_values(db, [issued.session_token, issued.refresh_token, "203.0.113.9", "curl/8"])
    assert "token" not in repr(issued).replace("tokens=<hidden>", "")


def test_refresh_token_never_outlives_its_session(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=timedelta(minutes=5))
    assert issued.refresh_expires_at == issued.session.expires_at


def test_create_session_refuses_a_non_positive_ttl(db: Session, user: User) -> None:
    before = snapshot(db)
    with pytest.raises(InvalidInputError, match="ttl must be above 0"):
        sessions.create_session(db, user, ttl=timedelta(0))
    assert snapshot(db) == before


# --- validate --------------------------------------------------------------------------------


def test_validate_session_finds_the_session_without_writing(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    before = snapshot(db, "sessions")

    found = sessions.validate_session(db, issued.session_token)

    assert found.id == issued.session.id and found.user_id == user.id
    assert snapshot(db, "sessions") == before  # the hot path does not write


def test_validate_session_touches_once_the_interval_has_passed(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    age(db, "sessions", "last_activity_at", timedelta(minutes=2), issued.session.id)
    stale = db.execute(
        text("SELECT last_activity_at FROM auth.sessions WHERE id = :id"), {"id": issued.session.id}
    ).scalar_one()

    found = sessions.validate_session(db, issued.session_token)

    fresh = db.execute(
        text("SELECT last_activity_at FROM auth.sessions WHERE id = :id"), {"id": issued.session.id}
    ).scalar_one()
    assert fresh > stale and found.last_activity_at == fresh


def test_unknown_session_token_is_invalid(db: Session, user: User) -> None:
    sessions.create_session(db, user, ttl=TTL)
    before = snapshot(db)
    for presented in ("no-such-token", "", "x" * 10_000, "\udcff"):
        with pytest.raises(InvalidTokenError, match=r"not valid|not a token"):
            sessions.validate_session(db, presented)
    assert snapshot(db) == before


def test_revoked_session_is_refused(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    sessions.revoke_session(db, issued.session, reason="logout")
    before = snapshot(db)
    with pytest.raises(SessionRevokedError, match="revoked"):
        sessions.validate_session(db, issued.session_token)
    assert snapshot(db) == before


def test_expired_session_is_refused(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    age(db, "sessions", "expires_at", TTL + timedelta(seconds=1), issued.session.id)
    before = snapshot(db)
    with pytest.raises(SessionExpiredError, match="expired"):
        sessions.validate_session(db, issued.session_token)
    assert snapshot(db) == before


def test_idle_session_is_refused(db: Session, user: User, settings: FlowSettings) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    assert settings.session_idle_timeout is not None
    age(db, "sessions", "last_activity_at", settings.session_idle_timeout, issued.session.id)
    before = snapshot(db)
    with pytest.raises(SessionIdleTimeoutError, match="idle"):
        sessions.validate_session(db, issued.session_token)
    assert snapshot(db) == before

    use_settings(db, settings.replace(session_idle_timeout=None))
    assert sessions.validate_session(db, issued.session_token).id == issued.session.id


def test_dpop_bound_session_needs_a_proof_of_its_key(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL, dpop_jkt=JKT)
    before = snapshot(db)
    for presented in (None, OTHER_JKT):
        with pytest.raises(DPoPBindingMismatch):
            sessions.validate_session(db, issued.session_token, dpop_jkt=presented)
    assert snapshot(db) == before
    assert audit_events(db, user.id)[-2:] == [("dpop_binding_mismatch", "blocked")] * 2
    assert sessions.validate_session(db, issued.session_token, dpop_jkt=JKT).dpop_jkt == JKT


def test_unbound_session_accepts_a_request_with_a_proof(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    assert sessions.validate_session(db, issued.session_token, dpop_jkt=JKT).dpop_jkt is None


def test_touch_refreshes_activity_of_live_sessions_only(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    age(db, "sessions", "last_activity_at", timedelta(minutes=10), issued.session.id)
    assert sessions.touch(db, issued.session) is True
    sessions.revoke_session(db, issued.session)
    assert sessions.touch(db, issued.session.id) is False


# --- legacy sessions (issued before revision 0005) --------------------------------------------


def test_session_issued_before_0005_still_validates_and_refreshes_after_the_upgrade(
    authmodels_migration_runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0004_device_flow_hardening")
    raw = "legacy-session-token-issued-by-the-seed-004-application"
    legacy_hex = hashlib.sha256(raw.encode()).hexdigest()
    [(user_id,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash) VALUES ('old@example.com', 'x') RETURNING id"
    )
    [(session_id,)] = runner.execute(
        "INSERT INTO auth.sessions (user_id, token_hash, expires_at) "
        "VALUES (:u, :h, now() + interval '1 day') RETURNING id",
        {"u": user_id, "h": legacy_hex},
    )
    refresh_raw = "legacy-refresh-token-of-the-same-session"
    runner.execute(
        "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
        "VALUES (:u, :s, :h, now() + interval '1 day')",
        {"u": user_id, "s": session_id, "h": hashlib.sha256(refresh_raw.encode()).hexdigest()},
    )

    runner.upgrade("head")

    settings = FlowSettings(hash_keys=authmodels_keys.hash_keys)
    with Session(runner.engine) as db:
        use_settings(db, settings)
        assert (
            db.execute(
                text("SELECT digest_scheme FROM auth.sessions WHERE id = :i"), {"i": session_id}
            ).scalar_one()
            == 2
        )
        assert sessions.validate_session(db, raw).id == session_id
        # the unkeyed hash a pre-upgrade copy of the database holds is not a token
        with pytest.raises(InvalidTokenError):
            sessions.validate_session(db, legacy_hex)
        # its refresh token rotates into a scheme-1 pair
        assert sessions.rotate_refresh_token(db, refresh_raw).session_id == session_id
        db.rollback()


# --- rotate ----------------------------------------------------------------------------------


def test_rotation_issues_a_new_pair_and_uses_the_old_token(
    db: Session, user: User, settings: FlowSettings
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)

    first = sessions.rotate_refresh_token(db, issued.refresh_token)
    second = sessions.rotate_refresh_token(db, first.refresh_token)

    assert first.session_id == second.session_id == issued.session.id
    assert first.token_type == "Bearer" and first.user_id == user.id
    rows = db.execute(
        text(
            "SELECT id, parent_token_id, used_at IS NOT NULL AS used FROM auth.refresh_tokens "
            "WHERE session_id = :s ORDER BY created_at, used_at NULLS LAST"
        ),
        {"s": issued.session.id},
    ).all()
    assert [(r.id, r.parent_token_id, r.used) for r in rows] == [
        (issued.refresh_token_id, None, True),
        (first.pair_id, issued.refresh_token_id, True),
        (second.pair_id, first.pair_id, False),
    ]
    lineage = db.execute(
        text("SELECT id, rotated_from FROM auth.access_tokens WHERE session_id = :s"),
        {"s": issued.session.id},
    ).all()
    assert sorted(lineage, key=lambda r: r.rotated_from is not None) == [
        (first.pair_id, None),
        (second.pair_id, first.pair_id),
    ]
    assert tokens.validate_access_token(db, second.access_token).id == second.pair_id
    assert db.execute(
        text("SELECT last_rotated_at IS NOT NULL FROM auth.sessions WHERE id = :s"),
        {"s": issued.session.id},
    ).scalar_one()
    assert_no_raw_values(
        db,
        [issued.refresh_token, first.refresh_token, first.access_token, second.access_token,
         second.refresh_token],
    )  # fmt: skip


def test_unknown_refresh_token_is_invalid(db: Session, user: User) -> None:
    sessions.create_session(db, user, ttl=TTL)
    before = snapshot(db)
    with pytest.raises(InvalidTokenError):
        sessions.rotate_refresh_token(db, "not-a-refresh-token")
    assert snapshot(db) == before


def test_expired_refresh_token_is_refused(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    age(db, "refresh_tokens", "expires_at", timedelta(days=30), issued.refresh_token_id)
    before = snapshot(db)
    with pytest.raises(TokenExpiredError):
        sessions.rotate_refresh_token(db, issued.refresh_token)
    assert snapshot(db) == before


def test_refresh_token_of_an_expired_session_is_refused(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    age(db, "sessions", "expires_at", TTL + timedelta(seconds=1), issued.session.id)
    before = snapshot(db)
    with pytest.raises(SessionExpiredError):
        sessions.rotate_refresh_token(db, issued.refresh_token)
    assert snapshot(db) == before


def test_refresh_token_of_a_revoked_session_is_refused(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    sessions.revoke_session(db, issued.session.id, reason="admin")
    before = snapshot(db)
    with pytest.raises(SessionRevokedError):
        sessions.rotate_refresh_token(db, issued.refresh_token)
    assert snapshot(db) == before


def test_dpop_bound_refresh_token_rotates_only_with_its_key(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL, dpop_jkt=JKT)
    before = snapshot(db)
    for presented in (None, OTHER_JKT):
        with pytest.raises(DPoPBindingMismatch):
            sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=presented)
    assert snapshot(db) == before  # not used, nothing issued: the rightful client still can
    assert audit_events(db, user.id)[-1] == ("dpop_binding_mismatch", "blocked")

    pair = sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=JKT)
    assert pair.token_type == "DPoP"
    assert count(db, "access_tokens", "id = :i AND dpop_jkt = :j", i=pair.pair_id, j=JKT) == 1
    assert count(db, "refresh_tokens", "id = :i AND dpop_jkt = :j", i=pair.pair_id, j=JKT) == 1


def test_stolen_bound_token_replayed_without_the_key_does_not_revoke_the_family(
    db: Session, user: User
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL, dpop_jkt=JKT)
    sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=JKT)
    before = snapshot(db)
    with pytest.raises(DPoPBindingMismatch):
        sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=OTHER_JKT)
    assert snapshot(db) == before


def test_reused_refresh_token_revokes_family(
    db: Session, user: User, settings: FlowSettings
) -> None:
    use_settings(db, settings.replace(refresh_grace_window=timedelta(0)))
    issued = sessions.create_session(db, user, ttl=TTL)
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    other = sessions.create_session(db, user, ttl=TTL)  # another device: untouched

    with pytest.raises(RefreshTokenReused, match="already used"):
        sessions.rotate_refresh_token(db, issued.refresh_token)

    assert (
        count(db, "refresh_tokens", "session_id = :s AND revoked_at IS NULL", s=issued.session.id)
        == 0
    )
    assert (
        count(db, "access_tokens", "session_id = :s AND revoked_at IS NULL", s=issued.session.id)
        == 0
    )
    assert count(db, "refresh_tokens", "session_id = :s", s=issued.session.id) == 2  # no new pair
    assert (
        db.execute(
            text("SELECT revoked_reason FROM auth.sessions WHERE id = :s"), {"s": issued.session.id}
        ).scalar_one()
        == "refresh_token_reused"
    )
    assert audit_events(db, user.id)[-1] == ("refresh_token_reused", "blocked")
    with pytest.raises(SessionRevokedError):
        sessions.rotate_refresh_token(db, pair.refresh_token)
    with pytest.raises(TokenRevokedError):
        tokens.validate_access_token(db, pair.access_token)
    assert sessions.validate_session(db, other.session_token).id == other.session.id


def test_reuse_after_the_grace_window_revokes_the_family(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    sessions.rotate_refresh_token(db, issued.refresh_token)
    age(db, "refresh_tokens", "used_at", timedelta(minutes=1), issued.refresh_token_id)
    with pytest.raises(RefreshTokenReused):
        sessions.rotate_refresh_token(db, issued.refresh_token)


def test_reuse_once_the_successor_was_used_revokes_the_family(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    sessions.rotate_refresh_token(db, pair.refresh_token)
    with pytest.raises(RefreshTokenReused):  # within the window, but the client moved on
        sessions.rotate_refresh_token(db, issued.refresh_token)


def test_grace_window_replays_the_same_successor_without_storing_it(
    db: Session, user: User
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    before = snapshot(db)

    again = sessions.rotate_refresh_token(db, issued.refresh_token)

    assert again == pair
    assert snapshot(db) == before  # nothing issued, nothing revoked
    assert audit_events(db, user.id)[-1] == ("refresh_token_grace_replay", "success")
    assert_no_raw_values(db, [pair.refresh_token, pair.access_token])


def test_grace_replay_is_refused_for_another_dpop_key(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL, dpop_jkt=JKT)
    sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=JKT)
    with pytest.raises(DPoPBindingMismatch):
        sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=OTHER_JKT)


def test_reuse_revocation_survives_the_callers_rollback(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(refresh_grace_window=timedelta(0))
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        sessions.rotate_refresh_token(db, issued.refresh_token)
        db.commit()
    with factory() as db:
        with pytest.raises(RefreshTokenReused):
            sessions.rotate_refresh_token(db, issued.refresh_token)
        db.rollback()  # what a web framework does on an exception
    with factory() as db:
        assert count(db, "sessions", "id = :s AND revoked_at IS NOT NULL", s=issued.session.id) == 1
        assert ("refresh_token_reused", "blocked") in audit_events(db, fresh_user.id)


# --- 32 concurrent rotations of one token ------------------------------------------------------


def _rotate_concurrently(
    factory: sessionmaker[Session], refresh_token: str, threads: int = 32
) -> list[object]:
    barrier = threading.Barrier(threads)
    outcomes: list[object] = [None] * threads

    def rotate(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                outcomes[index] = sessions.rotate_refresh_token(db, refresh_token)
                db.commit()
            except (RefreshTokenReused, SessionRevokedError, TokenRevokedError) as exc:
                db.rollback()
                outcomes[index] = exc

    workers = [threading.Thread(target=rotate, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    return outcomes


def test_32_concurrent_rotations_within_the_grace_window_all_get_the_one_new_pair(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()  # default grace window: 15 s
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        db.commit()

    outcomes = _rotate_concurrently(factory, issued.refresh_token)

    assert all(isinstance(o, tokens.IssuedTokens) for o in outcomes), outcomes
    assert len({(o.access_token, o.refresh_token, o.pair_id) for o in outcomes}) == 1  # type: ignore[attr-defined]
    with factory() as db:
        assert count(db, "refresh_tokens", "session_id = :s", s=issued.session.id) == 2
        assert count(db, "access_tokens", "session_id = :s", s=issued.session.id) == 1
        assert count(db, "sessions", "id = :s AND revoked_at IS NULL", s=issued.session.id) == 1
        events = audit_events(db, fresh_user.id)
        assert events.count(("refresh_token_grace_replay", "success")) == 31
        pair = outcomes[0]
        assert isinstance(pair, tokens.IssuedTokens)
        assert sessions.rotate_refresh_token(db, pair.refresh_token).session_id == issued.session.id


def test_32_concurrent_rotations_without_grace_revoke_the_family(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(refresh_grace_window=timedelta(0))
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        db.commit()

    outcomes = _rotate_concurrently(factory, issued.refresh_token)

    winners = [o for o in outcomes if isinstance(o, tokens.IssuedTokens)]
    reused = [o for o in outcomes if isinstance(o, RefreshTokenReused)]
    late = [o for o in outcomes if isinstance(o, SessionRevokedError)]
    assert len(winners) == 1 and reused and len(winners) + len(reused) + len(late) == 32
    with factory() as db:
        # exactly one new pair was issued, and the whole family is revoked with its session
        assert count(db, "refresh_tokens", "session_id = :s", s=issued.session.id) == 2
        assert count(db, "access_tokens", "session_id = :s", s=issued.session.id) == 1
        for table in ("refresh_tokens", "access_tokens"):
            assert (
                count(db, table, "session_id = :s AND revoked_at IS NULL", s=issued.session.id) == 0
            )
        assert count(db, "sessions", "id = :s AND NOT is_active", s=issued.session.id) == 1
        with pytest.raises(SessionRevokedError):
            sessions.rotate_refresh_token(db, winners[0].refresh_token)


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_session_revokes_its_tokens_and_is_audited(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)

    assert sessions.revoke_session(db, issued.session, reason="logout") is True
    assert sessions.revoke_session(db, issued.session, reason="logout") is False

    assert issued.session.revoked_reason == "logout" and not issued.session.is_active
    assert (
        count(db, "refresh_tokens", "session_id = :s AND revoked_at IS NULL", s=issued.session.id)
        == 0
    )
    assert audit_events(db, user.id)[-1] == ("logout", "success")
    with pytest.raises(SessionRevokedError):
        sessions.validate_session(db, issued.session_token)
    with pytest.raises(TokenRevokedError):
        tokens.validate_access_token(db, pair.access_token)
    with pytest.raises(SessionRevokedError):
        sessions.rotate_refresh_token(db, pair.refresh_token)


def test_revoke_all_sessions_keeps_the_current_one_and_other_users(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    mine = [sessions.create_session(db, user, ttl=TTL) for _ in range(3)]
    theirs = sessions.create_session(db, authmodels_user_factory(), ttl=TTL)

    revoked = sessions.revoke_all_sessions(
        db, user, reason="password_change", except_session=mine[0].session
    )

    assert revoked == 2
    assert sessions.validate_session(db, mine[0].session_token).id == mine[0].session.id
    assert sessions.validate_session(db, theirs.session_token).id == theirs.session.id
    for issued in mine[1:]:
        with pytest.raises(SessionRevokedError):
            sessions.validate_session(db, issued.session_token)
    assert audit_events(db, user.id)[-1] == ("session_revoked", "success")
    assert sessions.revoke_all_sessions(db, user.id, reason="password_change") == 1


def test_validated_session_is_persistent_unmodified_and_refreshed_on_each_validation(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        db.commit()
    with factory() as db:
        found = sessions.validate_session(db, issued.session_token)
        state = inspect(found)
        assert state.persistent and not state.modified and not db.dirty
        assert sessions.validate_session(db, issued.session_token) is found  # one identity
        db.commit()
        with factory() as other:
            other.execute(
                text("UPDATE auth.sessions SET device_fingerprint = 'tv' WHERE id = :i"),
                {"i": issued.session.id},
            )
            other.commit()
        assert sessions.validate_session(db, issued.session_token) is found
        assert found.device_fingerprint == "tv"  # the object in the identity map was refreshed
        with factory() as other:
            sessions.revoke_session(other, issued.session.id, reason="admin")
            other.commit()
        with pytest.raises(SessionRevokedError):
            sessions.validate_session(db, issued.session_token)


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        (sessions._LOOKUP_SESSION.clause.text, "ix_sessions_token_hash"),
        (sessions._ROTATE.clause.text, "ix_refresh_tokens_token_hash"),
        # the slow path finds a *used* or revoked token too: the index is no longer partial
        (sessions._INSPECT_REFRESH_TOKEN.text, "ix_refresh_tokens_token_hash"),
    ],
    ids=["validate", "rotate", "inspect-refused-token"],
)
def test_token_lookups_are_served_by_the_token_hash_indexes(
    db: Session, user: User, settings: FlowSettings, statement: str, index: str
) -> None:
    # a few thousand sessions with a refresh token each, and statistics, for a realistic plan
    db.execute(
        text(
            "INSERT INTO auth.sessions (id, user_id, token_hash, expires_at) "
            f"SELECT md5('s' || i)::uuid, :u, {DIGEST}, "
            "now() + interval '1 day' FROM generate_series(1, 5000) AS i"
        ),
        {"u": user.id},
    )
    db.execute(
        text(
            "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
            f"SELECT :u, md5('s' || i)::uuid, {DIGEST}, "
            "now() + interval '1 day' FROM generate_series(1, 5000) AS i"
        ),
        {"u": user.id},
    )
    db.execute(text("ANALYZE auth.sessions"))
    db.execute(text("ANALYZE auth.refresh_tokens"))
    params = {
        **token_lookup_params(settings.hasher, "some-token"),
        "idle": timedelta(minutes=30),
        "touch": timedelta(minutes=1),
        "grace": timedelta(seconds=15),
        "dpop_jkt": None,
        "pair_id": None,
        "refresh_hash": b"",
        "access_hash": b"",
        "refresh_ttl": timedelta(days=1),
        "access_ttl": timedelta(minutes=5),
    }
    used = {k: v for k, v in params.items() if f":{k}" in statement}
    plan = "\n".join(db.execute(text(f"EXPLAIN {statement}"), used).scalars())
    assert f"Index Scan using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
