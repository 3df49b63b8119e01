"""The detection, metric and compliance queries of revision 0030 on 1M login attempts and 1M
security events.

Builds a database at head (a temporary embedded PostgreSQL, or ``--url``) holding:

- ``--attempts`` login attempts (default 1,000,000) spread evenly over the last
  ``--attempt-days`` days (default 90, the retention window of ``login_attempts``: the table as
  it stands once it holds that many), from 50,000 client addresses (a few very active), 85%
  successes; plus an attack in progress: 150 failed logins from 3 addresses in the last 5
  minutes (brute force), and 2 addresses trying 30 identifiers each in the last hour
  (credential stuffing);
- ``--events`` security events (default 1,000,000) over the last ``--event-days`` days (default
  365, the retention window of ``security_events``), of the types the flows write;
- 100,000 users (2% with a bcrypt hash left to rehash), 200,000 sessions of which 100,000 are
  live (30 users with 11 to 20 each), a refresh and an access token per session, a login audit
  entry per session, 200,000 e-mails and 100,000 text messages (over the last 30 days), 20,000
  step-up tokens;

runs ``VACUUM ANALYZE``, then times each query ``--runs`` times (after one warm-up run) on one
connection as the owner: the invoker-rights function (``auth.<name>()``, what an operator runs
for the details) and its aggregate for the report role (``auth.report_<name>()``, what
``authmodels report`` and the Prometheus collector run), each with its default thresholds. It
prints the median and the maximum of each and writes them to
``benchmarks/results/report_queries.json``, with ``EXPLAIN`` of the slowest. Target: under
50 ms each.

``--attempt-days 30 --event-days 30`` packs the same rows into a month (three and twelve times
denser): each window then holds that much more, and the queries that count a window cost that
much more.

Usage: ``python benchmarks/bench_report_queries.py [--attempts N] [--events N]
[--attempt-days D] [--event-days D] [--runs N] [--url postgresql://...] [--output FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.testing.database import TestServer
from authmodels.testing.migrations import MigrationRunner

RESULTS = Path(__file__).resolve().parent / "results" / "report_queries.json"
TARGET_MS = 50.0

#: The queries of revision 0030 (``auth.<name>()`` and ``auth.report_<name>()``), defaults.
QUERIES = [
    "brute_force",
    "credential_stuffing",
    "session_anomalies",
    "sessions_per_user",
    "login_metrics",
    "failed_logins_by_source",
    "login_attempts_over_time",
    "security_events_summary",
    "security_events_over_time",
    "delivery_summary",
    "sms_costs",
    "dpop_coverage",
    "retention_backlog",
    "partitions_ahead",
    "step_up_usage",
    "legacy_password_hashes",
    "protection_coverage",
    "audit_coverage",
]

DIGEST = "('\\x01026b31'::bytea || sha256(int8send({x})))"
"""A keyed-digest-shaped value (``auth.is_token_digest``: kid ``k1``) derived from ``x``."""

EVENT_TYPES = [
    ("refresh_token.reused", "high"),
    ("dpop.binding_mismatch", "high"),
    ("dpop.proof_replayed", "high"),
    ("login.account_locked", "high"),
    ("login.locked_account_attempt", "medium"),
    ("login.deleted_account_attempt", "medium"),
    ("device_flow.user_code_attempts_exceeded", "medium"),
    ("mfa.totp_replayed", "high"),
    ("step_up.token_reused", "medium"),
    ("api_key.revoked_key_used", "medium"),
    ("admin.unauthorized_role_change", "high"),
    ("webauthn.sign_count_regression", "critical"),
]


def fill(
    conn: psycopg.Connection[Any], attempts: int, events: int, attempt_days: int, event_days: int
) -> None:
    """The data described in the module docstring (as the owner, in a few big statements)."""
    span = "interval '30 days'"
    attempt_span = f"interval '{attempt_days} days'"
    event_span = f"interval '{event_days} days'"
    run = conn.execute
    run(
        "SELECT auth.ensure_monthly_partitions(CAST(t AS regclass), 3, "
        f"(now() - {attempt_span} - interval '1 month')::date) "
        "FROM unnest(ARRAY['auth.login_attempts', 'auth.audit_logs']) AS t"
    )
    run(
        f"""
        INSERT INTO auth.users (email, password_hash, created_at, updated_at, deleted_at)
        SELECT 'user' || i || '@example.com',
               CASE WHEN i % 50 = 0 THEN '$2b$12$' || md5(i::text) || md5(i::text)
                    ELSE '$argon2id$v=19$m=19456,t=2,p=1$' || md5(i::text) END,
               now() - {span} * 2, now() - {span} * 2,
               CASE WHEN i % 200 = 0 THEN now() END
          FROM generate_series(1, 100000) AS i
        """
    )
    run("CREATE TEMP TABLE u AS SELECT row_number() OVER () AS n, id FROM auth.users")
    run("CREATE INDEX ON u (n)")
    # 200,000 sessions: odd ones live; users 1..30 get 11 to 20 extra live sessions
    run(
        f"""
        INSERT INTO auth.sessions (id, user_id, token_hash, refresh_token_hash, dpop_jkt,
                                   ip_hash, is_active, expires_at, created_at, last_activity_at)
        SELECT gen_random_uuid(), u.id, {DIGEST.format(x="i")}, {DIGEST.format(x="-i")},
               CASE WHEN i % 20 = 1 THEN 'jkt' || (i % 1000) END,
               {DIGEST.format(x="i % 50000")},
               i % 2 = 1,
               CASE WHEN i % 2 = 1 THEN now() + interval '7 days' ELSE c + interval '1 hour' END,
               c, c
          FROM generate_series(1::bigint, 200000) AS i
          CROSS JOIN LATERAL (SELECT now() - {span} * random() AS c) AS t
          JOIN u ON u.n = 1 + (i * 7919) % 100000
        UNION ALL
        SELECT gen_random_uuid(), u.id, {DIGEST.format(x="1000000 + j * 100 + k")}, NULL, NULL,
               NULL, true, now() + interval '7 days', now() - interval '1 hour',
               now() - interval '1 hour'
          FROM generate_series(1, 30) AS j JOIN u ON u.n = j,
               generate_series(1, 10 + j % 11) AS k
        """
    )
    run(
        f"""
        INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, dpop_jkt, expires_at,
                                         used_at, created_at)
        SELECT s.user_id, s.id, {DIGEST.format(x="2000000 + row_number() OVER ()")}, s.dpop_jkt,
               greatest(s.expires_at, s.created_at + interval '1 minute'),
               CASE WHEN NOT s.is_active THEN s.created_at + interval '1 minute' END,
               s.created_at
          FROM auth.sessions AS s
        """
    )
    run(
        f"""
        INSERT INTO auth.access_tokens (token_hash, user_id, session_id, client_id, dpop_jkt,
                                        expires_at, created_at)
        SELECT {DIGEST.format(x="3000000 + row_number() OVER ()")}, s.user_id, s.id, 'web',
               s.dpop_jkt,
               CASE WHEN s.is_active THEN now() + interval '10 minutes'
                    ELSE s.created_at + interval '10 minutes' END,
               CASE WHEN s.is_active THEN now() - interval '5 minutes' ELSE s.created_at END
          FROM auth.sessions AS s
        """
    )
    run(
        """
        INSERT INTO auth.audit_logs (user_id, event_type, details, created_at)
        SELECT s.user_id, 'login', jsonb_build_object('session_id', s.id::text, 'dpop_bound',
               s.dpop_jkt IS NOT NULL), s.created_at
          FROM auth.sessions AS s
        """
    )
    # login attempts: even over the span, 50,000 addresses (a few very active), 200,000
    # identifiers
    run(
        f"""
        INSERT INTO auth.login_attempts (user_id, identifier_hash, ip_hash, ua_hash,
                                         attempt_result, failure_reason, created_at)
        SELECT CASE WHEN r <> 'failed_unknown_identifier' THEN u.id END,
               {DIGEST.format(x="ident")}, {DIGEST.format(x="ip")}, {DIGEST.format(x="i % 40")},
               CAST(r AS auth.login_attempt_result),
               CASE WHEN r <> 'success' THEN 'benchmark' END,
               now() - {attempt_span} * (i::float8 / {attempts})
          FROM generate_series(1::bigint, {attempts}) AS i
          CROSS JOIN LATERAL (
              SELECT (i * 7919) % 200000 AS ident,
                     floor(50000 * power(((i * 104729) % 1000003)::float8 / 1000003, 3))::int
                         AS ip,
                     CASE WHEN i % 100 < 85 THEN 'success'
                          WHEN i % 100 < 95 THEN 'failed_password'
                          WHEN i % 100 < 98 THEN 'failed_unknown_identifier'
                          ELSE 'failed_locked' END AS r
          ) AS a
          LEFT JOIN u ON u.n = 1 + a.ident % 100000
        """
    )
    run(
        f"""
        INSERT INTO auth.login_attempts (identifier_hash, ip_hash, attempt_result,
                                         failure_reason, created_at)
        SELECT {DIGEST.format(x="9000000 + i % 40")}, {DIGEST.format(x="8000000 + i % 3")},
               'failed_password'::auth.login_attempt_result, 'benchmark',
               now() - interval '4 minutes' * random()
          FROM generate_series(1, 150) AS i
        UNION ALL
        SELECT {DIGEST.format(x="9100000 + i")}, {DIGEST.format(x="8100000 + i % 2")},
               'failed_unknown_identifier', 'benchmark', now() - interval '50 minutes' * random()
          FROM generate_series(1, 60) AS i
        """
    )
    types = ", ".join(f"('{t}', '{s}')" for t, s in EVENT_TYPES)
    run(
        f"""
        INSERT INTO auth.security_events (user_id, event_type, severity, ip_hash, details,
                                          created_at)
        SELECT CASE WHEN i % 4 <> 0 THEN u.id END, t.event_type,
               CAST(t.severity AS auth.security_event_severity),
               {DIGEST.format(x="i % 50000")}, '{{}}'::jsonb,
               now() - {event_span} * (i::float8 / {events})
          FROM generate_series(1::bigint, {events}) AS i
          JOIN (SELECT row_number() OVER () - 1 AS k, event_type, severity
                  FROM (VALUES {types}) AS v (event_type, severity)) AS t
            ON t.k = (i * 31) % {len(EVENT_TYPES)}
          LEFT JOIN u ON u.n = 1 + (i * 13) % 100000
        """
    )
    for table, extra_columns, extra_values, count in (
        # recipients as the delivery flows keep them (revision 0032): digest-shaped, masked
        (
            "email_delivery_logs",
            "recipient_hash, recipient_masked",
            f"{DIGEST.format(x='i')}, 'u***@example.com'",
            200000,
        ),
        (
            "sms_delivery_logs",
            "recipient_hash, recipient_masked, cost, currency",
            f"{DIGEST.format(x='i')}, '+15*******00', "
            "CASE WHEN i % 10 <> 0 THEN 0.0075 END, "
            "CASE WHEN i % 10 <> 0 THEN (ARRAY['USD', 'KES'])[1 + i % 2] END",
            100000,
        ),
    ):
        run(
            f"""
            INSERT INTO auth.{table} (user_id, template, status, provider, error_message,
                                      sent_at, delivered_at, created_at, updated_at,
                                      {extra_columns})
            SELECT u.id, 'otp', CAST(st AS auth.delivery_status), 'bench',
                   CASE WHEN st = 'failed' THEN 'benchmark' END,
                   CASE WHEN st IN ('sent', 'delivered', 'bounced') THEN c END,
                   CASE WHEN st = 'delivered' THEN c END, c, c, {extra_values}
              FROM generate_series(1, {count}) AS i
              CROSS JOIN LATERAL (
                  SELECT now() - {span} * random() AS c,
                         CASE WHEN i % 100 < 90 THEN 'delivered' WHEN i % 100 < 95 THEN 'sent'
                              WHEN i % 100 < 98 THEN 'failed' WHEN i % 100 < 99 THEN 'bounced'
                              ELSE 'pending' END AS st
              ) AS t
              JOIN u ON u.n = 1 + (i * 17) % 100000
            """
        )
    run(
        f"""
        INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, created_at, expires_at,
                                         used_at)
        SELECT u.id, {DIGEST.format(x="4000000 + i")}, 'role_change', c,
               c + interval '5 minutes', CASE WHEN i % 3 <> 0 THEN c + interval '1 minute' END
          FROM generate_series(1, 20000) AS i
          CROSS JOIN LATERAL (SELECT now() - interval '1 day' * random() AS c) AS t
          JOIN u ON u.n = 1 + (i * 23) % 100000
        """
    )


def time_query(conn: psycopg.Connection[Any], sql: str, runs: int) -> dict[str, Any]:
    """Median and maximum wall time of ``sql`` (fetched whole), after a warm-up run."""
    conn.execute(sql).fetchall()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = conn.execute(sql).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(samples), 2),
        "max_ms": round(max(samples), 2),
        "rows": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--attempt-days", type=int, default=90)
    parser.add_argument("--event-days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--url", default=None, help="server to create the database on")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the database (with --url)")
    args = parser.parse_args()

    server = None
    if args.url:
        admin = sqlalchemy_url(args.url)
    else:
        home = Path(tempfile.mkdtemp(prefix="authmodels-bench-"))
        server = EmbeddedServer(home, delete_on_exit=True)
        admin = sqlalchemy_url(server.url())
    test_server = TestServer(url=admin, kind="url" if args.url else "embedded")
    url: URL = test_server.create_database("bench_report_queries")
    try:
        MigrationRunner(url).upgrade("head")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            started = time.perf_counter()
            fill(conn, args.attempts, args.events, args.attempt_days, args.event_days)
            conn.execute("VACUUM ANALYZE")
            filled = time.perf_counter() - started
            counts = {
                t: conn.execute(f"SELECT count(*) FROM auth.{t}").fetchone()[0]  # type: ignore[index]
                for t in ("login_attempts", "security_events", "users", "sessions", "audit_logs")
            }
            print(
                f"filled in {filled:.0f} s: " + ", ".join(f"{t} {n:,}" for t, n in counts.items())
            )
            print(
                f"{'query':<28} {'invoker median':>15} {'max':>8} {'report median':>14} {'max':>8}"
            )
            results: dict[str, Any] = {}
            for name in QUERIES:
                detail = time_query(conn, f"SELECT * FROM auth.{name}()", args.runs)
                report = time_query(conn, f"SELECT * FROM auth.report_{name}()", args.runs)
                results[name] = {"invoker": detail, "report": report}
                flag = "" if max(detail["max_ms"], report["max_ms"]) < TARGET_MS else "  > 50 ms"
                print(
                    f"{name:<28} {detail['median_ms']:>12.2f} ms {detail['max_ms']:>6.2f} ms "
                    f"{report['median_ms']:>11.2f} ms {report['max_ms']:>6.2f} ms{flag}"
                )
            slowest = max(results, key=lambda n: results[n]["report"]["median_ms"])
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM auth.{slowest}()"
                ).fetchall()
            )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(
                {
                    "benchmark": "benchmarks/bench_report_queries.py",
                    "machine": f"{platform.machine()}, {platform.python_version()}",
                    "attempt_days": args.attempt_days,
                    "event_days": args.event_days,
                    "load_average_during_run": [round(x, 2) for x in os.getloadavg()],
                    "runs": args.runs,
                    "rows": counts,
                    "target_ms": TARGET_MS,
                    "queries": results,
                    "slowest": {"query": slowest, "explain": plan},
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.output}")
    finally:
        if args.keep and args.url:
            print(f"kept {url.render_as_string(hide_password=True)}")
        else:
            test_server.drop_database(str(url.database))
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
