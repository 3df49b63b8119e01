"""Lock cost of the default partitions (revision 0027): how long the log's readers and writers
wait while a month is split out of the default partition, or created, or dropped.

One embedded PostgreSQL (durable settings), a database at head. The default partition of
``auth.audit_logs`` is filled with ``--rows`` rows (default 100,000) of one month without a
partition, plus ``--rows / 10`` of another one. Then, while probes run on their own connections,
each every ``--probe-ms`` milliseconds (default 10), in autocommit:

- ``insert, this month``: an audit entry of now (its month has a partition);
- ``insert, month split``: an entry of the month being split (default partition, then its own);
- ``insert, no partition``: an entry of the other month, which stays in the default partition;
- ``read, last hour``: ``count(*)`` of the last hour through the parent (the default partition
  cannot be pruned: it may hold any month),

four operations run one after the other:

1. ``split_month`` (what ``authmodels partitions ensure`` does per month): copy in batches of
   ``--batch-size`` rows, then the final transaction;
2. the same month split by ``auth.ensure_monthly_partitions`` (pg_cron's path: one transaction,
   which splits the other month too), after the rows were put back into the default partition;
3. ``split_month`` of an empty month ahead (the daily ``ensure``), the other month's rows back in
   the default partition;
4. ``drop_months`` of one old month of ``--rows`` rows, archived (plain ``DETACH``, since a default
   partition forbids ``CONCURRENTLY``);

For each operation and probe: the probe's median latency before the operation, the longest
latency of a probe that overlapped the operation's locking part, and how many probes ran. Each
probe's rows are counted afterwards: none lost, none doubled, none refused (a refused probe is an
error and stops the run).

Usage: ``python benchmarks/bench_default_partition.py [--rows 100000] [--probe-ms 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from sqlalchemy import Engine, text

from authmodels import partitions
from authmodels.db import EmbeddedServer, create_db_engine, libpq_url, sqlalchemy_url
from authmodels.testing.database import TestServer
from authmodels.testing.migrations import MigrationRunner


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class Probe:
    """One probe: a statement run every ``every`` seconds on its own connection."""

    name: str
    statement: str
    params: tuple[object, ...] = ()
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(start, seconds) of each run, on the ``time.perf_counter`` clock."""
    inserted: int = 0

    def run(self, conninfo: str, every: float, stop: threading.Event) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute(self.statement, self.params)
                elapsed = time.perf_counter() - started
                self.samples.append((started, elapsed))
                if self.statement.startswith("INSERT"):
                    self.inserted += 1
                time.sleep(max(0.0, every - elapsed))


@dataclass
class Window:
    """The part of an operation whose locks the probes may wait for: [start, end]."""

    start: float = 0.0
    end: float = 0.0


def _probes(split: date, other: date) -> list[Probe]:
    insert = (
        "INSERT INTO auth.audit_logs (event_type, details, created_at) VALUES ('login', %s, %s)"
    )
    return [
        Probe("insert, this month", insert, ('{"probe": "now"}', datetime.now(UTC))),
        Probe("insert, month split", insert, ('{"probe": "split"}', f"{split} 12:00+00")),
        Probe("insert, no partition", insert, ('{"probe": "other"}', f"{other} 12:00+00")),
        Probe(
            "read, last hour",
            "SELECT count(*) FROM auth.audit_logs WHERE created_at > now() - interval '1 hour'",
        ),
    ]


@contextmanager
def probing(conninfo: str, probes: list[Probe], every: float) -> Iterator[None]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(probe: Probe) -> None:
        try:
            probe.run(conninfo, every, stop)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(p,)) for p in probes]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # a baseline
        yield
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    if errors:
        raise RuntimeError(f"a probe failed (a refused or lost row would show here): {errors}")


def report(title: str, probes: list[Probe], window: Window, seconds: float) -> None:
    print(f"\n{title}: {seconds:.3f} s in all; locking part {window.end - window.start:.3f} s")
    print(f"  {'probe':<24} {'median before':>14} {'max during':>12} {'runs during':>12}")
    for probe in probes:
        before = [s for t, s in probe.samples if t + s < window.start]
        during = [s for t, s in probe.samples if t <= window.end and t + s >= window.start]
        median = statistics.median(before) * 1000 if before else float("nan")
        worst = max(during) * 1000 if during else float("nan")
        print(f"  {probe.name:<24} {median:>11.1f} ms {worst:>9.1f} ms {len(during):>12}")


