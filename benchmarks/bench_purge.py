"""Retention at scale: purge throughput, batch length, memory, and dropping a month.

Measured in one run on one embedded PostgreSQL (durable settings, as in production):

1. Purging the expired half of a sessions table (default: 1,000,000 expired out of 2,000,000)
   with the ``sessions`` policy of ``auth.retention_policies``: rows per second, the longest
   single batch transaction, and the peak memory (max RSS) of the purging process -- measured in
   a child process, once for the full count and once for a quarter of it, to show that memory does
   not grow with the number of rows.
2. Removing one month of audit entries (default 1,000,000) by dropping its partition
   (``authmodels.partitions.drop_months``) vs by batched DELETE of the same rows from an
   unpartitioned copy of the table: both times and the ratio.
   The same purge is then measured with a refresh token per session, and on a second database
   at revision 0017, where four foreign keys still pointed at ``sessions`` (the baseline that
   revision 0018 replaced with set-based triggers; given head's batch function, revision 0029's,
   so that only the foreign keys differ): both rates and the ratio.
3. Throughput against batch size (a sweep), written as a PNG plot to
   ``docs/benchmarks/purge-throughput.png`` (with ``--plot``; needs matplotlib).
4. One purge engine (revision 0029): the same sessions purged by ``purge`` through the SQL
   function ``auth.purge_batch`` and by the batch statement the Python purge sent itself before
   0029, in alternating rounds on the same data: the median rows per second of each and the
   ratio.

Usage: ``python benchmarks/bench_purge.py [--sessions 2000000] [--audit 1000000] [--plot]``
(``--scale 0.1`` divides every count by ten for a quick run).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from authmodels import partitions
from authmodels.db import EmbeddedServer, create_db_engine, libpq_url, sqlalchemy_url
from authmodels.migrations import alembic_config
from authmodels.retention import ENGINE_REVISION, Policy, load_policies, purge, select_policies
from authmodels.testing.database import TestServer
from authmodels.testing.migrations import MigrationRunner

ROOT = Path(__file__).resolve().parents[1]
#: The last revision where foreign keys (row-level triggers) pointed at sessions.
BEFORE_SET_BASED_CASCADE = "0017_user_self_update_guard"


def _sessions_policy(engine: Engine) -> Policy:
    with engine.connect() as conn:
        (policy,) = select_policies(load_policies(conn), only=["sessions"])
    return policy


def install_purge_batch(engine: Engine) -> None:
    """Give a database below 0029 head's batch function, so its purge runs the same statement."""
    script = ScriptDirectory.from_config(alembic_config())
    definition = script.get_revision(ENGINE_REVISION).module.PURGE_BATCH_FUNCTION
    with engine.begin() as conn:
        conn.execute(text(definition))


