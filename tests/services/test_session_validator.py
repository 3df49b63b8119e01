"""``sessions.SessionValidator``: the checks, errors and touch of ``validate_session_alone``
without an ORM ``Session``, on connections of its own in autocommit, on a real PostgreSQL.

Under the production roles, directly and through PgBouncer:
``tests/services/test_production_roles.py``."""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from authmodels import errors
from authmodels.db import create_async_db_engine, create_db_engine
from authmodels.models import User
from authmodels.services import FlowSettings, sessions
from tests.services.helpers import snapshot
from tests.services.test_sessions import JKT, OTHER_JKT, TTL, age
from tests.services.test_validate_alone import round_trips, traced_driver


@pytest.fixture
def validator(authmodels_fresh_engine: Engine, settings: FlowSettings) -> Iterator[Any]:
    made = sessions.SessionValidator(authmodels_fresh_engine, settings=settings)
    try:
        yield made
    finally:
        made.close()


def _issued(
    fresh: Callable[..., sessionmaker[Session]], user: User, *, due: bool = False, **kwargs: Any
) -> Any:
    """A committed session of ``user``; ``due``: last active three minutes ago (a touch due)."""
    with fresh()() as db:
        issued = sessions.create_session(db, user, ttl=TTL, **kwargs)
        if due:
            age(db, "sessions", "last_activity_at", timedelta(minutes=3), issued.session.id)
        db.commit()
    return issued


def _outcome(call: Callable[[], object]) -> type[BaseException] | None:
    try:
        call()
    except errors.AuthModelsError as exc:
        return type(exc)
    return None


def test_refuses_what_validate_session_refuses_with_the_same_errors_and_writes_nothing(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    validator: Any,
    settings: FlowSettings,
) -> None:
    with fresh()() as db:
        live = sessions.create_session(db, fresh_user, ttl=TTL)
        revoked = sessions.create_session(db, fresh_user, ttl=TTL)
        sessions.revoke_session(db, revoked.session, reason="logout")
        expired = sessions.create_session(db, fresh_user, ttl=TTL)
        age(db, "sessions", "expires_at", TTL + timedelta(seconds=1), expired.session.id)
        idle = sessions.create_session(db, fresh_user, ttl=TTL)
        assert settings.session_idle_timeout is not None
        age(db, "sessions", "last_activity_at", settings.session_idle_timeout, idle.session.id)
        bound = sessions.create_session(db, fresh_user, ttl=TTL, dpop_jkt=JKT)
        # every refusal is also due a touch: a refused validation must not make it
        for issued in (revoked, expired, bound):
            age(db, "sessions", "last_activity_at", timedelta(minutes=2), issued.session.id)
        db.commit()
    cases: list[tuple[str, str | None, type[BaseException] | None]] = [
        (live.session_token, None, None),
        (live.session_token, JKT, None),
        ("no-such-token", None, errors.InvalidTokenError),
        ("\udcff", None, errors.InvalidTokenError),
        (revoked.session_token, None, errors.SessionRevokedError),
        (expired.session_token, None, errors.SessionExpiredError),
        (idle.session_token, None, errors.SessionIdleTimeoutError),
        (bound.session_token, None, errors.DPoPBindingMismatch),
        (bound.session_token, OTHER_JKT, errors.DPoPBindingMismatch),
    ]
    for token, jkt, expected in cases:
        with fresh()() as db:
            before = snapshot(db, "sessions")
            by_orm = _outcome(lambda: sessions.validate_session(db, token, dpop_jkt=jkt))  # noqa: B023
            db.rollback()
        alone = _outcome(lambda: validator.validate(token, dpop_jkt=jkt))  # noqa: B023
        assert by_orm is expected and alone is expected, (token, jkt)
        if expected is not None:
            with fresh()() as db:
                assert snapshot(db, "sessions") == before
    with fresh()() as db:  # each DPoP refusal was audited, committed on its own
        mismatches = db.execute(
            text("SELECT count(*) FROM auth.session_audits WHERE action = 'dpop_mismatch'")
        ).scalar_one()
    assert mismatches == 4  # two by validate_session, two by the validator