def fill(engine: Engine, split: date, other: date, rows: int) -> None:
    with engine.begin() as conn:
        for month, count in ((split, rows), (other, rows // 10)):
            conn.execute(
                text(
                    "INSERT INTO auth.audit_logs (event_type, details, correlation_id, created_at) "
                    "SELECT 'login', jsonb_build_object('n', g), 'bench-' || g, "
                    "CAST(:m AS timestamptz) + (g % 2419200) * interval '1 second' "
                    "FROM generate_series(1, :n) g"
                ),
                {"m": f"{month} 00:00+00", "n": count},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE auth.audit_logs_default"))


def check(engine: Engine, probes: list[Probe], seeded: int) -> None:
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM auth.audit_logs")).scalar_one()
        doubled = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT id FROM auth.audit_logs GROUP BY id "
                "HAVING count(*) > 1) d"
            )
        ).scalar_one()
    written = sum(p.inserted for p in probes)
    assert doubled == 0, f"{doubled} rows doubled"
    assert total == seeded + written, f"{total} rows, expected {seeded} + {written}"


def back_to_default(engine: Engine, month: date) -> None:
    """Put the rows of ``month`` back into the default partition (its partition goes)."""
    part = f"auth.audit_logs_p{month:%Y%m}"
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE auth.audit_logs DETACH PARTITION {part}"))
        conn.execute(text(f"INSERT INTO auth.audit_logs SELECT * FROM {part}"))
        conn.execute(text(f"DROP TABLE {part}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE auth.audit_logs_default"))


def timed(operation: Callable[[Window], None]) -> tuple[Window, float]:
    window = Window()
    started = time.perf_counter()
    operation(window)
    return window, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--probe-ms", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=partitions.DEFAULT_SPLIT_BATCH_SIZE)
    args = parser.parse_args()
    every = args.probe_ms / 1000

    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="authmodels-bench-")), delete_on_exit=True)
    test_server = TestServer(url=sqlalchemy_url(server.url()), kind="embedded")
    url = test_server.create_database("bench_default_partition")
    MigrationRunner(url).upgrade("head")
    engine = create_db_engine(url)
    conninfo = libpq_url(url)
    this_month = date.today().replace(day=1)
    split, other = _add_months(this_month, 8), _add_months(this_month, 30)
    seeded = args.rows + args.rows // 10
    table = "auth.audit_logs"
    try:
        fill(engine, split, other, args.rows)
        print(
            f"default partition: {args.rows:,} rows of {split:%Y-%m} and {args.rows // 10:,} of "
            f"{other:%Y-%m}; probes every {args.probe_ms:g} ms, each on its own connection"
        )

        # 1. the Python path, in short transactions
        probes = _probes(split, other)

        def python_split(window: Window) -> None:
            params = {"t": table, "m": split, "n": args.batch_size}
            with engine.begin() as conn:
                conn.execute(
                    text("SELECT auth.prepare_month_partition(CAST(:t AS regclass), :m)"), params
                )
            while True:
                with engine.begin() as conn:
                    copied = conn.execute(
                        text("SELECT auth.copy_month_rows(CAST(:t AS regclass), :m, :n)"), params
                    ).scalar_one()
                if copied < args.batch_size:
                    break
            window.start = time.perf_counter()
            with engine.begin() as conn:
                moved = conn.execute(
                    text("SELECT auth.attach_month_partition(CAST(:t AS regclass), :m)"), params
                ).scalar_one()
            window.end = time.perf_counter()
            assert moved >= args.rows, moved

        with probing(conninfo, probes, every):
            window, seconds = timed(python_split)
        report(
            f"1. partitions.split_month of {split:%Y-%m} (copy in batches of "
            f"{args.batch_size:,}, then the final transaction)",
            probes,
            window,
            seconds,
        )
        check(engine, probes, seeded)
        seeded += sum(p.inserted for p in probes)

        # 2. the SQL function, in one transaction (the rows go back to the default partition)
        back_to_default(engine, split)
        probes = _probes(split, other)

        def sql_ensure(window: Window) -> None:
            window.start = time.perf_counter()
            with engine.begin() as conn:
                created = (
                    conn.execute(
                        text(
                            "SELECT auth.ensure_monthly_partitions(CAST(:t AS regclass), 0, :m, :m)"
                        ),
                        {"t": table, "m": split},
                    )
                    .scalars()
                    .all()
                )
            window.end = time.perf_counter()
            # it gives every month of the default partition its own: the other one too
            assert created == [f"audit_logs_p{split:%Y%m}", f"audit_logs_p{other:%Y%m}"], created

        with probing(conninfo, probes, every):
            window, seconds = timed(sql_ensure)
        report(
            f"2. auth.ensure_monthly_partitions of {split:%Y-%m} (one transaction; all of it "
            "counted as the locking part)",
            probes,
            window,
            seconds,
        )
        check(engine, probes, seeded)
        seeded += sum(p.inserted for p in probes)

        # 3. the daily case: an empty month ahead, with the other month in the default partition
        back_to_default(engine, other)
        probes = _probes(split, other)
        ahead = _add_months(this_month, 12)

        def empty_month(window: Window) -> None:
            window.start = time.perf_counter()
            result = partitions.split_month(engine, table, ahead)
            window.end = time.perf_counter()
            assert result.attached and result.moved == 0, result

        with probing(conninfo, probes, every):
            window, seconds = timed(empty_month)
        report(
            f"3. an empty month ahead ({ahead:%Y-%m}), {args.rows // 10:,} rows of another month "
            "in the default partition",
            probes,
            window,
            seconds,
        )
        check(engine, probes, seeded)
        seeded += sum(p.inserted for p in probes)

        # 4. a month dropped by the purge: plain DETACH, since CONCURRENTLY is refused
        with engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2024-01-01', "
                    "'2024-01-01')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO auth.audit_logs (event_type, details, created_at) "
                    "SELECT 'login', '{}', timestamptz '2024-01-01 00:00+00' "
                    "+ (g % 2592000) * interval '1 second' FROM generate_series(1, :n) g"
                ),
                {"n": args.rows},
            )
        probes = _probes(split, other)

        def drop_month(window: Window) -> None:
            window.start = time.perf_counter()
            dropped = partitions.drop_months(
                engine,
                table,
                before=datetime(2024, 2, 1, tzinfo=UTC),
                archive_to="auth.audit_logs_archive",
            )
            window.end = time.perf_counter()
            assert [d.rows for d in dropped] == [args.rows], dropped

        with probing(conninfo, probes, every):
            window, seconds = timed(drop_month)
        report(
            f"4. partitions.drop_months of one month of {args.rows:,} rows, archived (copy under "
            "SHARE on the month, then DETACH and DROP)",
            probes,
            window,
            seconds,
        )
        check(engine, probes, seeded)
        print("\nno probe was refused; no row lost or doubled")
    finally:
        engine.dispose()
        server.stop()


if __name__ == "__main__":
    main()
