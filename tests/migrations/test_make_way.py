"""A migration's DDL cancels autovacuum on schema ``auth`` before it waits, so the application's
queries never queue behind it for ``deadlock_timeout`` (``authmodels._make_way``), on a real
autovacuum worker of the test server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from authmodels._make_way import STRONG_LOCK_DDL, make_way_for_ddl, may_cancel_autovacuum
from authmodels.db import create_db_engine
from authmodels.testing.database import TestServer

TABLE = "auth.av_scratch"


@pytest.fixture
def vacuumed_table(
    authmodels_fresh_engine: Engine, authmodels_test_server: TestServer
) -> Iterator[Engine]:
    """A table of schema ``auth`` full of dead rows, which autovacuum (looking for work every
    second meanwhile) vacuums as slowly as it can."""
    with authmodels_test_server.admin_connection() as admin:
        admin.execute("ALTER SYSTEM SET autovacuum_naptime = 1")
        admin.execute("SELECT pg_reload_conf()")
    try:
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE {TABLE} (id int PRIMARY KEY, pad text) WITH ("
                    "autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, "
                    "autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)"
                )
            )
            conn.execute(
                text(
                    f"INSERT INTO {TABLE} SELECT i, repeat('x', 200) "
                    "FROM generate_series(1, 20000) AS i"
                )
            )
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TABLE} WHERE id % 2 = 0"))
        yield authmodels_fresh_engine
    finally:
        with authmodels_test_server.admin_connection() as admin:
            admin.execute("ALTER SYSTEM RESET autovacuum_naptime")
            admin.execute("SELECT pg_reload_conf()")


def _wait_for_autovacuum(engine: Engine) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            busy = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                    "'autovacuum worker' AND query LIKE '%av_scratch%'"
                )
            ).scalar_one()
        if busy:
            return
        time.sleep(0.1)
    raise AssertionError("no autovacuum worker came to the table within 90 s")


def _write_wait_behind_ddl(engine: Engine, *, make_way: bool) -> float:
    """Seconds a write of the table waits when it arrives 0.2 s after a DDL statement started
    while autovacuum works on the table."""
    _wait_for_autovacuum(engine)
    column = f"c_{uuid.uuid4().hex[:8]}"
    done = threading.Event()

    def ddl() -> None:
        with engine.connect() as conn:
            with make_way_for_ddl(conn, enabled=make_way and may_cancel_autovacuum(conn)):
                conn.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN {column} int"))
            conn.commit()
        done.set()

    thread = threading.Thread(target=ddl)
    thread.start()
    time.sleep(0.2)
    with engine.connect() as conn:
        started = time.monotonic()
        conn.execute(text(f"INSERT INTO {TABLE} (id) VALUES ({int(time.time() * 1000) % 10**9})"))
        conn.commit()
        waited = time.monotonic() - started
    thread.join()
    assert done.is_set()
    return waited


def test_the_application_does_not_queue_behind_ddl_waiting_for_autovacuum(
    vacuumed_table: Engine,
) -> None:
    # without: the DDL waits until PostgreSQL cancels autovacuum (deadlock_timeout, 1 s), and
    # the write queues behind it meanwhile
    assert _write_wait_behind_ddl(vacuumed_table, make_way=False) >= 0.5
    # with: autovacuum is cancelled before the DDL is sent; the write does not wait
    assert _write_wait_behind_ddl(vacuumed_table, make_way=True) < 0.3


def test_only_a_role_that_may_signal_autovacuum_workers_cancels_them(
    authmodels_fresh_engine: Engine, authmodels_fresh_database: URL
) -> None:
    role = f"migrator_{uuid.uuid4().hex[:8]}"
    with authmodels_fresh_engine.begin() as conn:
        assert may_cancel_autovacuum(conn)  # the test server's superuser
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'example-only'"))
    engine = create_db_engine(authmodels_fresh_database.set(username=role, password="example-only"))
    try:
        with engine.connect() as conn:
            assert not may_cancel_autovacuum(conn)
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text(f"GRANT pg_signal_autovacuum_worker TO {role}"))
        with engine.connect() as conn:
            assert may_cancel_autovacuum(conn)
    finally:
        engine.dispose()
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text(f"DROP ROLE {role}"))


@pytest.mark.parametrize(
    ("statement", "strong"),
    [
        ("ALTER TABLE auth.sessions ADD CONSTRAINT c CHECK (true) NOT VALID", True),
        ("-- squawk-ignore ban-drop-constraint -- why\nALTER TABLE auth.x DROP CONSTRAINT c", True),
        ("CREATE TABLE auth.t (id uuid REFERENCES auth.sessions (id))", True),
        ("LOCK TABLE auth.sessions IN SHARE ROW EXCLUSIVE MODE", True),
        ("CREATE OR REPLACE TRIGGER t AFTER INSERT ON auth.sessions EXECUTE FUNCTION f()", True),
        ("create index ix on auth.sessions (id)", True),
        ("CREATE INDEX CONCURRENTLY ix ON auth.sessions (id)", False),
        ("DROP INDEX CONCURRENTLY auth.ix", False),
        ("UPDATE auth.sessions SET is_active = false", False),
        ("SELECT 1 FROM auth.sessions", False),
    ],
)
def test_the_statements_that_make_way_are_those_that_take_strong_locks(
    statement: str, strong: bool
) -> None:
    assert bool(STRONG_LOCK_DDL.match(statement)) is strong


def test_the_migration_environment_makes_way_unless_switched_off(
    authmodels_fresh_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command

    import authmodels._make_way as make_way
    from authmodels.migrations import alembic_config

    seen: list[bool] = []
    original = make_way.make_way_for_ddl

    def recording(connection: Any, *, enabled: bool = True) -> Any:
        seen.append(enabled)
        return original(connection, enabled=enabled)

    monkeypatch.setattr(make_way, "make_way_for_ddl", recording)
    command.upgrade(alembic_config(authmodels_fresh_database), "head")  # at head: runs nothing
    command.upgrade(alembic_config(authmodels_fresh_database, cancel_autovacuum=False), "head")
    command.upgrade(alembic_config(authmodels_fresh_database, cancel_autovacuum="off"), "head")
    assert seen == [True, False, False]