def test_returns_the_session_and_commits_its_touch_in_one_round_trip(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    validator: Any,
    authmodels_fresh_engine: Engine,
) -> None:
    issued = _issued(fresh, fresh_user, dpop_jkt=JKT)
    validator.validate(issued.session_token, dpop_jkt=JKT)  # connects and prepares
    with fresh()() as db:
        age(db, "sessions", "last_activity_at", timedelta(minutes=3), issued.session.id)
        db.commit()
    (conn,) = validator._connections._idle  # the one connection it made
    with traced_driver(conn) as sent:
        found = validator.validate(issued.session_token, dpop_jkt=JKT)
    assert round_trips(sent) == 1, sent
    with authmodels_fresh_engine.connect() as conn2:
        row = conn2.execute(
            text(
                "SELECT id, user_id, created_at, expires_at, last_activity_at, device_id, "
                "dpop_jkt, last_activity_at > now() - interval '1 minute' FROM auth.sessions "
                "WHERE id = :id"
            ),
            {"id": issued.session.id},
        ).one()
    assert found == sessions.ValidSession(*row[:7]) and row[7]  # touched, and committed
    assert found.user_id == fresh_user.id and found.dpop_jkt == JKT
    # not due again: a second validation writes nothing
    again = validator.validate(issued.session_token, dpop_jkt=JKT)
    assert again.last_activity_at == found.last_activity_at


def test_bad_input_is_refused_before_any_connection_is_made(settings: FlowSettings) -> None:
    nowhere = create_db_engine(
        URL.create("postgresql+psycopg", host="127.0.0.1", port=1, database="none"),
        poolclass=pool.NullPool,
    )
    validator = sessions.SessionValidator(nowhere, settings=settings)
    for token in ("", "x" * 100_000, None, b"bytes", "nul\x00"):
        # a presented credential that cannot be one: refused as not valid
        with pytest.raises(errors.InvalidTokenError, match="sign in again"):
            validator.validate(token)  # type: ignore[arg-type]
    for jkt in ("not a thumbprint", 42):
        with pytest.raises(errors.InvalidInputError, match="dpop_jkt"):
            validator.validate("token", dpop_jkt=jkt)  # type: ignore[arg-type]
    assert not validator._connections._idle


def test_a_validator_is_made_from_a_synchronous_psycopg_engine_and_sane_limits(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL, settings: FlowSettings
) -> None:
    async_engine = create_async_db_engine(authmodels_fresh_database)
    for engine in (async_engine, "postgresql://", None):
        with pytest.raises(errors.ConfigurationError, match="synchronous SQLAlchemy engine"):
            sessions.SessionValidator(engine, settings=settings)  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match="FlowSettings"):
        sessions.SessionValidator(authmodels_fresh_engine, settings={})  # type: ignore[arg-type]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(errors.ConfigurationError, match="max_connections"):
            sessions.SessionValidator(
                authmodels_fresh_engine, settings=settings, max_connections=bad
            )
    for bad_timeout in (0, -1.0, "30", float("nan")):
        with pytest.raises(errors.ConfigurationError, match="timeout"):
            sessions.SessionValidator(
                authmodels_fresh_engine, settings=settings, timeout=bad_timeout
            )


def _backends(engine: Engine, application_name: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            ).scalars()
        )


@pytest.fixture
def named_engine(authmodels_fresh_database: URL) -> Iterator[tuple[Engine, str]]:
    """An engine whose connections carry an application name of their own, and the name."""
    name = f"validator_{uuid.uuid4().hex[:8]}"
    engine = create_db_engine(authmodels_fresh_database, connect_args={"application_name": name})
    try:
        yield engine, name
    finally:
        engine.dispose()


