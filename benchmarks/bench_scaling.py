"""Beyond one machine, measured in one run: PgBouncer's cost, a replica's lag and throughput.

On a temporary embedded server at head holding ``--sessions`` sessions (as the owner: what is
measured is the route, not row-level security):

1. **Through PgBouncer** (transaction mode, the Debian 1.18 the tests use): ``validate_session``
   with a transaction per validation and with 100 per transaction, three ways, in alternating
   blocks -- direct with server-side prepared statements (psycopg's and the fast path's: the
   default), direct with them off (``pooler="transaction"``), and through PgBouncer (detected:
   off). Ratios are against the first.
2. **A synchronous hot standby** (``authmodels.testing.replica.Standby``):

   - *revocation-visibility lag*: a logout committed on the primary, then the replica asked
     until it refuses the session; the lag is the time from the revoking call's return to the
     first refused question (0 when the first is refused), with the count of *stale answers*
     (validations accepted after the return). With the rule off (the replica applies the commit
     when it gets to it, as without revision 0035's ``remote_apply``) the lag is the replay delay;
     with it on it must be 0, and the price moves into the revoking call, whose latency is
     printed both ways (p50/p99 of ``--revocations``);
   - *validations/s*: ``--threads`` threads validating for ``--seconds`` on the primary alone,
     then the same threads split between the primary and the replica.

Writes ``benchmarks/results/replicas.json`` and ``benchmarks/results/pooler.json``.

Usage: ``python benchmarks/bench_scaling.py [--sessions 2000] [--validations 3000]
[--revocations 200] [--threads 4] [--seconds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.config import format_key_ring, parse_key_ring
from authmodels.db import EmbeddedServer, create_db_engine, pooler_of, sqlalchemy_url
from authmodels.errors import SessionRevokedError
from authmodels.migrations import alembic_config
from authmodels.models import User
from authmodels.services import FlowSettings, sessions, use_settings
from authmodels.testing.factories import TEST_PASSWORD_HASHER
from authmodels.testing.pgbouncer import PgBouncer
from authmodels.testing.replica import Standby

RESULTS = Path(__file__).resolve().parent / "results"
TTL = timedelta(hours=1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def populate(engine: Engine, settings: FlowSettings, count: int) -> list[str]:
    tokens = []
    with Session(engine, expire_on_commit=False) as db:
        use_settings(db, settings)
        users = [User(email=f"u{i}@example.com", password_hash="!") for i in range(count // 10)]
        db.add_all(users)
        db.flush()
        for i in range(count):
            tokens.append(sessions.create_session(db, users[i % len(users)], ttl=TTL).session_token)
        db.commit()
    return tokens


def validations(engine: Engine, settings: FlowSettings, tokens: list[str], n: int,
                per_transaction: int) -> float:  # fmt: skip
    """Seconds for ``n`` validations, ``per_transaction`` in each transaction."""
    with Session(engine) as db:
        use_settings(db, settings)
        started = time.perf_counter()
        done = 0
        while done < n:
            with db.begin():
                for _ in range(per_transaction):
                    sessions.validate_session(db, tokens[done % len(tokens)])
                    done += 1
        return time.perf_counter() - started


def bench_pooler(url: URL, bouncer: PgBouncer, settings: FlowSettings, tokens: list[str],
                 n: int) -> dict[str, Any]:  # fmt: skip
    routes = {
        "direct, prepared": create_db_engine(url, pooler="direct"),
        "direct, not prepared": create_db_engine(url, pooler="transaction"),
        "PgBouncer (detected)": create_db_engine(bouncer.url(url)),
    }
    with routes["PgBouncer (detected)"].connect() as conn:
        assert pooler_of(conn) == "transaction"
    out: dict[str, Any] = {}
    for per in (1, 100):
        spent = dict.fromkeys(routes, 0.0)
        for _ in range(5):  # alternating blocks: drift hits every route alike
            for name, engine in routes.items():
                spent[name] += validations(engine, settings, tokens, n // 5, per)
        base = spent["direct, prepared"]
        print(f"\nvalidate_session, {per} per transaction ({n} each)")
        for name, seconds in spent.items():
            print(f"  {name:<24} {n / seconds:8,.0f} /s   ratio to direct prepared "
                  f"{base / seconds:5.2f}")  # fmt: skip
        out[f"{per}_per_transaction"] = {
            name: {"per_second": round(n / s), "ratio": round(base / s, 3)}
            for name, s in spent.items()
        }
    for engine in routes.values():
        engine.dispose()
    return out


def revocation_lag(primary: Engine, replica: Engine, settings: FlowSettings, count: int,
                   rule: bool) -> tuple[list[float], list[float], int]:  # fmt: skip
    """(lag until the replica refuses, latency of the revoking call) in ms, and how many
    validations on the replica accepted a session after its revoking call had returned.

    The lag of one revocation is the time from the revoking call's return to the start of the
    first validation the replica refused: 0 when the first one asked already refused."""
    lags, calls = [], []
    stale = [0]
    with primary.begin() as conn:  # revision 0035's rule, on or off
        state = "ENABLE" if rule else "DISABLE"
        conn.execute(
            text(f"ALTER TABLE auth.sessions {state} TRIGGER revocation_waits_for_replicas")
        )
    try:
        with Session(primary, expire_on_commit=False) as db, Session(replica) as ro:
            use_settings(db, settings)
            use_settings(ro, settings)
            user = db.get_one(User, db.query(User.id).limit(1).scalar())
            for _ in range(count):
                issued = sessions.create_session(db, user, ttl=TTL)
                db.commit()
                while True:  # the replica knows it
                    try:
                        with ro.begin():
                            sessions.validate_session(ro, issued.session_token)
                        break
                    except Exception:
                        time.sleep(0.0005)
                stale_before = stale[0]
                started = time.perf_counter()
                sessions.revoke_session(db, issued.session.id)
                db.commit()
                returned = time.perf_counter()
                while True:
                    asked = time.perf_counter()
                    try:
                        with ro.begin():
                            sessions.validate_session(ro, issued.session_token)
                    except SessionRevokedError:
                        break
                    stale[0] += 1  # accepted after the revoking call returned
                # 0 when the first question after the return is refused
                lags.append(max(0.0, asked - returned) * 1000 if stale_before < stale[0] else 0.0)
                calls.append((returned - started) * 1000)
    finally:
        with primary.begin() as conn:
            conn.execute(
                text("ALTER TABLE auth.sessions ENABLE TRIGGER revocation_waits_for_replicas")
            )
    return lags, calls, stale[0]


def throughput(engines: list[Engine], settings: FlowSettings, tokens: list[str], threads: int,
               seconds: float) -> float:  # fmt: skip
    """Validations per second of ``threads`` threads spread over ``engines``."""
    counts = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        with Session(engines[i % len(engines)]) as db:
            use_settings(db, settings)
            while not stop.is_set():
                with db.begin():
                    sessions.validate_session(db, tokens[(i * 7919 + counts[i]) % len(tokens)])
                counts[i] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--validations", type=int, default=3000)
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    server = EmbeddedServer(home, delete_on_exit=True).start()
    bouncer: PgBouncer | None = None
    standby: Standby | None = None
    try:
        url = sqlalchemy_url(server.url())
        command.upgrade(alembic_config(url), "head")
        keys = parse_key_ring(format_key_ring({"k1": secrets.token_bytes(32)}), source="bench")
        settings = FlowSettings(hash_keys=keys, password_hasher=TEST_PASSWORD_HASHER)
        owner = create_db_engine(url)
        tokens = populate(owner, settings, args.sessions)

        bouncer = PgBouncer(url, {"postgres": secrets.token_urlsafe(16)}).start()
        pooler = bench_pooler(url, bouncer, settings, tokens, args.validations)

        standby = Standby(url).start()
        standby.make_synchronous()
        standby.catch_up()
        replica = create_db_engine(standby.url(url))
        rows = {
            "asynchronous (rule off)": revocation_lag(
                owner, replica, settings, args.revocations, False
            ),
            "remote_apply (authmodels)": revocation_lag(
                owner, replica, settings, args.revocations, True
            ),
        }
        print(f"\nrevocation-visibility lag on the replica, {args.revocations} logouts (ms)")
        for name, (lag, call, stale) in rows.items():
            print(f"  {name:<26} lag p50 {percentile(lag, .5):6.2f} p99 {percentile(lag, .99):6.2f}"
                  f"  stale answers {stale:4d}   revoking call p50 {percentile(call, .5):6.2f} "
                  f"p99 {percentile(call, .99):6.2f}")  # fmt: skip
        alone = throughput([owner], settings, tokens, args.threads, args.seconds)
        both = throughput([owner, replica], settings, tokens, args.threads, args.seconds)
        print(f"\nvalidations/s, {args.threads} threads for {args.seconds}s each")
        print(f"  primary alone          {alone:8,.0f} /s")
        print(f"  primary + replica      {both:8,.0f} /s   ratio {both / alone:4.2f}")
        machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
                   "note": "primary, replica and PgBouncer share this machine's cores"}  # fmt: skip
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "pooler.json").write_text(
            json.dumps(
                {"machine": machine, "validations": args.validations, "validate_session": pooler},
                indent=2,
            )
            + "\n"
        )
        (RESULTS / "replicas.json").write_text(
            json.dumps(
                {
                    "machine": machine,
                    "revocations": args.revocations,
                    "lag_ms": {
                        name: {
                            "lag_p50": round(percentile(lag, 0.5), 3),
                            "lag_p99": round(percentile(lag, 0.99), 3),
                            "revoking_call_p50": round(percentile(call, 0.5), 3),
                            "revoking_call_p99": round(percentile(call, 0.99), 3),
                            "stale_answers": stale,
                        }
                        for name, (lag, call, stale) in rows.items()
                    },
                    "validations_per_second": {
                        "threads": args.threads,
                        "seconds": args.seconds,
                        "primary_alone": round(alone),
                        "primary_and_replica": round(both),
                    },
                },
                indent=2,
            )
            + "\n"
        )
        owner.dispose()
        replica.dispose()
    finally:
        if standby is not None:
            standby.stop()
        if bouncer is not None:
            bouncer.stop()
        server.stop()


if __name__ == "__main__":
    main()
