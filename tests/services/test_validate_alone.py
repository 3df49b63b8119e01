"""``sessions.validate_session_alone``: the checks and errors of ``validate_session`` in one round
trip to the server, the touch committed on its own, on a real PostgreSQL."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, pool, text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.db import create_db_engine
from authmodels.errors import (
    DPoPBindingMismatch,
    InvalidTokenError,
    SessionExpiredError,
    SessionIdleTimeoutError,
    SessionRevokedError,
)
from authmodels.models import User
from authmodels.services import FlowSettings, sessions
from authmodels.services._fastpath import psycopg_connection
from authmodels.services.settings import SETTINGS_KEY
from tests.services.helpers import snapshot
from tests.services.test_sessions import JKT, OTHER_JKT, TTL, age


def _refusal(
    validate: Callable[..., object], db: Session, token: str, jkt: str | None
) -> type[BaseException] | None:
    refusals = (
        InvalidTokenError,
        SessionRevokedError,
        SessionExpiredError,
        SessionIdleTimeoutError,
        DPoPBindingMismatch,
    )
    try:
        validate(db, token, dpop_jkt=jkt)
    except refusals as exc:
        return type(exc)
    return None


def test_refuses_what_validate_session_refuses_with_the_same_errors_and_writes_nothing(
    db: Session, user: User, settings: FlowSettings
) -> None:
    live = sessions.create_session(db, user, ttl=TTL)
    revoked = sessions.create_session(db, user, ttl=TTL)
    sessions.revoke_session(db, revoked.session, reason="logout")
    expired = sessions.create_session(db, user, ttl=TTL)
    age(db, "sessions", "expires_at", TTL + timedelta(seconds=1), expired.session.id)
    idle = sessions.create_session(db, user, ttl=TTL)
    assert settings.session_idle_timeout is not None
    age(db, "sessions", "last_activity_at", settings.session_idle_timeout, idle.session.id)
    bound = sessions.create_session(db, user, ttl=TTL, dpop_jkt=JKT)
    # every refusal is also due a touch: a refused validation must not make it
    for issued in (revoked, expired, bound):
        age(db, "sessions", "last_activity_at", timedelta(minutes=2), issued.session.id)
    cases: list[tuple[str, str | None, type[BaseException] | None]] = [
        (live.session_token, None, None),
        (live.session_token, JKT, None),
        ("no-such-token", None, InvalidTokenError),
        ("\udcff", None, InvalidTokenError),
        (revoked.session_token, None, SessionRevokedError),
        (expired.session_token, None, SessionExpiredError),
        (idle.session_token, None, SessionIdleTimeoutError),
        (bound.session_token, None, DPoPBindingMismatch),
        (bound.session_token, OTHER_JKT, DPoPBindingMismatch),
        (bound.session_token, JKT, None),
    ]
    for token, jkt, expected in cases:
        before = snapshot(db, "sessions")
        assert _refusal(sessions.validate_session, db, token, jkt) is expected
        alone = _refusal(sessions.validate_session_alone, db, token, jkt)
        assert alone is expected, (token[:8], jkt)
        if expected is not None:
            assert snapshot(db, "sessions") == before


@pytest.fixture
def fresh_session(fresh: Callable[..., sessionmaker[Session]], fresh_user: User) -> Any:
    """A committed session of ``fresh_user``, last active three minutes ago."""
    with fresh()() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        age(db, "sessions", "last_activity_at", timedelta(minutes=3), issued.session.id)
        db.commit()
    return issued


def found_id(issued: Any) -> uuid.UUID:
    return issued.session.id  # type: ignore[no-any-return]


@contextmanager
def traced(db: Session) -> Iterator[list[str]]:
    """The protocol messages the session's connection sends meanwhile (libpq's trace)."""
    driver = psycopg_connection(db)
    assert driver is not None
    with traced_driver(driver) as sent:
        yield sent


@contextmanager
def traced_driver(
    driver: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> Iterator[list[str]]:
    """The protocol messages a psycopg connection (sync or asyncio) sends meanwhile."""
    sent: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace"
        with path.open("w") as trace:
            driver.pgconn.trace(trace.fileno())
            try:
                yield sent
            finally:
                driver.pgconn.untrace()
        # a line: [timestamp] direction ("F": from the client) length type ...
        for fields in (line.split("\t") for line in path.read_text().splitlines()):
            if "F" in fields:
                sent.append(fields[fields.index("F") + 2])


def round_trips(messages: list[str]) -> int:
    """Round trips among frontend messages: each simple Query, and each Sync that ends an
    extended-protocol exchange."""
    return sum(1 for message in messages if message.startswith(("Query", "Sync")))


def _last_activity(engine: Engine, session_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT last_activity_at FROM auth.sessions WHERE id = :id"), {"id": session_id}
        ).scalar_one()


def test_a_request_session_validates_in_one_round_trip_and_its_touch_is_committed_at_once(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_session: Any,
    authmodels_fresh_engine: Engine,
) -> None:
    with fresh()() as db:
        # the first use on a connection prepares the statement (a round trip of its own)
        sessions.validate_session_alone(db, fresh_session.session_token)
        with fresh()() as other:
            age(
                other, "sessions", "last_activity_at", timedelta(minutes=3), found_id(fresh_session)
            )
            other.commit()
        stale = _last_activity(authmodels_fresh_engine, fresh_session.session.id)
        with traced(db) as sent:
            found = sessions.validate_session_alone(db, fresh_session.session_token)
        assert round_trips(sent) == 1, sent
        touched = _last_activity(authmodels_fresh_engine, fresh_session.session.id)
        assert touched > stale and found.last_activity_at == touched
        driver = psycopg_connection(db)
        assert driver is not None and not driver.autocommit  # the connection as it was
        db.rollback()  # the request failing afterwards does not undo the touch
    assert _last_activity(authmodels_fresh_engine, fresh_session.session.id) == touched


def test_inside_an_open_transaction_it_runs_in_that_transaction(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_session: Any,
    authmodels_fresh_engine: Engine,
) -> None:
    stale = _last_activity(authmodels_fresh_engine, fresh_session.session.id)
    with fresh()() as db:
        db.execute(text("SELECT 1"))  # the request's transaction is open
        found = sessions.validate_session_alone(db, fresh_session.session_token)
        assert found.last_activity_at > stale
        db.rollback()
    assert _last_activity(authmodels_fresh_engine, fresh_session.session.id) == stale


@pytest.fixture
def lookup_role(authmodels_fresh_engine: Engine) -> Iterator[str]:
    """A login role registered with ``auth.grant_service_role``: a validation pool's role."""
    role = f"lookup_{uuid.uuid4().hex[:10]}"
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text("SELECT auth.grant_service_role(:r)"), {"r": role})
    try:
        yield role
    finally:
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text("SELECT auth.revoke_service_role(:r)"), {"r": role})
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def test_under_row_level_security_a_service_role_login_validates_in_one_round_trip(
    fresh_session: Any,
    lookup_role: str,
    authmodels_fresh_database: Any,
    settings: FlowSettings,
    authmodels_roles: Any,
) -> None:
    info = {SETTINGS_KEY: settings}
    lookups = create_db_engine(
        authmodels_fresh_database.set(username=lookup_role), poolclass=pool.NullPool
    )
    app = create_db_engine(authmodels_roles.url(authmodels_fresh_database), poolclass=pool.NullPool)
    try:
        with Session(lookups, info=info) as db:
            sessions.validate_session_alone(db, fresh_session.session_token)  # prepares
            with traced(db) as sent:
                found = sessions.validate_session_alone(db, fresh_session.session_token)
            assert found.id == fresh_session.session.id and round_trips(sent) == 1
        with Session(app, info=info) as db, pytest.raises(InvalidTokenError):
            # the application role sees no session before the user is known
            sessions.validate_session_alone(db, fresh_session.session_token)
    finally:
        lookups.dispose()
        app.dispose()


def test_validate_session_in_a_transaction_of_its_own_costs_threeround_trips(
    fresh: Callable[..., sessionmaker[Session]], fresh_session: Any
) -> None:
    """What the new function saves (and a check that the trace counts what it should)."""
    with fresh()() as db:
        sessions.validate_session(db, fresh_session.session_token)  # prepares
        db.commit()
        with traced(db) as sent:
            sessions.validate_session(db, fresh_session.session_token)
            db.commit()
        assert round_trips(sent) >= 3, sent
