"""The fast path of the hot statements (``services._fastpath``): taken with authmodels' engines,
its SQLAlchemy fallback gives the same results, and the SQLAlchemy behaviour it builds on holds.

The module runs the session lookup and the refresh-token rotation on the session's raw psycopg
connection and attaches the ORM object through SQLAlchemy internals; ``docs/benchmarks.md`` ("The
fast path") has the figures that keep it. The pins below fail on an SQLAlchemy release that
changes what it relies on, before a flow misbehaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from authmodels.errors import RefreshTokenReused, SessionRevokedError
from authmodels.models import Session as SessionModel
from authmodels.models import User
from authmodels.models.tokens import Candidates, token_lookup_params
from authmodels.services import FlowSettings, _fastpath, sessions, use_settings
from tests.services.helpers import count

TTL = timedelta(hours=8)


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement takes the SQLAlchemy path, as with a driver other than psycopg 3."""
    monkeypatch.setattr(_fastpath, "_driver", lambda db: None)


@pytest.fixture
def statements(db: Session) -> Iterator[list[str]]:
    """The statements SQLAlchemy executes on the session's connection while the test runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(connection, "before_cursor_execute", record)


def _row(db: Session, session_id: object) -> dict[str, Any]:
    return dict(
        db.execute(text("SELECT * FROM auth.sessions WHERE id = :id"), {"id": session_id})
        .mappings()
        .one()
    )


def _attributes(found: SessionModel) -> dict[str, Any]:
    return {column: getattr(found, column) for column in _fastpath.columns_of(SessionModel)}


# --- the fast path is the one taken ------------------------------------------------------------


def test_the_hot_statements_bypass_sqlalchemy_with_authmodels_engines(
    db: Session, user: User, statements: list[str]
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    assert _fastpath.psycopg_connection(db) is not None
    statements.clear()

    sessions.validate_session(db, issued.session_token)
    sessions.rotate_refresh_token(db, issued.refresh_token)

    assert statements == []  # both ran on the psycopg connection, not through SQLAlchemy


def test_the_token_lookups_keep_their_generic_plan(db: Session, user: User) -> None:
    """A prepared statement is planned again on every execution while PostgreSQL's custom plans
    look cheaper than its generic plan; a digest lookup whose candidates the planner can see
    always did (about two thirds of the session lookup's server time). Hidden behind a scalar
    subquery, the server switches to the generic plan after its five custom ones."""
    issued = sessions.create_session(db, user, ttl=TTL)
    for _ in range(12):
        sessions.validate_session(db, issued.session_token)
        sessions.validate_session_alone(db, issued.session_token)
    plans = {
        statement: (generic, custom)
        for statement, generic, custom in db.execute(
            text(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE '%FROM auth.sessions%token_hash = ANY%'"
            )
        )
    }
    assert len(plans) == 2, plans  # validate_session's lookup, validate_session_alone's
    for generic, custom in plans.values():
        assert custom <= 5 and generic >= 7, plans


# --- the fallback gives the same results -------------------------------------------------------


def test_the_fallback_validates_to_the_same_persistent_session(
    db: Session, user: User, fallback: None, statements: list[str]
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    db.expunge_all()
    statements.clear()

    found = sessions.validate_session(db, issued.session_token)

    assert any("FROM auth.sessions" in s for s in statements)  # through SQLAlchemy, this time
    assert _attributes(found) == _row(db, issued.session.id)
    state = inspect(found)
    assert state.persistent and not state.modified and found in db


def test_the_fallback_touches_a_due_session_and_refuses_a_revoked_one(
    db: Session, user: User, fallback: None
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    db.execute(
        text(
            "UPDATE auth.sessions SET last_activity_at = last_activity_at - interval '2 minutes' "
            "WHERE id = :id"
        ),
        {"id": issued.session.id},
    )
    stale = _row(db, issued.session.id)["last_activity_at"]

    found = sessions.validate_session(db, issued.session_token)

    fresh = _row(db, issued.session.id)["last_activity_at"]
    assert fresh > stale and found.last_activity_at == fresh
    sessions.revoke_session(db, issued.session.id)
    with pytest.raises(SessionRevokedError):
        sessions.validate_session(db, issued.session_token)


def test_the_fallback_rotates_replays_and_revokes_on_reuse(
    db: Session, user: User, settings: FlowSettings, fallback: None
) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)

    pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    assert sessions.rotate_refresh_token(db, issued.refresh_token) == pair  # the grace window
    assert count(db, "refresh_tokens", "session_id = :s", s=issued.session.id) == 2

    use_settings(db, settings.replace(refresh_grace_window=timedelta(0)))
    with pytest.raises(RefreshTokenReused):
        sessions.rotate_refresh_token(db, issued.refresh_token)
    # the savepoint set before the refused UPDATE was rolled back to: the caller's transaction
    # goes on, and sees the family revoked
    assert (
        count(db, "refresh_tokens", "session_id = :s AND revoked_at IS NULL", s=pair.session_id)
        == 0
    )


# --- the SQLAlchemy behaviour the fast path relies on ------------------------------------------


def test_pin_the_driver_connection_under_a_session_is_psycopg(db: Session) -> None:
    driver = db.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    assert _fastpath.psycopg_connection(db) is driver


def test_pin_text_compiles_to_psycopgs_named_placeholders() -> None:
    """The forms the hot statements use, and a literal percent sign escaped for psycopg."""
    statement = _fastpath.Statement("SELECT :a, CAST(:b AS interval), 'x%' WHERE x = ANY(:c)")
    assert statement.psycopg_sql == (
        "SELECT %(a)s, CAST(%(b)s AS interval), 'x%%' WHERE x = ANY(%(c)s)"
    )


def test_pin_load_instance_gives_what_the_orm_loads(db: Session, user: User) -> None:
    issued = sessions.create_session(db, user, ttl=TTL)
    session_id = issued.session.id
    db.flush()
    db.expunge_all()
    orm_loaded = db.execute(select(SessionModel).where(SessionModel.id == session_id)).scalar_one()
    expected = _attributes(orm_loaded)
    orm_state = inspect(orm_loaded)
    db.expunge_all()

    mapper = inspect(SessionModel)
    made = mapper.class_manager.new_instance()
    assert type(made) is SessionModel and instance_state(made).key is None
    values = [expected[name] for name in _fastpath.columns_of(SessionModel)]
    loaded = _fastpath.load_instance(db, SessionModel, _fastpath.columns_of(SessionModel), values)

    state = inspect(loaded)
    assert state.key == orm_state.key == mapper.identity_key_from_primary_key((session_id,))
    assert (state.persistent, state.modified, state.expired) == (True, False, False)
    assert state.unloaded == orm_state.unloaded == set()
    assert all(not attr.history.has_changes() for attr in state.attrs)
    assert _attributes(loaded) == expected
    assert db.get(SessionModel, session_id) is loaded  # in the identity map: no query
    assert loaded not in db.dirty and loaded not in db.new

    # an object already in the session is refreshed, not replaced, and stays unmodified
    values[_fastpath.columns_of(SessionModel).index("revoked_reason")] = "changed elsewhere"
    again = _fastpath.load_instance(db, SessionModel, _fastpath.columns_of(SessionModel), values)
    assert again is loaded and loaded.revoked_reason == "changed elsewhere"
    assert not inspect(loaded).modified

    # and it is a persistent object like any other: a change is flushed as an UPDATE
    loaded.revoked_reason = "manual"
    db.flush()
    assert _row(db, session_id)["revoked_reason"] == "manual"


def test_candidates_reach_the_server_as_the_bytes_they_are(
    db: Session, settings: FlowSettings
) -> None:
    """The digests a lookup sends are written as one ``bytea[]`` literal (``Candidates``), not
    element by element: every byte value, both ways of sending, the same array at the server."""
    digests = [bytes(range(256)), b"", b"\x00", b'"\\{},', bytes(range(255, -1, -1)) * 3]
    driver = _fastpath.psycopg_connection(db)
    assert driver is not None
    for prepare in (False, True):
        sent_as_list, sent_as_candidates = driver.execute(
            "SELECT CAST(%s AS bytea[]), CAST(%s AS bytea[])",
            (list(digests), Candidates(digests)),
            prepare=prepare,
        ).fetchone() or (None, None)
        assert sent_as_candidates == sent_as_list == digests
    assert isinstance(token_lookup_params(settings.hasher, "t")["candidates"], Candidates)
