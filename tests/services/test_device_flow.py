"""The device authorization grant (RFC 8628): start, approve or deny, poll; guess limits; approval
racing the device's polls, on a real PostgreSQL."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.codes import normalize_user_code
from authmodels.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidTokenError,
    InvalidUserCode,
    SlowDown,
    TooManyUserCodeAttempts,
)
from authmodels.models import User
from authmodels.services import FlowSettings, device_flow, sessions, tokens
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

CLIENT = "tv-app"


def flow_row(db: Session, flow_id: object) -> object:
    return db.execute(text("SELECT * FROM auth.device_flows WHERE id = :id"), {"id": flow_id}).one()


def allow_next_poll(db: Session, flow_id: object) -> None:
    """Pretend the device waited its interval since its last poll."""
    db.execute(
        text(
            "UPDATE auth.device_flows SET last_polled_at = last_polled_at - interval '1 hour' "
            "WHERE id = :id"
        ),
        {"id": flow_id},
    )


def wrong_code(right: str) -> str:
    """A well-formed user code other than ``right``."""
    while True:
        code = device_flow.new_user_code()
        if code != normalize_user_code(right):
            return code


def test_start_returns_codes_and_stores_only_their_digests(
    db: Session, settings: FlowSettings
) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope="openid profile")

    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", auth.user_code)
    assert len(auth.device_code) >= 43 and auth.interval == 5
    row = flow_row(db, auth.flow_id)
    assert row.status == "pending" and row.client_id == CLIENT and row.scope == "openid profile"
    assert settings.hasher.matches(auth.device_code, row.device_code_hash)
    assert settings.hasher.matches(normalize_user_code(auth.user_code), row.user_code_hash)
    assert row.expires_at == auth.expires_at and row.retention_expires_at > row.expires_at
    assert_no_raw_values(
        db, [auth.device_code, auth.user_code, normalize_user_code(auth.user_code)]
    )
    assert auth.device_code not in repr(auth)


def test_user_codes_use_the_base_20_alphabet_evenly() -> None:
    codes = [device_flow.new_user_code() for _ in range(2000)]
    letters = "".join(codes)
    assert set(letters) == set(device_flow.USER_CODE_ALPHABET)
    assert all(len(c) == 8 for c in codes)
    assert device_flow.format_user_code("bcdfghjk") == "BCDF-GHJK"


def test_approved_request_yields_tokens_once(db: Session, user: User) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope="openid")
    typed = auth.user_code.lower().replace("-", " ")  # as a person may type it

    approved = device_flow.approve(db, typed, user)
    issued = device_flow.poll(db, auth.device_code)

    assert approved.id == auth.flow_id and approved.status == "approved"
    assert issued.user_id == user.id and issued.scope == "openid"
    access = tokens.validate_access_token(db, issued.access_token)
    assert (access.client_id, access.scope, access.session_id) == (
        CLIENT,
        "openid",
        issued.session_id,
    )
    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    assert tokens.validate_access_token(db, pair.access_token).client_id == CLIENT  # inherited
    row = flow_row(db, auth.flow_id)
    assert row.status == "consumed" and row.user_id == user.id and row.approved_at is not None
    before = snapshot(db)
    with pytest.raises(InvalidTokenError, match="already exchanged"):
        device_flow.poll(db, auth.device_code)
    assert snapshot(db) == before
    assert [e for e in audit_events(db, user.id) if e[0].startswith("device_flow")] == [
        ("device_flow_approved", "success"),
        ("device_flow_tokens_issued", "success"),
    ]
    assert_no_raw_values(
        db, [auth.device_code, issued.access_token, issued.refresh_token, pair.refresh_token]
    )


def test_poll_binds_the_tokens_to_the_devices_dpop_key(db: Session, user: User) -> None:
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    device_flow.approve(db, auth.user_code, user)
    issued = device_flow.poll(db, auth.device_code, dpop_jkt=jkt)
    assert issued.token_type == "DPoP"
    assert tokens.validate_access_token(db, issued.access_token, dpop_jkt=jkt).dpop_jkt == jkt
    assert (
        sessions.rotate_refresh_token(db, issued.refresh_token, dpop_jkt=jkt).token_type == "DPoP"
    )


def test_pending_poll_then_too_soon_slows_down_by_five_seconds(db: Session) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)

    with pytest.raises(AuthorizationPending):
        device_flow.poll(db, auth.device_code)
    with pytest.raises(SlowDown) as slow:
        device_flow.poll(db, auth.device_code)
    assert slow.value.interval == 10 and slow.value.error == "slow_down"
    with pytest.raises(SlowDown) as slower:
        device_flow.poll(db, auth.device_code)
    assert slower.value.interval == 15

    row = flow_row(db, auth.flow_id)
    assert (row.status, row.poll_count, row.interval_seconds) == ("pending", 3, 15)
    allow_next_poll(db, auth.flow_id)
    with pytest.raises(AuthorizationPending):
        device_flow.poll(db, auth.device_code)
    assert flow_row(db, auth.flow_id).interval_seconds == 15  # stays grown


def test_poll_telemetry_survives_the_callers_rollback(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    with factory() as db:
        auth = device_flow.start(db, client_id=CLIENT, scope=None)
        db.commit()
    for expected in (AuthorizationPending, SlowDown):
        with factory() as db:
            with pytest.raises(expected):
                device_flow.poll(db, auth.device_code)
            db.rollback()
    with factory() as db:
        row = flow_row(db, auth.flow_id)
        assert (row.poll_count, row.interval_seconds) == (2, 10)


def test_denied_request_answers_access_denied(db: Session, user: User) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    assert device_flow.deny(db, auth.user_code, user).status == "denied"
    before = snapshot(db)
    with pytest.raises(AccessDenied) as denied:
        device_flow.poll(db, auth.device_code)
    assert denied.value.error == "access_denied"
    assert snapshot(db) == before
    assert audit_events(db, user.id)[-1] == ("device_flow_denied", "success")
    with pytest.raises(InvalidUserCode):  # decided: the code no longer names a pending request
        device_flow.approve(db, auth.user_code, user)


def test_expired_request_cannot_be_approved_nor_polled(db: Session, user: User) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    db.execute(
        text(
            "UPDATE auth.device_flows SET created_at = created_at - interval '1 hour', "
            "expires_at = now() - interval '1 second' WHERE id = :i"
        ),
        {"i": auth.flow_id},
    )
    before = snapshot(db)
    with pytest.raises(ExpiredToken):
        device_flow.approve(db, auth.user_code, user)
    with pytest.raises(ExpiredToken) as expired:
        device_flow.poll(db, auth.device_code)
    assert expired.value.error == "expired_token"
    assert snapshot(db) == before
    assert audit_events(db, user.id) == []  # a right code that expired is not a wrong guess


def test_approved_request_that_expired_yields_no_tokens(db: Session, user: User) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    device_flow.approve(db, auth.user_code, user)
    db.execute(
        text(
            "UPDATE auth.device_flows SET created_at = created_at - interval '1 hour', "
            "expires_at = now() - interval '1 second' WHERE id = :i"
        ),
        {"i": auth.flow_id},
    )
    before = snapshot(db)
    with pytest.raises(ExpiredToken):
        device_flow.poll(db, auth.device_code)
    assert snapshot(db) == before


def test_unknown_device_code_is_invalid(db: Session) -> None:
    device_flow.start(db, client_id=CLIENT, scope=None)
    before = snapshot(db)
    for presented in ("no-such-device-code", ""):
        with pytest.raises(InvalidTokenError):
            device_flow.poll(db, presented)
    assert snapshot(db) == before


def test_wrong_user_codes_are_counted_audited_and_limited(
    db: Session, user: User, settings: FlowSettings, authmodels_user_factory: UserFactory
) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    before = snapshot(db)

    for attempt in range(settings.user_code_attempts):
        with pytest.raises(InvalidUserCode, match=f"{4 - attempt} attempts left"):
            device_flow.approve(db, wrong_code(auth.user_code), user)
    with pytest.raises(TooManyUserCodeAttempts) as limited:
        device_flow.approve(db, auth.user_code, user)  # even the right code, now
    with pytest.raises(TooManyUserCodeAttempts):
        device_flow.deny(db, wrong_code(auth.user_code), user)

    assert 0 < limited.value.retry_after <= 15 * 60
    assert snapshot(db) == before  # the request is still pending, nothing else changed
    assert (
        audit_events(db, user.id)
        == [("device_flow_user_code_rejected", "failure")] * 5
        + [("device_flow_user_code_rejected", "blocked")] * 2
    )
    other = authmodels_user_factory()  # the limit is per user
    assert device_flow.approve(db, auth.user_code, other).user_id == other.id


def test_wrong_guesses_outside_the_window_no_longer_count(
    db: Session, user: User, settings: FlowSettings
) -> None:
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    for _ in range(settings.user_code_attempts):
        with pytest.raises(InvalidUserCode):
            device_flow.approve(db, wrong_code(auth.user_code), user)
    db.execute(
        text("UPDATE auth.audit_logs SET created_at = created_at - :w WHERE user_id = :u"),
        {"w": settings.user_code_window, "u": user.id},
    )
    assert device_flow.approve(db, auth.user_code, user).status == "approved"


def test_concurrent_wrong_guesses_cannot_exceed_the_limit(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User, settings: FlowSettings
) -> None:
    factory = fresh()
    with factory() as db:
        auth = device_flow.start(db, client_id=CLIENT, scope=None)
        db.commit()
    threads = 16
    barrier = threading.Barrier(threads)
    outcomes: list[type[Exception]] = []
    lock = threading.Lock()

    def guess() -> None:
        with factory() as db:
            barrier.wait()
            try:
                device_flow.approve(db, wrong_code(auth.user_code), fresh_user)
            except (InvalidUserCode, TooManyUserCodeAttempts) as exc:
                with lock:
                    outcomes.append(type(exc))

    workers = [threading.Thread(target=guess) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert outcomes.count(InvalidUserCode) == settings.user_code_attempts
    assert outcomes.count(TooManyUserCodeAttempts) == threads - settings.user_code_attempts


def test_approve_racing_polls_issues_tokens_once_and_never_before_approval(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(device_poll_interval=1)
    with factory() as db:
        auth = device_flow.start(db, client_id=CLIENT, scope="openid")
        db.commit()
    pollers, polls = 8, 25
    barrier = threading.Barrier(pollers + 1)
    issued: list[tuple[float, tokens.IssuedTokens]] = []
    refused: list[str] = []
    committing: list[float] = []
    lock = threading.Lock()
    pending_seen = threading.Event()

    def poll_until_done() -> None:
        with factory() as db:
            barrier.wait()
            for _ in range(polls):
                try:
                    result = device_flow.poll(db, auth.device_code)
                    db.commit()
                except (AuthorizationPending, SlowDown, InvalidTokenError) as exc:
                    db.rollback()
                    with lock:
                        refused.append(type(exc).__name__)
                    if not isinstance(exc, InvalidTokenError):
                        pending_seen.set()
                    time.sleep(random.uniform(0, 0.004))
                    continue
                with lock:
                    issued.append((time.monotonic(), result))
                return

    def approve_midway() -> None:
        with factory() as db:
            barrier.wait()
            pending_seen.wait(timeout=10)  # approve once polls were answered "pending"
            device_flow.approve(db, auth.user_code, fresh_user)
            committing.append(time.monotonic())
            db.commit()

    workers = [threading.Thread(target=poll_until_done) for _ in range(pollers)]
    workers.append(threading.Thread(target=approve_midway))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert len(issued) == 1, (issued, refused)
    [(returned_at, pair)] = issued
    assert returned_at > committing[0]  # no poll got tokens before the approval's commit began
    assert "AuthorizationPending" in refused or "SlowDown" in refused  # polled before approval
    with factory() as db:
        assert flow_row(db, auth.flow_id).status == "consumed"
        # exactly one session and one token pair
        assert count(db, "sessions", "user_id = :u", u=fresh_user.id) == 1
        assert count(db, "access_tokens", "user_id = :u", u=fresh_user.id) == 1
        assert tokens.validate_access_token(db, pair.access_token).scope == "openid"


def test_deny_racing_polls_never_issues_tokens(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh(device_poll_interval=1)
    with factory() as db:
        auth = device_flow.start(db, client_id=CLIENT, scope=None)
        db.commit()
    denied = threading.Event()
    outcomes: list[str] = []

    def poll() -> None:
        with factory() as db:
            for _ in range(40):
                try:
                    device_flow.poll(db, auth.device_code)
                    outcomes.append("tokens")
                    return
                except AccessDenied:
                    outcomes.append("denied")
                    return
                except (AuthorizationPending, SlowDown):
                    db.rollback()
                    time.sleep(0.002)

    def deny() -> None:
        with factory() as db:
            time.sleep(0.01)
            device_flow.deny(db, auth.user_code, fresh_user)
            db.commit()
            denied.set()

    workers = [threading.Thread(target=poll) for _ in range(4)] + [threading.Thread(target=deny)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert denied.is_set() and "tokens" not in outcomes
    with factory() as db:
        assert count(db, "sessions", "user_id = :u", u=fresh_user.id) == 0


def test_device_flow_settings_are_configurable(db: Session, settings: FlowSettings) -> None:
    from authmodels.services import use_settings

    use_settings(db, settings.replace(device_code_ttl=timedelta(minutes=3), device_poll_interval=9))
    auth = device_flow.start(db, client_id=CLIENT, scope=None)
    row = flow_row(db, auth.flow_id)
    assert auth.interval == 9 and row.expires_at - row.created_at == timedelta(minutes=3)
