"""Revision 0018: the references to sessions are kept by set-based triggers instead of foreign keys.

What the foreign keys guaranteed still holds -- a session's tokens go with it, a token cannot
name a session that does not exist, concurrent inserts and deletes leave no token behind at
READ COMMITTED -- and session audits keep the id of a purged session. The one documented gap
(REPEATABLE READ) leaves a token that cannot be used. The downgrade restores the foreign keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from authmodels.db import libpq_url
from authmodels.errors import TokenRevokedError
from authmodels.locking import RowNotFoundError
from authmodels.models import User
from authmodels.retention import load_policies, purge, select_policies
from authmodels.services import sessions as session_flows
from authmodels.services import step_up, tokens
from authmodels.testing.migrations import MigrationRunner
from tests.services.helpers import count

TOKEN_TABLES = ("refresh_tokens", "access_tokens", "step_up_tokens")

#: a random value of the keyed-digest shape (``auth.is_token_digest``, revision 0026)
DIGEST = "'\\x01016b'::bytea || sha256(gen_random_uuid()::text::bytea)"


def _full_session(db: Session, user: User) -> uuid.UUID:
    """A session with a refresh token, an access token, a step-up token and its session audit
    entry (``created``, written by ``create_session``)."""
    issued = session_flows.create_session(db, user, ttl=timedelta(hours=1))
    sid = issued.session.id
    tokens.issue_access_token(db, user, session_id=sid)
    step_up.issue(db, user, ttl=timedelta(minutes=5), session_id=sid)
    return sid


def _children(db: Session, sid: uuid.UUID) -> dict[str, int]:
    return {t: count(db, t, "session_id = :s", s=sid) for t in TOKEN_TABLES}


def test_deleting_sessions_deletes_their_tokens_and_keeps_their_audits(
    db: Session, user: User
) -> None:
    kept, gone_a, gone_b = (_full_session(db, user) for _ in range(3))
    assert _children(db, gone_a) == {t: 1 for t in TOKEN_TABLES}

    db.execute(text("DELETE FROM auth.sessions WHERE id IN (:a, :b)"), {"a": gone_a, "b": gone_b})

    assert _children(db, gone_a) == _children(db, gone_b) == {t: 0 for t in TOKEN_TABLES}
    assert _children(db, kept) == {t: 1 for t in TOKEN_TABLES}
    # the audit trail is not rewritten: it still names the sessions that were deleted
    assert count(db, "session_audits", "session_id IN (:a, :b)", a=gone_a, b=gone_b) == 2


def test_deleting_a_user_deletes_their_sessions_and_tokens(db: Session, user: User) -> None:
    sid = _full_session(db, user)
    db.execute(text("DELETE FROM auth.users WHERE id = :u"), {"u": user.id})
    assert count(db, "sessions", "id = :s", s=sid) == 0
    assert _children(db, sid) == {t: 0 for t in TOKEN_TABLES}


def test_truncating_sessions_deletes_session_tokens_only(db: Session, user: User) -> None:
    sid = _full_session(db, user)
    standalone = tokens.issue_access_token(db, user)  # no session: not the session's to delete
    db.execute(text("TRUNCATE auth.sessions CASCADE"))
    assert _children(db, sid) == {t: 0 for t in TOKEN_TABLES}
    assert count(db, "access_tokens", "id = :i", i=standalone.id) == 1


@pytest.mark.parametrize("table", TOKEN_TABLES)
def test_a_token_naming_a_missing_session_is_refused(db: Session, user: User, table: str) -> None:
    sid = _full_session(db, user)
    missing = uuid.uuid4()
    with pytest.raises(IntegrityError) as refused, db.begin_nested():
        db.execute(
            text(f"UPDATE auth.{table} SET session_id = :m WHERE session_id = :s"),
            {"m": missing, "s": sid},
        )
    assert isinstance(refused.value.orig, errors.ForeignKeyViolation)
    assert f'Key (session_id)=({missing}) is not present in table "sessions"' in str(refused.value)
    assert _children(db, sid)[table] == 1  # nothing changed

    inserts: dict[str, Callable[[], object]] = {
        "access_tokens": lambda: tokens.issue_access_token(db, user, session_id=missing),
        "step_up_tokens": lambda: step_up.issue(
            db, user, ttl=timedelta(minutes=5), session_id=missing
        ),
        "refresh_tokens": lambda: db.execute(
            text(
                "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
                f"VALUES (:u, :m, {DIGEST}, now() + interval '1 hour')"
            ),
            {"u": user.id, "m": missing},
        ),
    }
    refused_insert = pytest.raises(  # a flow's typed error, the driver's for raw SQL
        RowNotFoundError if table != "refresh_tokens" else IntegrityError,
        match=r"violates the reference to auth\.sessions",
    )
    with refused_insert, db.begin_nested():
        inserts[table]()
        db.flush()
    assert count(db, table, "session_id = :m", m=missing) == 0


def test_a_referenced_session_keeps_its_id(db: Session, user: User) -> None:
    sid = _full_session(db, user)
    refused = pytest.raises(IntegrityError, match="id cannot change while tokens refer to it")
    with refused, db.begin_nested():
        db.execute(
            text("UPDATE auth.sessions SET id = gen_random_uuid() WHERE id = :s"), {"s": sid}
        )
    assert count(db, "sessions", "id = :s", s=sid) == 1


# --- concurrency, on real connections of a fresh database -------------------------------------


@pytest.fixture
def committed_session(fresh: Callable[..., sessionmaker[Session]], fresh_user: User) -> uuid.UUID:
    with fresh()() as db:
        issued = session_flows.create_session(db, fresh_user, ttl=timedelta(hours=1))
        db.commit()
        return issued.session.id


@pytest.fixture
def conninfo(authmodels_fresh_engine: Engine) -> str:
    return libpq_url(authmodels_fresh_engine.url)


def _insert_refresh_token(conn: psycopg.Connection[tuple[object, ...]], sid: uuid.UUID) -> None:
    conn.execute(
        "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
        f"SELECT user_id, id, {DIGEST}, now() + interval '1 hour' "
        "FROM auth.sessions WHERE id = %s",
        (sid,),
    )


def _blocked(conninfo: str, pid: int) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return bool(row and row[0])


def _wait_until_blocked(conninfo: str, pid: int) -> None:
    deadline = time.monotonic() + 10
    while not _blocked(conninfo, pid):
        assert time.monotonic() < deadline, "the second transaction never waited for the first"
        time.sleep(0.02)


def _refresh_tokens_of(conninfo: str, sid: uuid.UUID) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM auth.refresh_tokens WHERE session_id = %s", (sid,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_token_inserted_while_its_session_is_deleted_is_refused(
    conninfo: str, committed_session: uuid.UUID
) -> None:
    """Delete first (uncommitted), insert waits for it, then finds no session."""
    sid = committed_session
    with psycopg.connect(conninfo) as deleter, psycopg.connect(conninfo) as inserter:
        deleter.execute("DELETE FROM auth.sessions WHERE id = %s", (sid,))
        outcome: list[BaseException | None] = []

        def insert() -> None:
            try:
                _insert_refresh_token(inserter, sid)
                inserter.commit()
                outcome.append(None)
            except BaseException as exc:
                inserter.rollback()
                outcome.append(exc)

        worker = threading.Thread(target=insert)
        # the INSERT ... SELECT still sees the session (snapshot before the delete committed)
        worker.start()
        _wait_until_blocked(conninfo, inserter.info.backend_pid)
        deleter.commit()
        worker.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], errors.ForeignKeyViolation)
    assert _refresh_tokens_of(conninfo, sid) == 0


def test_a_session_deleted_while_a_token_is_inserted_takes_the_token(
    conninfo: str, committed_session: uuid.UUID
) -> None:
    """Insert first (uncommitted), delete waits for it, then deletes the new token too."""
    sid = committed_session
    with psycopg.connect(conninfo) as inserter, psycopg.connect(conninfo) as deleter:
        _insert_refresh_token(inserter, sid)
        deleted: list[int] = []
        worker = threading.Thread(
            target=lambda: (
                deleted.append(
                    deleter.execute("DELETE FROM auth.sessions WHERE id = %s", (sid,)).rowcount
                ),
                deleter.commit(),
            )
        )
        worker.start()
        _wait_until_blocked(conninfo, deleter.info.backend_pid)
        inserter.commit()
        worker.join(10)
    assert deleted == [1]
    assert _refresh_tokens_of(conninfo, sid) == 0


def test_a_purge_skips_a_session_a_token_is_being_inserted_for(
    conninfo: str, authmodels_fresh_engine: Engine, committed_session: uuid.UUID
) -> None:
    sid = committed_session
    with psycopg.connect(conninfo, autocommit=True) as owner:
        owner.execute(
            "UPDATE auth.sessions SET created_at = now() - interval '100 days', "
            "expires_at = now() - interval '60 days' WHERE id = %s",
            (sid,),
        )
        owner.execute(
            "UPDATE auth.refresh_tokens SET created_at = now() - interval '100 days', "
            "expires_at = now() - interval '60 days' WHERE session_id = %s",
            (sid,),
        )
    with authmodels_fresh_engine.connect() as conn:
        policies = select_policies(load_policies(conn), only=["sessions"])
    with psycopg.connect(conninfo) as inserter:
        _insert_refresh_token(inserter, sid)  # holds the session FOR KEY SHARE
        first = purge(authmodels_fresh_engine, policies=policies)
        assert first.rows == 0  # skipped, not waited for
        inserter.commit()
    assert _refresh_tokens_of(conninfo, sid) == 2
    second = purge(authmodels_fresh_engine, policies=policies)
    assert second.rows == 1
    assert _refresh_tokens_of(conninfo, sid) == 0


def test_the_repeatable_read_gap_leaves_a_token_that_cannot_be_used(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User, conninfo: str
) -> None:
    """The documented difference from a foreign key, and why it is harmless."""
    with fresh()() as db:
        sid = session_flows.create_session(db, fresh_user, ttl=timedelta(hours=1)).session.id
        db.commit()
    with psycopg.connect(conninfo) as deleter:
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute("SELECT 1")  # the snapshot is taken here
        with fresh()() as db:
            late = tokens.issue_access_token(db, fresh_user, session_id=sid)
            db.commit()
        deleter.execute("DELETE FROM auth.sessions WHERE id = %s", (sid,))
        deleter.commit()
    with fresh()() as db:
        assert count(db, "access_tokens", "id = :i", i=late.id) == 1  # left behind ...
        with pytest.raises(TokenRevokedError):  # ... and refused
            tokens.validate_access_token(db, late.token)


# --- downgrade ---------------------------------------------------------------------------------


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade("head")
    yield authmodels_migration_runner


def test_downgrade_restores_the_foreign_keys(
    runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    [(user,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash) VALUES ('d@example.com', 'x') RETURNING id"
    )
    [(kept,), (purged,)] = runner.execute(
        "INSERT INTO auth.sessions (user_id, token_hash, expires_at) "
        f"SELECT :u, {DIGEST}, now() + interval '1 day' "
        "FROM generate_series(1, 2) RETURNING id",
        {"u": user},
    )
    for sid in (kept, purged):
        runner.execute(
            "INSERT INTO auth.session_audits (session_id, user_id, action) "
            "VALUES (:s, :u, 'created')",
            {"s": sid, "u": user},
        )
        runner.execute(
            "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at) "
            f"VALUES (:u, :s, {DIGEST}, now() + interval '1 hour')",
            {"s": sid, "u": user},
        )
    # an orphan access token, made by the REPEATABLE READ race
    conninfo = libpq_url(authmodels_empty_database)
    with psycopg.connect(conninfo) as deleter:
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute("SELECT 1")
        [(orphan,)] = runner.execute(
            "INSERT INTO auth.access_tokens (user_id, session_id, token_hash, expires_at) "
            f"VALUES (:u, :s, {DIGEST}, now() + interval '1 hour') "
            "RETURNING id",
            {"s": purged, "u": user},
        )
        deleter.execute("DELETE FROM auth.sessions WHERE id = %s", (purged,))
        deleter.commit()

    runner.downgrade("0017_user_self_update_guard")

    keys = runner.execute(
        "SELECT conrelid::regclass::text, confdeltype, convalidated FROM pg_constraint "
        "WHERE confrelid = 'auth.sessions'::regclass ORDER BY 1"
    )
    assert keys == [
        ("auth.access_tokens", "c", True),
        ("auth.refresh_tokens", "c", True),
        ("auth.session_audits", "n", True),
        ("auth.step_up_tokens", "c", True),
    ]
    assert runner.execute(
        "SELECT session_id FROM auth.session_audits ORDER BY session_id NULLS FIRST"
    ) == [(None,), (kept,)]
    assert runner.execute("SELECT session_id FROM auth.refresh_tokens") == [(kept,)]
    assert runner.execute(
        "SELECT reason FROM auth.quarantine WHERE source_table = 'access_tokens' "
        "AND row_data->>'id' = :i",
        {"i": str(orphan)},
    ) == [("its session no longer exists",)]

    runner.upgrade("head")
    assert runner.execute(
        "SELECT count(*) FROM pg_constraint WHERE confrelid = 'auth.sessions'::regclass"
    ) == [(0,)]
