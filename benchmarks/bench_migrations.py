"""How long each hardening revision takes on a baseline-shaped database of realistic size.

Builds a database at ``0001_baseline`` holding, at ``--scale 1``:

- 1,000,000 users (a few admins, some soft-deleted),
- 1,000,000 sessions (unkeyed SHA-256 hex token hashes, IPv4 / IPv4-mapped / IPv6 addresses,
  user agents),
- 1,000,000 access tokens (plaintext, keyed by e-mail, some of it in another letter case),
- 100,000 biometric credentials (hex ids, base64url COSE keys) and 100,000 device flows
  (plaintext codes, pending / approved / consumed),

generated server-side with ``INSERT ... SELECT generate_series`` (a fraction of the rows also
exercises the quarantine paths: e-mails matching no account), then upgrades it one revision at a
time to head and prints each revision's wall time, with the row counts after the run. Each
revision runs as in production: batched backfills in short transactions, indexes built
concurrently, keyed digests computed in Python.

Beside the upgrade a prober (its own process, two connections) plays the application: every
50 ms a short read of ``auth.users`` (one row by primary key) and a short write to
``auth.sessions`` (one row's ``last_activity_at``), each in its own transaction with
``lock_timeout`` (``--probe-timeout``, 10 s). Per revision the script prints the wall time and
the longest wait of any probe (a probe that starts during a revision counts for it), and writes
every figure, the machine's load and the row and quarantine counts at head as JSON
(``--json``, ``benchmarks/results/migrations.json`` by default).

``--baseline-db NAME`` keeps the populated baseline as a database of that name on the server
(``--url``) and reuses it on the next run, which then starts from a copy of it; ``--until``
stops at a revision.

The server is a temporary embedded PostgreSQL (deleted at the end) unless ``--url`` names a
server to create the database on. Hash keys are generated for the run unless
``AUTHMODELS_HASH_KEYS`` is set.

Usage: ``python benchmarks/bench_migrations.py [--scale 0.01] [--url postgresql://...]
[--baseline-db NAME] [--until REVISION] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from psycopg import sql
from sqlalchemy.engine import URL

from authmodels.config import HASH_KEYS_VAR, format_key_ring
from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.migrations import alembic_config
from authmodels.testing.migrations import revision_ids

BASELINE = "0001_baseline"
RESULTS = Path(__file__).resolve().parent / "results"
BASE20 = "BCDFGHJKLMNPQRSTVWXZ"

# Deterministic ids: user i is md5('u' || i)::uuid, so child rows reference users without a join.
POPULATE = [
    (
        "users",
        """
        INSERT INTO auth.users (id, email, password_hash, role, email_verified, created_at,
                                updated_at, last_login_at, deleted_at)
        SELECT md5('u' || i)::uuid,
               'user' || i || '@example.com',
               -- bcrypt-shaped, as seed 004's users hold (nothing signs in here)
               '$2b$12$' || rpad(translate(md5('p' || i), '0123456789abcdef', 'ABCDEFGHIJKLMNOP'), 53, 'x'),
               CASE WHEN i %% 10000 = 0 THEN 'admin' ELSE 'user' END,
               i %% 3 <> 0,
               now() - (i %% 1000) * interval '1 hour',
               now() - (i %% 500) * interval '1 hour',
               now() - (i %% 100) * interval '1 hour',
               CASE WHEN i %% 500 = 0 THEN now() - interval '1 day' END
          FROM generate_series(1, %(users)s) AS i
        """,
    ),
    (
        "sessions",
        """
        INSERT INTO auth.sessions (user_id, token_hash, refresh_token_hash, ip_address,
                                   user_agent, device_fingerprint, is_active, expires_at,
                                   last_activity_at, created_at)
        SELECT md5('u' || (1 + i %% %(users)s))::uuid,
               encode(sha256(('session-' || i)::bytea), 'hex'),
               encode(sha256(('refresh-' || i)::bytea), 'hex'),
               CASE i %% 4
                   WHEN 0 THEN ('10.' || (i >> 16) %% 256 || '.' || (i >> 8) %% 256 || '.'
                                || i %% 256)::inet
                   WHEN 1 THEN ('::ffff:192.0.2.' || i %% 256)::inet
                   WHEN 2 THEN ('2001:db8::' || to_hex(i >> 16) || ':' || to_hex(i & 65535))::inet
               END,
               'Mozilla/5.0 (bench ' || i %% 50 || ')',
               md5('fp' || i %% 1000),
               i %% 5 <> 0,
               now() + (i %% 30 - 5) * interval '1 day',
               now() - (i %% 60) * interval '1 minute',
               now() - interval '30 days'
          FROM generate_series(1, %(sessions)s) AS i
        """,
    ),
    (
        "access_tokens",
        """
        INSERT INTO auth.access_tokens (token, user_email, client_id, scope, expires_at,
                                        created_at)
        SELECT 'at-' || md5('access-' || i) || i,
               CASE WHEN i %% 1000 = 0 THEN 'nobody' || i || '@example.com'
                    WHEN i %% 7 = 0 THEN upper('user' || (1 + i %% %(users)s) || '@example.com')
                    ELSE 'user' || (1 + i %% %(users)s) || '@example.com' END,
               'client-' || i %% 20,
               'read write',
               now() + (i %% 48 - 12) * interval '1 hour',
               now() - interval '2 days'
          FROM generate_series(1, %(access_tokens)s) AS i
        """,
    ),
    (
        "biometric_credentials",
        """
        INSERT INTO auth.biometric_credentials (user_email, credential_id, public_key,
                                                sign_count, device_name, created_at)
        SELECT CASE WHEN i %% 1000 = 0 THEN 'nobody' || i || '@example.com'
                    ELSE 'user' || (1 + i %% %(users)s) || '@example.com' END,
               encode(sha256(('credential-' || i)::bytea), 'hex'),
               rtrim(translate(encode(sha512(('cose-' || i)::bytea), 'base64'), E'+/\\n', '-_'),
                     '='),
               i %% 1000,
               'key ' || i,
               now() - (i %% 365) * interval '1 day'
          FROM generate_series(1, %(credentials)s) AS i
        """,
    ),
    (
        "device_flows",
        f"""
        INSERT INTO auth.device_flows (device_code, user_code, client_id, scope, status,
                                       user_email, expires_at, created_at)
        SELECT 'dc-' || md5('device-' || i),
               -- 8 base-20 characters from i: unique, shown as XXXX-XXXX
               (SELECT string_agg(substr('{BASE20}', (1 + (i / power(20, k)::bigint) %% 20)::int, 1), ''
                                  ORDER BY k)
                  FROM generate_series(0, 3) AS k)
               || '-' ||
               (SELECT string_agg(substr('{BASE20}', (1 + (i / power(20, k + 4)::bigint) %% 20)::int,
                                         1), '' ORDER BY k)
                  FROM generate_series(0, 3) AS k),
               'tv-app',
               'openid',
               CASE i %% 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'approved' ELSE 'consumed' END,
               CASE WHEN i %% 3 <> 0 THEN 'user' || (1 + i %% %(users)s) || '@example.com' END,
               now() + (i %% 20 - 10) * interval '1 minute',
               now() - interval '1 hour'
          FROM generate_series(1, %(flows)s) AS i
        """,
    ),
]


def _counts(scale: float) -> dict[str, int]:
    return {
        "users": max(10, round(1_000_000 * scale)),
        "sessions": max(10, round(1_000_000 * scale)),
        "access_tokens": max(10, round(1_000_000 * scale)),
        "credentials": max(10, round(100_000 * scale)),
        "flows": max(10, round(100_000 * scale)),
    }


# --- the prober: the application's reads and writes while the upgrade runs -----------------------

PROBE_INTERVAL = 0.05
#: One row each, by primary key: what a request does. User 1 and the session of ``i = 1``.
PROBES = {
    "read": ("SELECT id FROM auth.users WHERE id = md5('u1')::uuid", None),
    "write": (
        "UPDATE auth.sessions SET last_activity_at = now() WHERE id = %(id)s",
        "SELECT id FROM auth.sessions ORDER BY id LIMIT 1",
    ),
}


@dataclass(frozen=True)
class Probe:
    """One probe: its kind, when it started (``time.monotonic``), how long it took, its error."""

    kind: str
    started: float
    seconds: float
    error: str | None


def _probe_loop(
    dsn: str, kind: str, timeout_s: float, stop: Any, out: Any, ready: Any
) -> None:  # pragma: no cover - runs in the prober process
    statement, find_id = PROBES[kind]
    probes: list[Probe] = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'")
        params: dict[str, Any] = {}
        if find_id is not None:
            params["id"] = conn.execute(find_id).fetchone()[0]  # type: ignore[index]
        ready.set()
        next_at = time.monotonic()
        parent = os.getppid()
        while not stop.is_set() and os.getppid() == parent:  # ends with the benchmark
            started = time.monotonic()
            error = None
            try:
                conn.execute(statement, params)
            except psycopg.Error as exc:  # a lock timeout, or the schema changing under it
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            probes.append(Probe(kind, started, time.monotonic() - started, error))
            next_at = max(next_at + PROBE_INTERVAL, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
    out.put(probes)


def _prober(
    dsn: str, timeout_s: float, stop: Any, out: Any, ready: Any
) -> None:  # pragma: no cover
    events = [threading.Event() for _ in PROBES]
    threads = [
        threading.Thread(target=_probe_loop, args=(dsn, kind, timeout_s, stop, out, event))
        for kind, event in zip(PROBES, events, strict=True)
    ]
    for thread in threads:
        thread.start()
    for event in events:
        event.wait()
    ready.set()
    for thread in threads:
        thread.join()


class Prober:
    """The prober process, started before the first revision and stopped after the last."""

    def __init__(self, dsn: str, timeout_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._out: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_prober, args=(dsn, timeout_s, self._stop, self._out, self._ready)
        )

    def __enter__(self) -> Prober:
        self._process.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def results(self) -> list[Probe]:
        """Every probe, once the prober has stopped."""
        probes = [probe for _ in PROBES for probe in self._out.get()]
        self._process.join()
        return sorted(probes, key=lambda probe: probe.started)


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    parser.add_argument("--url", help="admin URL of a server to create the database on")
    parser.add_argument("--baseline-db", help="keep (and reuse) the populated baseline as NAME")
    parser.add_argument("--until", help="stop after this revision (default: head)")
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="lock_timeout, s")
    parser.add_argument("--json", type=Path, default=RESULTS / "migrations.json")
    parser.add_argument(
        "--no-cancel-autovacuum",
        dest="cancel_autovacuum",
        action="store_false",
        help="leave autovacuum workers alone before DDL (-x cancel_autovacuum=false)",
    )
    args = parser.parse_args()

    if not os.environ.get(HASH_KEYS_VAR):
        os.environ[HASH_KEYS_VAR] = format_key_ring({"bench": secrets.token_bytes(32)})

    server = None
    if args.url:
        admin = sqlalchemy_url(args.url)
    else:
        home = Path(tempfile.mkdtemp(prefix="authmodels-bench-migrations-"))
        server = EmbeddedServer(home, delete_on_exit=True)
        admin = sqlalchemy_url(server.url())
    name = f"bench_migrations_{secrets.token_hex(4)}"
    counts = _counts(args.scale)
    report: dict[str, Any] = {
        "benchmark": "bench_migrations.py",
        "scale": args.scale,
        "rows": counts,
        "probe_interval_s": PROBE_INTERVAL,
        "probe_lock_timeout_s": args.probe_timeout,
        "cancel_autovacuum": args.cancel_autovacuum,
        "load_average_before": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        report["server_version"] = conn.info.server_version
        if (
            args.baseline_db
            and conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (args.baseline_db,)
            ).fetchone()
        ):
            print(f"copying the populated baseline {args.baseline_db}")
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(args.baseline_db)
                )
            )
            populate = False
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            populate = True
    url = admin.set(database=name)
    try:
        if populate:
            report["populate_s"] = _populate(url, counts)
            if args.baseline_db:
                with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(args.baseline_db), sql.Identifier(name)
                        )
                    )
        _run(url, args.until, args.probe_timeout, report, args.cancel_autovacuum)
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
    report["load_average_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.json}")


def _populate(url: URL, counts: dict[str, int]) -> dict[str, float]:
    command.upgrade(alembic_config(url), BASELINE)
    print(f"populating {BASELINE}: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    seconds: dict[str, float] = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for table, statement in POPULATE:
            started = time.perf_counter()
            conn.execute(statement, counts)
            seconds[table] = time.perf_counter() - started
            print(f"  {table:<24} {seconds[table]:8.1f} s")
        # a production table is vacuumed and analysed; a freshly loaded one would have
        # autovacuum competing with the migration for the whole run
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        seconds["vacuum_analyze"] = time.perf_counter() - started
        print(f"  {'VACUUM ANALYZE':<24} {seconds['vacuum_analyze']:8.1f} s")
    return seconds


def _run(
    url: URL, until: str | None, probe_timeout: float, report: dict[str, Any], cancel: bool
) -> None:
    cfg = alembic_config(url, cancel_autovacuum=cancel)
    revisions = revision_ids()[1:]
    if until is not None:
        revisions = revisions[: revisions.index(until) + 1]
    windows: list[tuple[str, float, float]] = []
    with Prober(libpq_url(url), probe_timeout) as prober:
        for revision in revisions:
            started = time.monotonic()
            command.upgrade(cfg, revision)
            windows.append((revision, started, time.monotonic()))
            print(f"  {revision:<30} {windows[-1][2] - started:9.1f} s", flush=True)
    probes = prober.results()

    print(f"\n{'revision':<30} {'seconds':>9} {'max probe wait':>15} {'probes':>7} {'errors':>7}")
    report["revisions"] = []
    for revision, started, ended in windows:
        mine = [p for p in probes if started <= p.started < ended]
        worst = max(mine, key=lambda p: p.seconds, default=None)
        errors = sorted({p.error for p in mine if p.error})
        entry = {
            "revision": revision,
            "seconds": round(ended - started, 3),
            "max_probe_wait_s": round(worst.seconds, 4) if worst else None,
            "max_probe_kind": worst.kind if worst else None,
            "max_read_wait_s": _worst(mine, "read"),
            "max_write_wait_s": _worst(mine, "write"),
            "probes": len(mine),
            "probe_errors": errors,
        }
        report["revisions"].append(entry)
        wait = "-" if worst is None else f"{worst.seconds:.3f} ({worst.kind})"
        print(
            f"{revision:<30} {ended - started:9.1f} {wait:>15} {len(mine):>7} "
            f"{sum(1 for p in mine if p.error):>7}",
            flush=True,
        )
        for error in errors:
            print(f"    probe error: {error}")
    report["total_s"] = round(sum(e["seconds"] for e in report["revisions"]), 3)
    report["max_probe_wait_s"] = max(
        (e["max_probe_wait_s"] or 0.0 for e in report["revisions"]), default=0.0
    )
    print(f"{'total':<30} {report['total_s']:9.1f} {report['max_probe_wait_s']:15.3f}")

    with psycopg.connect(libpq_url(url)) as conn:
        tables = [
            str(row[0])
            for row in conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'auth' "
                "AND relname IN ('users', 'sessions', 'access_tokens', 'webauthn_credentials', "
                "'biometric_credentials', 'device_flows', 'quarantine') ORDER BY relname"
            )
        ]
        exact = {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM auth.{}").format(sql.Identifier(table))
            ).fetchone()[0]  # type: ignore[index]  # count(*) always returns a row
            for table in tables
        }
        quarantined = {
            f"{source} ({revision})": n
            for source, revision, n in conn.execute(
                "SELECT source_table, revision, count(*) FROM auth.quarantine "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            )
        }
    report["rows_after"] = exact
    report["quarantine"] = quarantined
    print("\nrows after: " + ", ".join(f"{t}={n:,}" for t, n in exact.items()))
    print("quarantined: " + ", ".join(f"{k}={n:,}" for k, n in quarantined.items()))


def _worst(probes: list[Probe], kind: str) -> float | None:
    waits = [p.seconds for p in probes if p.kind == kind]
    return round(max(waits), 4) if waits else None


if __name__ == "__main__":
    main()
