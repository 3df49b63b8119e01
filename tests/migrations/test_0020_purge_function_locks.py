"""0020: the SQL purge removes one month per call, last, and survives what used to stop it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from authmodels.cli import main
from authmodels.db import libpq_url
from authmodels.partitions import DROP_LOCK_PREFIX
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.migration_helpers import previous


def _seed_old_months(engine: Engine) -> Engine:
    """Two months of 2024 with 20 audit entries each, and an expired session."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2024-01-01', "
                "'2024-02-01')"
            )
        )
        for month in ("2024-01-01", "2024-02-01"):
            conn.execute(
                text(
                    "INSERT INTO auth.audit_logs (event_type, created_at) SELECT 'login', "
                    "CAST(:m AS timestamptz) + g * interval '1 hour' FROM generate_series(1, 20) g"
                ),
                {"m": month},
            )
        conn.execute(
            text(
                "INSERT INTO auth.users (email, password_hash) VALUES ('p@example.test', 'x');"
                "INSERT INTO auth.sessions (user_id, token_hash, created_at, expires_at) "
                "SELECT id, decode('01016b' || md5(id::text) || md5(id::text), 'hex'), "
                "now() - interval '100 days', now() - interval '60 days' "
                "FROM auth.users"
            )
        )
    return engine


@pytest.fixture
def old_months(authmodels_fresh_engine: Engine) -> Engine:
    """At head: two months of 2024 with 20 audit entries each, and an expired session."""
    return _seed_old_months(authmodels_fresh_engine)


@pytest.fixture
def old_months_without_default_partition(
    authmodels_migration_runner: MigrationRunner,
) -> Iterator[Engine]:
    """The same, on a database just below 0027, whose partitioned logs had no default
    partition: the only revisions where ``DETACH ... CONCURRENTLY`` could be interrupted."""
    authmodels_migration_runner.upgrade(previous("0027_default_partitions"))
    yield _seed_old_months(authmodels_migration_runner.engine)


def _purge(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    rows = conn.execute("SELECT table_name, deleted FROM auth.purge_expired_data()").fetchall()
    return {str(name): int(str(deleted)) for name, deleted in rows}


def _months(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'auth.audit_logs'::regclass "
            "AND c.relname IN ('audit_logs_p202401', 'audit_logs_p202402') "
            "ORDER BY 1"
        )
    ]


def test_one_month_per_call_archived_and_the_callers_lock_timeout_kept(
    old_months: Engine,
) -> None:
    with psycopg.connect(libpq_url(old_months.url)) as conn:
        conn.execute("SET lock_timeout = '7s'")
        first = _purge(conn)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("7s",)
        conn.commit()
        assert first["audit_logs"] == 20 and first["sessions"] == 1
        assert list(first)[-2:] == ["audit_logs", "login_attempts"]  # partitions last
        assert _months(conn) == ["audit_logs_p202402"]
        second = _purge(conn)
        conn.commit()
        assert second["audit_logs"] == 20 and _months(conn) == []
        assert _purge(conn)["audit_logs"] == 0
        archived = conn.execute("SELECT count(DISTINCT id) FROM auth.audit_logs_archive")
        assert archived.fetchone() == (40,)


def test_a_month_another_session_is_dropping_is_left_to_it(old_months: Engine) -> None:
    conninfo = libpq_url(old_months.url)
    with psycopg.connect(conninfo, autocommit=True) as holder, psycopg.connect(conninfo) as conn:
        holder.execute(
            "SELECT pg_advisory_lock(hashtext(%s))", (f"{DROP_LOCK_PREFIX}auth.audit_logs",)
        )
        result = _purge(conn)
        conn.commit()
        assert result["audit_logs"] == 0 and result["sessions"] == 1
        assert len(_months(conn)) == 2


def test_an_interrupted_detach_stops_that_table_only(
    old_months_without_default_partition: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    conninfo = libpq_url(old_months_without_default_partition.url)
    with psycopg.connect(conninfo) as reader, psycopg.connect(conninfo, autocommit=True) as ddl:
        reader.execute("SELECT count(*) FROM auth.audit_logs")  # an open transaction to wait for
        failures: list[BaseException] = []

        def detach() -> None:
            try:
                ddl.execute(
                    "ALTER TABLE auth.audit_logs DETACH PARTITION auth.audit_logs_p202401 "
                    "CONCURRENTLY"
                )
            except psycopg.errors.QueryCanceled as exc:
                failures.append(exc)

        worker = threading.Thread(target=detach)
        worker.start()
        with psycopg.connect(conninfo, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            pending = "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhdetachpending)"
            while watcher.execute(pending).fetchone() != (True,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)
            watcher.execute("SELECT pg_cancel_backend(%s)", (ddl.info.backend_pid,))
        worker.join(10)
        reader.rollback()
    assert len(failures) == 1  # the detach was interrupted half-way

    main(["partitions", "list", "--url", conninfo])
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if "audit_logs_p202401" in ln]
    assert line.endswith("DETACH PENDING (purge finishes and drops it)")

    with psycopg.connect(conninfo) as conn:
        result = _purge(conn)  # used to fail for every policy
        conn.commit()
        assert result["sessions"] == 1 and result["audit_logs"] == 0