def fill_sessions(engine: Engine, expired: int, live: int, *, with_tokens: bool = False) -> None:
    """``expired`` sessions that ended 60 days ago and ``live`` ones, for 1,000 users.

    With ``with_tokens``, every session also gets one refresh token (which the purge of an
    expired session removes with it).
    """
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE auth.sessions CASCADE"))
        conn.execute(
            text(
                "INSERT INTO auth.users (email, password_hash) SELECT 'u' || g || '@bench.test', "
                "'!unusable' FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING"
            )
        )
        for count, ends in (
            (expired, "now() - interval '60 days'"),
            (live, "now() + interval '1 day'"),
        ):
            conn.execute(
                text(
                    "INSERT INTO auth.sessions (user_id, token_hash, expires_at, created_at) "
                    # the shape of a TokenHasher digest under key "k1" (0026 checks it)
                    "SELECT u.ids[1 + g % 1000], '\\x01026b31'::bytea "
                    "|| sha256(convert_to(g::text || random()::text, 'UTF8')), "
                    f"{ends}, {ends} - interval '1 day' "
                    "FROM generate_series(1, :n) g, "
                    "(SELECT array_agg(id) AS ids FROM auth.users) u"
                ),
                {"n": count},
            )
        if with_tokens:
            conn.execute(
                text(
                    "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, "
                    "expires_at, created_at) SELECT user_id, id, token_hash, expires_at, "
                    "created_at FROM auth.sessions"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE auth.sessions"))
        conn.execute(text("VACUUM ANALYZE auth.refresh_tokens"))


def child_purge(url: str, batch_size: int) -> None:
    """Run in a child process: purge the sessions policy, print figures and max RSS as JSON."""
    engine = create_db_engine(url)
    report = purge(engine, policies=[_sessions_policy(engine)], batch_size=batch_size)
    engine.dispose()
    print(
        json.dumps(
            {
                "rows": report.rows,
                "seconds": report.seconds,
                "longest_batch": report.longest_batch_seconds,
                "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def run_child(url: str, batch_size: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-purge", url, "--batch-size", str(batch_size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def month_drop_vs_delete(engine: Engine, count: int) -> tuple[float, float]:
    """Seconds to remove one month of ``count`` audit entries: drop partition vs batched DELETE."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2024-01-01', '2024-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO auth.audit_logs (event_type, details, created_at) "
                "SELECT 'login', '{}'::jsonb, timestamptz '2024-01-01 00:00+00' "
                "+ (g % 2592000) * interval '1 second' FROM generate_series(1, :n) g"
            ),
            {"n": count},
        )
        # the same rows in an unpartitioned table with the same indexes
        conn.execute(text("DROP TABLE IF EXISTS auth.audit_logs_plain"))
        conn.execute(
            text("CREATE TABLE auth.audit_logs_plain (LIKE auth.audit_logs INCLUDING ALL)")
        )
        conn.execute(
            text("INSERT INTO auth.audit_logs_plain SELECT * FROM auth.audit_logs_p202401")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE auth.audit_logs_plain"))
    started = time.perf_counter()
    dropped = partitions.drop_months(
        engine, "auth.audit_logs", before=datetime(2024, 2, 1, tzinfo=UTC)
    )
    drop_seconds = time.perf_counter() - started
    assert sum(d.rows for d in dropped) == count, dropped
    plain = Policy(
        name="audit_logs_plain",
        table="auth.audit_logs_plain",
        expired="created_at < :cutoff",
        keep_for=timedelta(0),
    )
    report = purge(engine, policies=[plain], now=datetime(2024, 2, 1, tzinfo=UTC))
    assert report.rows == count
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE auth.audit_logs_plain"))
    return drop_seconds, report.seconds


def _batch_statement_before_0029(policy: Policy) -> str:
    """The batch statement the Python purge built and sent itself before revision 0029."""
    pick = (
        f"SELECT {policy.key} FROM {policy.table} WHERE {policy.expired} "
        f"LIMIT :batch_size FOR UPDATE SKIP LOCKED"
    )
    return f"DELETE FROM {policy.table} t WHERE t.{policy.key} = ANY(ARRAY({pick}))"


def purge_before_0029(engine: Engine, policy: Policy, batch_size: int) -> tuple[int, float]:
    """The pre-0029 batch loop: (rows, seconds)."""
    statement = text(_batch_statement_before_0029(policy))
    cutoff = datetime.now(UTC) - policy.keep_for
    rows, started = 0, time.perf_counter()
    with engine.connect() as conn:
        while True:
            with conn.begin():
                removed = conn.execute(
                    statement, {"cutoff": cutoff, "batch_size": batch_size}
                ).rowcount
            rows += removed
            if removed < batch_size:
                break
    return rows, time.perf_counter() - started


def engine_vs_before(engine: Engine, sessions: int, batch_size: int, rounds: int) -> None:
    """Section 4: ``auth.purge_batch`` vs the pre-0029 statement, alternating, same data."""
    policy = _sessions_policy(engine)
    expired = sessions // 2
    rates: dict[str, list[float]] = {"engine": [], "before": []}
    for _ in range(rounds):
        for which in ("engine", "before"):
            fill_sessions(engine, expired, sessions - expired)
            if which == "engine":
                report = purge(engine, policies=[policy], batch_size=batch_size)
                rows, seconds = report.rows, report.seconds
            else:
                rows, seconds = purge_before_0029(engine, policy, batch_size)
            assert rows == expired, (which, rows)
            rates[which].append(rows / seconds)
    engine_rate = statistics.median(rates["engine"])
    before_rate = statistics.median(rates["before"])
    print(
        f"4. one purge engine: {expired:,} expired sessions of {sessions:,}, {rounds} rounds each"
    )
    for which, label in (
        ("engine", "auth.purge_batch (0029)"),
        ("before", "statement sent by Python"),
    ):
        figures = ", ".join(f"{r:,.0f}" for r in rates[which])
        print(
            f"   {label:<26} median {statistics.median(rates[which]):>10,.0f} rows/s  ({figures})"
        )
    print(f"   engine / before          {engine_rate / before_rate:>12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2_000_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--plot", action="store_true", help="sweep batch sizes, write the PNG")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of section 4")
    parser.add_argument("--child-purge", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_purge:
        child_purge(args.child_purge, args.batch_size)
        return

    sessions = int(args.sessions * args.scale)
    audit = int(args.audit * args.scale)
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="authmodels-bench-")), delete_on_exit=True)
    admin = sqlalchemy_url(server.url())
    test_server = TestServer(url=admin, kind="embedded")
    url = test_server.create_database("bench_purge")
    MigrationRunner(url).upgrade("head")
    engine = create_db_engine(url)
    child_url = libpq_url(url)
    try:
        print(
            f"1. purge {sessions // 2:,} expired sessions of {sessions:,} (batch {args.batch_size:,})"
        )
        results = {}
        for expired in (sessions // 8, sessions // 2):
            started = time.perf_counter()
            fill_sessions(engine, expired, sessions - expired)
            print(f"   filled {sessions:,} sessions in {time.perf_counter() - started:.1f} s")
            results[expired] = run_child(child_url, args.batch_size)
        small, full = results[sessions // 8], results[sessions // 2]
        assert full["rows"] == sessions // 2, full
        print(
            f"   rows/s                 {full['rows'] / full['seconds']:>12,.0f}  (target >= 100,000)"
        )
        print(
            f"   longest batch          {full['longest_batch'] * 1000:>12.1f} ms  (target <= 250 ms)"
        )
        print(
            f"   peak RSS of the purge  {full['max_rss_kb'] / 1024:>12.1f} MiB for {sessions // 2:,} rows, "
            f"{small['max_rss_kb'] / 1024:.1f} MiB for {sessions // 8:,} rows "
            f"(ratio {full['max_rss_kb'] / small['max_rss_kb']:.2f})"
        )

        small_rate = small["rows"] / small["seconds"]

        expired = sessions // 8
        fill_sessions(engine, expired, sessions - expired, with_tokens=True)
        tokens = run_child(child_url, args.batch_size)
        print(
            f"   with a refresh token per session ({expired:,} expired sessions of {sessions:,}, "
            f"their tokens removed with them): {tokens['rows'] / tokens['seconds']:,.0f} "
            f"sessions/s, longest batch {tokens['longest_batch'] * 1000:.1f} ms"
        )

        # baseline: the same purge where four foreign keys point at sessions (before 0018)
        fk_url = test_server.create_database("bench_purge_fk")
        MigrationRunner(fk_url).upgrade(BEFORE_SET_BASED_CASCADE)
        fk_engine = create_db_engine(fk_url)
        try:
            install_purge_batch(fk_engine)
            fill_sessions(fk_engine, expired, sessions - expired)
            baseline = run_child(libpq_url(fk_url), args.batch_size)
        finally:
            fk_engine.dispose()
        fk_rate = baseline["rows"] / baseline["seconds"]
        print(
            f"   baseline at {BEFORE_SET_BASED_CASCADE} (four foreign keys, {expired:,} expired): "
            f"{fk_rate:,.0f} rows/s, longest batch {baseline['longest_batch'] * 1000:.1f} ms; "
            f"head on the same rows {small_rate:,.0f} rows/s: head / baseline "
            f"{small_rate / fk_rate:.1f}x"
        )

        print(f"2. remove one month of {audit:,} audit entries")
        drop_s, delete_s = month_drop_vs_delete(engine, audit)
        print(f"   drop the partition     {drop_s * 1000:>12.1f} ms")
        print(f"   batched DELETE         {delete_s * 1000:>12.1f} ms")
        print(f"   DELETE / drop          {delete_s / drop_s:>12.0f}x")

        if args.plot:
            sweep = [500, 1000, 2000, 5000, 10000, 20000, 50000]
            rates = []
            expired = max(sessions // 10, 50_000)
            for size in sweep:
                fill_sessions(engine, expired, 0)
                figures = run_child(child_url, size)
                rates.append(figures["rows"] / figures["seconds"])
                print(
                    f"   batch {size:>6,}: {rates[-1]:>10,.0f} rows/s, longest batch {figures['longest_batch'] * 1000:.1f} ms"
                )
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(sweep, rates, marker="o")
            ax.set_xscale("log")
            ax.set_xlabel("batch size (rows per transaction)")
            ax.set_ylabel("rows purged per second")
            ax.set_title(f"Purge throughput, sessions policy, {expired:,} expired rows")
            ax.grid(True, which="both", alpha=0.3)
            out = ROOT / "docs" / "benchmarks" / "purge-throughput.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.tight_layout()
            fig.savefig(out, dpi=110)
            print(f"3. wrote {out.relative_to(ROOT)}")

        engine_vs_before(engine, sessions, args.batch_size, args.rounds)
    finally:
        engine.dispose()
        server.stop()


if __name__ == "__main__":
    main()
