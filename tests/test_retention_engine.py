"""The batched purge engine, on a table of its own in a fresh database (real commits)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from authmodels.errors import ConfigurationError
from authmodels.retention import Policy, purge, select_policies

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)

EVENTS = Policy(
    name="events",
    table="scratch.events",
    expired="created_at < :cutoff",
    keep_for=WINDOW,
    archive_to="scratch.events_archive",
)


@pytest.fixture
def engine(authmodels_fresh_engine: Engine) -> Engine:
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA scratch"))
        conn.execute(
            text(
                "CREATE TABLE scratch.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "created_at timestamptz NOT NULL, payload text NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX ON scratch.events (created_at)"))
        conn.execute(
            text(
                "CREATE TABLE scratch.events_archive (id bigint NOT NULL, created_at timestamptz "
                "NOT NULL, payload text NOT NULL, archived_at timestamptz NOT NULL)"
            )
        )
    return authmodels_fresh_engine


def _insert(engine: Engine, count: int, created_at: datetime, payload: str = "x") -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scratch.events (created_at, payload) "
                "SELECT :t, :p || g FROM generate_series(1, :n) g"
            ),
            {"t": created_at, "p": payload, "n": count},
        )


def _count(engine: Engine, table: str = "scratch.events") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


def test_rows_just_inside_the_window_stay_and_just_outside_go(engine: Engine) -> None:
    cutoff = NOW - WINDOW
    _insert(engine, 3, cutoff + timedelta(seconds=1), "inside")
    _insert(engine, 2, cutoff, "boundary")  # exactly at the cutoff: not yet expired
    _insert(engine, 4, cutoff - timedelta(seconds=1), "outside")
    report = purge(engine, policies=[EVENTS], now=NOW, batch_size=2)
    assert report.rows == 4
    assert report.policies[0].batches == 2
    assert report.finished
    with engine.connect() as conn:
        left = sorted(conn.execute(text("SELECT payload FROM scratch.events")).scalars())
    assert left == ["boundary1", "boundary2", "inside1", "inside2", "inside3"]


def test_archived_rows_are_identical_to_the_originals(engine: Engine) -> None:
    _insert(engine, 5, NOW - WINDOW - timedelta(days=1), "old")
    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT id, created_at, payload FROM scratch.events ORDER BY id")
        ).all()
    purge(engine, policies=[EVENTS], now=NOW, batch_size=3)
    with engine.connect() as conn:
        archived = conn.execute(
            text("SELECT id, created_at, payload FROM scratch.events_archive ORDER BY id")
        ).all()
        stamps = (
            conn.execute(
                text("SELECT DISTINCT archived_at IS NOT NULL FROM scratch.events_archive")
            )
            .scalars()
            .all()
        )
    assert archived == before
    assert stamps == [True]
    assert _count(engine) == 0


def test_dry_run_counts_and_changes_nothing(engine: Engine) -> None:
    _insert(engine, 7, NOW - WINDOW - timedelta(hours=1))
    _insert(engine, 2, NOW)
    report = purge(engine, policies=[EVENTS], now=NOW, dry_run=True)
    assert report.dry_run and report.rows == 7
    assert _count(engine) == 9
    assert _count(engine, "scratch.events_archive") == 0


def test_max_duration_stops_between_batches_and_the_next_run_finishes(engine: Engine) -> None:
    _insert(engine, 10, NOW - WINDOW - timedelta(days=2))
    stopped = purge(engine, policies=[EVENTS], now=NOW, batch_size=1, max_duration=timedelta(0))
    assert stopped.rows == 0 and not stopped.finished
    done = purge(engine, policies=[EVENTS], now=NOW, batch_size=4)
    assert done.rows == 10 and done.finished


def test_two_workers_remove_each_expired_row_exactly_once(engine: Engine) -> None:
    _insert(engine, 3000, NOW - WINDOW - timedelta(days=1), "old")
    _insert(engine, 500, NOW, "new")
    barrier = threading.Barrier(2)
    reports = []

    def worker() -> None:
        barrier.wait()
        reports.append(purge(engine, policies=[EVENTS], now=NOW, batch_size=50))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.rows for r in reports) == 3000
    with engine.connect() as conn:
        archived, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT id) FROM scratch.events_archive")
        ).one()
        left = conn.execute(
            text("SELECT count(*) FROM scratch.events WHERE payload LIKE 'new%'")
        ).scalar()
    assert (archived, distinct) == (3000, 3000)
    assert left == 500 and _count(engine) == 500


def test_a_purge_killed_mid_batch_leaves_whole_batches_and_the_next_run_finishes(
    engine: Engine,
) -> None:
    _insert(engine, 100, NOW - WINDOW - timedelta(days=1), "old")
    # Deleting the row with payload 'old55' sleeps, so a batch is in flight when we kill it.
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION scratch.slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF OLD.payload = 'old55' THEN PERFORM pg_sleep(30); END IF; "
                "RETURN OLD; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER slow BEFORE DELETE ON scratch.events FOR EACH ROW "
                "EXECUTE FUNCTION scratch.slow_delete()"
            )
        )
    errors: list[BaseException] = []

    def victim() -> None:
        try:
            purge(engine, policies=[EVENTS], now=NOW, batch_size=10)
        except BaseException as exc:  # the terminated connection surfaces here
            errors.append(exc)

    thread = threading.Thread(target=victim)
    thread.start()
    with engine.connect() as admin:
        for _ in range(200):
            pid = admin.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                    "AND datname = current_database()"
                )
            ).scalar()
            if pid:
                break
            time.sleep(0.05)
        assert pid, "the purge never reached the slow row"
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    thread.join(timeout=30)
    assert errors, "the killed purge should have failed"
    removed = 100 - _count(engine)
    assert removed % 10 == 0, "a batch was half done"
    assert _count(engine, "scratch.events_archive") == removed
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER slow ON scratch.events"))
    engine.dispose()  # drop the pooled connection that was terminated
    finished = purge(engine, policies=[EVENTS], now=NOW, batch_size=10)
    assert finished.rows == 100 - removed and finished.finished
    assert _count(engine) == 0
    assert _count(engine, "scratch.events_archive") == 100


def test_policy_validation_and_selection() -> None:
    with pytest.raises(ConfigurationError, match="must use :cutoff"):
        Policy("bad", "scratch.events", "created_at < now()", WINDOW)
    with pytest.raises(ConfigurationError, match="is not a name"):
        Policy("bad", "scratch.events; DROP TABLE x", "created_at < :cutoff", WINDOW)
    with pytest.raises(ConfigurationError, match="no retention policy is named 'nope'"):
        select_policies([EVENTS], only=["nope"])
    (longer,) = select_policies([EVENTS], windows={"events": timedelta(days=90)})
    assert longer.keep_for == timedelta(days=90) and longer.table == EVENTS.table
