"""0015: audit_logs becomes monthly range partitions, online, with every row kept both ways."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, ProgrammingError

from authmodels import partitions
from authmodels.db import libpq_url, sqlalchemy_url
from authmodels.testing.migrations import MigrationRunner, revision_ids
from tests.migrations.helpers import application_role
from tests.migrations.migration_helpers import previous

REVISION = "0015_partitioned_logs"
BEFORE = revision_ids()[revision_ids().index(REVISION) - 1]
ROWS = "SELECT id, user_id, event_type, event_status, details, created_at FROM auth.audit_logs"


def _seed(runner: MigrationRunner, count: int = 3000) -> str:
    [(user,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash) VALUES ('p@example.com', 'x') "
        "RETURNING id::text"
    )
    # rows spread over 2025-11 .. 2026-03 (one every ~hour)
    runner.execute(
        "INSERT INTO auth.audit_logs (user_id, event_type, details, created_at) "
        "SELECT CAST(:u AS uuid), 'login', jsonb_build_object('n', g), "
        "timestamptz '2025-11-03 00:00+00' + g * interval '53 minutes' "
        "FROM generate_series(1, :n) g",
        {"u": user, "n": count},
    )
    return str(user)


def _partitions(runner: MigrationRunner) -> list[str]:
    return [
        r[0]
        for r in runner.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'auth.audit_logs'::regclass ORDER BY 1"
        )
    ]


def _month_key(now: datetime) -> str:
    return f"{now.year}{now.month:02d}"


def test_upgrade_partitions_every_month_and_keeps_every_row_both_ways(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    _seed(runner)
    before = runner.execute(f"{ROWS} ORDER BY id")
    runner.upgrade(REVISION)
    assert runner.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'auth.audit_logs'::regclass"
    ) == [("p",)]
    assert runner.execute(f"{ROWS} ORDER BY id") == before
    names = _partitions(runner)
    for month in ("202511", "202512", "202601", "202602", "202603"):
        assert f"audit_logs_p{month}" in names
    assert f"audit_logs_p{_month_key(datetime.now(UTC))}" in names  # this month and ahead
    # each row sits in its own month's partition
    assert runner.execute(
        "SELECT count(*) FROM auth.audit_logs_p202512 "
        "WHERE created_at < '2025-12-01+00' OR created_at >= '2026-01-01+00'"
    ) == [(0,)]
    # the view that reads audit_logs reads the new table
    assert runner.execute("SELECT count(*) FROM auth.user_security_status") == [(1,)]
    runner.downgrade(BEFORE)
    assert runner.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'auth.audit_logs'::regclass"
    ) == [("r",)]
    assert runner.execute(f"{ROWS} ORDER BY id") == before
    assert runner.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'audit\\_logs\\_p%'"
    ) == [(0,)]


def test_rows_written_while_the_upgrade_runs_are_not_lost(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    user = _seed(runner, 20000)
    writer_engine = create_engine(sqlalchemy_url(authmodels_empty_database))
    done = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        n = 0
        try:
            while not done.is_set():
                with writer_engine.begin() as conn:
                    conn.execute(
                        text(
                            "INSERT INTO auth.audit_logs (user_id, event_type, details) "
                            "VALUES (CAST(:u AS uuid), 'logout', jsonb_build_object('w', :n))"
                        ),
                        {"u": user, "n": n},
                    )
                n += 1
        except BaseException as exc:
            errors.append(exc)
        written.append(n)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        runner.upgrade(REVISION)
    finally:
        done.set()
        writer.join()
        writer_engine.dispose()
    assert not errors, errors
    assert written[0] > 0
    assert runner.execute("SELECT count(*) FROM auth.audit_logs WHERE event_type = 'logout'") == [
        (written[0],)
    ]
    assert runner.execute("SELECT count(*) FROM auth.audit_logs") == [(20000 + written[0],)]


@pytest.fixture
def at_head(authmodels_migration_runner: MigrationRunner) -> MigrationRunner:
    authmodels_migration_runner.upgrade("head")
    return authmodels_migration_runner


def test_a_month_without_partition_is_refused_until_ensure_creates_it(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    # until 0027, which gives each log a default partition (tests/migrations/test_0027_*)
    runner = authmodels_migration_runner
    runner.upgrade(previous("0027_default_partitions"))
    far = "2031-05-05 10:00+00"
    with pytest.raises(IntegrityError, match="no partition of relation"):
        runner.execute(
            "INSERT INTO auth.audit_logs (event_type, created_at) VALUES ('login', :t)",
            {"t": far},
        )
    with runner.connect() as conn:
        created = (
            conn.execute(
                text("SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2031-05-01')")
            )
            .scalars()
            .all()
        )
    assert "audit_logs_p203105" in created
    runner.execute(
        "INSERT INTO auth.audit_logs (event_type, created_at) VALUES ('login', :t)", {"t": far}
    )
    with runner.connect() as conn:  # idempotent: nothing new the second time
        assert partitions.ensure(conn, "auth.audit_logs", months_ahead=3) == []


def test_dropping_a_month_leaves_the_other_months_intact(at_head: MigrationRunner) -> None:
    at_head.execute(
        "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2025-01-01', '2025-03-01')"
    )
    for month in ("2025-01-10", "2025-02-10", "2025-03-10"):
        at_head.execute(
            "INSERT INTO auth.audit_logs (event_type, created_at) "
            "SELECT 'login', CAST(:t AS timestamptz) FROM generate_series(1, 5)",
            {"t": month},
        )
    dry = partitions.drop_months(
        at_head.engine, "auth.audit_logs", before=datetime(2025, 3, 1, tzinfo=UTC), dry_run=True
    )
    assert [(d.name, d.rows) for d in dry] == [("audit_logs_p202501", 5), ("audit_logs_p202502", 5)]
    assert at_head.execute("SELECT count(*) FROM auth.audit_logs") == [(15,)]
    dropped = partitions.drop_months(
        at_head.engine, "auth.audit_logs", before=datetime(2025, 3, 1, tzinfo=UTC)
    )
    assert [d.name for d in dropped] == ["audit_logs_p202501", "audit_logs_p202502"]
    assert at_head.execute(
        "SELECT count(*), min(created_at) >= '2025-03-01+00' FROM auth.audit_logs"
    ) == [(5, True)]
    assert at_head.execute("SELECT to_regclass('auth.audit_logs_p202501')") == [(None,)]


def test_an_interrupted_detach_is_finished_by_the_next_run(at_head: MigrationRunner) -> None:
    at_head.execute(
        "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2025-01-01', '2025-01-01')"
    )
    at_head.execute(
        "INSERT INTO auth.audit_logs (event_type, created_at) VALUES ('login', '2025-01-02+00')"
    )
    # what a run killed right after its DETACH leaves: a detached month, not yet dropped
    at_head.execute("ALTER TABLE auth.audit_logs DETACH PARTITION auth.audit_logs_p202501")
    listed = {
        p.name: p for p in partitions.list_partitions(at_head.engine.connect(), "auth.audit_logs")
    }
    assert not listed["audit_logs_p202501"].attached
    dropped = partitions.drop_months(
        at_head.engine, "auth.audit_logs", before=datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert [d.name for d in dropped] == ["audit_logs_p202501"]
    assert at_head.execute("SELECT to_regclass('auth.audit_logs_p202501')") == [(None,)]


def test_row_level_security_still_hides_other_users_rows(
    at_head: MigrationRunner, authmodels_empty_database: URL
) -> None:
    users: dict[str, Any] = {}
    for email in ("a@example.com", "b@example.com"):
        [(uid,)] = at_head.execute(
            "INSERT INTO auth.users (email, password_hash) VALUES (:e, 'x') RETURNING id",
            {"e": email},
        )
        users[email] = uid
        at_head.execute(
            "INSERT INTO auth.audit_logs (user_id, event_type) VALUES (:u, 'login')", {"u": uid}
        )
    with application_role(at_head, authmodels_empty_database) as (_, app):
        with app.begin() as conn:
            conn.execute(
                text("SELECT set_config('authmodels.user_id', :u, true)"),
                {"u": str(users["a@example.com"])},
            )
            seen = conn.execute(text("SELECT user_id FROM auth.audit_logs")).scalars().all()
        assert seen == [users["a@example.com"]]
        # read directly, a partition is past the parent's policies: since 0019 the application
        # role has no privilege on it at all (and row-level security would show it nothing)
        month = _month_key(datetime.now(UTC))
        with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
            conn.execute(
                text("SELECT set_config('authmodels.user_id', :u, true)"),
                {"u": str(users["a@example.com"])},
            )
            conn.execute(text(f"SELECT count(*) FROM auth.audit_logs_p{month}"))
        assert at_head.execute(f"SELECT count(*) FROM auth.audit_logs_p{month}") == [(2,)]


# --- a row changed while the batch that copies it is uncommitted ------------------------------


def _waiting(conninfo: str, *, query_like: str | None = None, pid: int | None = None) -> bool:
    """Whether a backend (by pid, or by its query) waits for a lock."""
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND (pid = %s OR query LIKE %s)",
            (pid, query_like),
        ).fetchone()
    return bool(row and row[0])


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("change", ["update", "delete"])
def test_a_row_changed_while_its_copy_is_uncommitted_is_copied_as_changed(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL, change: str
) -> None:
    """The copy's batch inserts its rows into the twin, then waits (uncommitted); meanwhile
    another transaction updates or deletes one of those rows in the original table.

    The batch is held at its foreign key check: after inserting every row of the batch into the
    twin, PostgreSQL checks each row's ``user_id`` with ``FOR KEY SHARE`` on the user, which a
    transaction holding that user ``FOR UPDATE`` makes wait. Before the fix, the mirror trigger of
    the concurrent change could not see the batch's uncommitted copy: an UPDATE's new version
    was dropped (``ON CONFLICT DO NOTHING`` against the stale copy) and a DELETE left the copy
    behind, so the upgrade failed at its row count. The batch now locks the rows it copies
    (``FOR SHARE``): the change waits for the batch to commit, then its trigger sees the copy.
    """
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    user = _seed(runner, 50)  # one batch
    [(row_id,)] = runner.execute("SELECT id::text FROM auth.audit_logs ORDER BY id LIMIT 1")
    conninfo = libpq_url(authmodels_empty_database)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            runner.upgrade(REVISION)
        except BaseException as exc:
            errors.append(exc)

    statement = {
        "update": "UPDATE auth.audit_logs SET details = '{\"changed\": true}' WHERE id = %s",
        "delete": "DELETE FROM auth.audit_logs WHERE id = %s",
    }[change]

    with psycopg.connect(conninfo) as blocker, psycopg.connect(conninfo) as changer:
        blocker.execute("SELECT 1 FROM auth.users WHERE id = %s FOR UPDATE", (user,))
        migration = threading.Thread(target=upgrade)
        migration.start()
        _until(
            lambda: _waiting(conninfo, query_like="%INSERT INTO auth.audit_logs_rebuild %"),
            "the batch waits, its rows inserted into the twin and not committed",
        )
        changer_pid = changer.info.backend_pid
        changing = threading.Thread(
            target=lambda: (changer.execute(statement, (row_id,)), changer.commit())
        )
        changing.start()
        _until(
            lambda: not changing.is_alive() or _waiting(conninfo, pid=changer_pid),
            "the change is made or waits",
        )
        blocker.rollback()
        changing.join(timeout=30)
        migration.join(timeout=120)
    assert not errors, errors

    after = runner.execute(
        "SELECT details FROM auth.audit_logs WHERE id = CAST(:r AS uuid)", {"r": row_id}
    )
    assert after == ([({"changed": True},)] if change == "update" else [])
    assert runner.execute("SELECT count(*) FROM auth.audit_logs") == [
        (50 if change == "update" else 49,)
    ]