def test_concurrent_requests_share_at_most_max_connections(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    named_engine: tuple[Engine, str],
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    engine, name = named_engine
    issued = [_issued(fresh, fresh_user) for _ in range(4)]
    validator = sessions.SessionValidator(engine, settings=settings, max_connections=3)
    failures: list[BaseException] = []
    seen: set[uuid.UUID] = set()
    most: list[int] = []

    def worker(index: int) -> None:
        try:
            for _ in range(60):
                seen.add(validator.validate(issued[index % 4].session_token).id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        most.append(len(_backends(authmodels_fresh_engine, name)))
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    validator.close()
    assert not failures, failures[:3]
    assert seen == {i.session.id for i in issued}
    assert 1 <= max(most) <= 3, max(most)
    # closed: their backends end (the server takes a moment to drop them from its view)
    deadline = time.monotonic() + 10
    while _backends(authmodels_fresh_engine, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(authmodels_fresh_engine, name) == []


def test_a_request_waits_for_a_busy_connection_then_gets_a_typed_error(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    issued = _issued(fresh, fresh_user, due=True)
    validator = sessions.SessionValidator(
        authmodels_fresh_engine, settings=settings, max_connections=1, timeout=0.3
    )
    held = threading.Event()
    first: list[object] = []
    with fresh()() as locker:
        # the touch is due: the first validation waits on this row lock, holding the only slot
        locker.execute(
            text("SELECT 1 FROM auth.sessions WHERE id = :id FOR UPDATE"),
            {"id": issued.session.id},
        )

        def blocked() -> None:
            held.set()
            first.append(validator.validate(issued.session_token))

        thread = threading.Thread(target=blocked)
        thread.start()
        held.wait()
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(errors.DatabaseUnavailableError, match="max_connections"):
            validator.validate(issued.session_token)
        assert time.monotonic() - started >= 0.25
        locker.rollback()
    thread.join()
    assert isinstance(first[0], sessions.ValidSession)
    validator.validate(issued.session_token)  # the slot is free again
    validator.close()


def test_a_connection_that_died_while_idle_is_replaced_without_failing_the_request(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    validator: Any,
    authmodels_fresh_engine: Engine,
) -> None:
    issued = _issued(fresh, fresh_user)
    validator.validate(issued.session_token)
    (conn,) = validator._connections._idle
    killed = conn.info.backend_pid
    with authmodels_fresh_engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": killed}).scalar()
    time.sleep(0.2)
    assert validator.validate(issued.session_token).id == issued.session.id
    (replacement,) = validator._connections._idle
    assert replacement.info.backend_pid != killed and conn.closed


# --- as production runs it ----------------------------------------------------------------------


def test_a_role_without_access_to_the_table_gets_a_typed_error(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    authmodels_fresh_engine: Engine,
    authmodels_fresh_database: URL,
    settings: FlowSettings,
) -> None:
    issued = _issued(fresh, fresh_user)
    role, password = f"nobody_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA auth TO {role}"))
    engine = create_db_engine(authmodels_fresh_database.set(username=role, password=password))
    try:
        validator = sessions.SessionValidator(engine, settings=settings)
        with pytest.raises(errors.NotAuthorizedError, match="grant_service_role"):
            validator.validate(issued.session_token)
        validator.close()
    finally:
        engine.dispose()
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def test_a_forked_worker_makes_its_own_connections_and_leaves_the_parents_alone(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User, validator: Any
) -> None:
    """A validator made before a server forks its workers (gunicorn's ``--preload``)."""
    issued = _issued(fresh, fresh_user)
    validator.validate(issued.session_token)
    parent_pid = validator._connections._idle[0].info.backend_pid
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            # dropping the inherited connection finalizes it here: it must not end the parent's
            found = validator.validate(issued.session_token)
            (own,) = validator._connections._idle
            code = 0 if found.id == issued.session.id and own.info.backend_pid != parent_pid else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's connection survived the child (which neither used nor closed it)
    assert validator.validate(issued.session_token).id == issued.session.id
    assert validator._connections._idle[-1].info.backend_pid == parent_pid
