"""authmodels' session validation beside a peer's: fastapi-users' database token strategy, per
request, on the same server, in one run.

The peer is what a Python developer would otherwise pick for server-side sessions:
``fastapi-users-db-sqlalchemy`` (``SQLAlchemyAccessTokenDatabase.get_by_token``, as
``DatabaseStrategy.read_token`` calls it, with a new ``AsyncSession`` on asyncpg per request). It
stores tokens in plain text; authmodels stores keyed digests only (and looks up both digest
schemes under every key of the ring). The peer needs SQLAlchemy < 2.1, so it runs in a
virtualenv of its own that this script creates (``--peer-venv``, kept for the next run; its
packages come from the package index pip is configured with), as a child process
(``peer_fastapi_users.py``) on a database of its own on the same server, 100,000 tokens.

authmodels' side, on a database at head with 100,000 sessions (``bench_sessions.populate``), one
client, driven the same way -- a new ORM session per request from a session factory:

- **sync**: :func:`~authmodels.services.sessions.validate_session_alone` with a new ``Session``;
- **async**: :func:`authmodels.aio.sessions.validate_session_alone` with a new ``AsyncSession``
  (psycopg's asyncio driver, ``create_async_db_engine``): the same one round trip;
- and, for reference, the same two with :func:`~authmodels.services.sessions.validate_session`
  and a commit (the way to validate before ``validate_session_alone``).

- **validator**: :class:`~authmodels.services.sessions.SessionValidator` and its async twin
  :class:`authmodels.aio.sessions.SessionValidator` (no ORM session per request: the same
  statement on connections of their own, kept in autocommit).

The peer only reads; authmodels' validation also touches ``last_activity_at`` once per
``session_touch_interval``: the run sets it to ``--touch-interval`` (20 minutes, longer than the
run; sessions are written with ``last_activity_at = now()``), so neither side writes, as for a
session validated more often than once per interval.

Engines have ``pool_pre_ping`` off on both sides (SQLAlchemy's default; authmodels'
``create_db_engine`` turns it on, which costs a round trip per request). The sides run
``--requests`` requests per round, ``--rounds`` rounds in rotating order; each figure is the
median round, in microseconds per request. The ratio is the peer's time over authmodels' (above
1: authmodels is faster). Writes ``benchmarks/results/peer.json``.

Usage: ``python benchmarks/bench_peer.py [--requests 2000] [--rounds 5] [--url ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from bench_sessions import on_a_new_database, populate
from psycopg import sql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from authmodels.aio import sessions as aio_sessions
from authmodels.config import Settings
from authmodels.db import create_async_db_engine, create_db_engine, libpq_url
from authmodels.migrations import alembic_config
from authmodels.security.hashing import TokenHasher
from authmodels.services import FlowSettings, sessions
from authmodels.services.settings import SETTINGS_KEY

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PEER_REQUIREMENTS = [
    "fastapi-users-db-sqlalchemy==7.0.0",
    "sqlalchemy[asyncio]>=2.0,<2.1",
    "asyncpg",
]
DEFAULT_VENV = Path.home() / ".cache" / "authmodels-bench" / "peer-venv"
PEER = "fastapi-users get_by_token (async)"
SIDES = [
    PEER,
    "authmodels validate_session_alone (sync)",
    "authmodels validate_session_alone (async, aio)",
    "authmodels validate_session + commit (sync)",
    "authmodels validate_session + commit (async, aio)",
    "authmodels SessionValidator (sync)",
    "authmodels SessionValidator (async, aio)",
]


def peer_python(venv: Path) -> Path:
    """The peer virtualenv's interpreter, created with the peer's packages when missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the peer's virtualenv in {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return python


def peer_versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], check=True, capture_output=True
    ).stdout
    wanted = {"fastapi-users", "fastapi-users-db-sqlalchemy", "sqlalchemy", "asyncpg"}
    return {p["name"]: p["version"] for p in json.loads(out) if p["name"].lower() in wanted}


class Peer:
    """The peer's child process: ``measure(n)`` returns the seconds n requests took."""

    def __init__(self, python: Path, url: URL, tokens: int) -> None:
        asyncpg_url = url.set(drivername="postgresql+asyncpg")
        self.process = subprocess.Popen(
            [str(python), str(HERE / "peer_fastapi_users.py"),
             asyncpg_url.render_as_string(hide_password=False), "--tokens", str(tokens)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self._line() != "ready":
            raise RuntimeError("the peer's process did not start")

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def measure(self, requests: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"measure {requests}\n")
        self.process.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=30)


def run(url: URL, args: argparse.Namespace) -> None:
    command.upgrade(alembic_config(url), "head")
    settings = FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        session_touch_interval=timedelta(seconds=args.touch_interval),
    )
    tokens, _ = populate(url, TokenHasher.from_ring(settings.hash_keys), args.tokens)
    draw = random.Random(7).choice

    python = peer_python(args.peer_venv)
    peer_db = f"{url.database}_peer"
    admin = libpq_url(url.set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(peer_db)))
    engine = create_db_engine(url, pool_pre_ping=False)
    factory = sessionmaker(engine, info={SETTINGS_KEY: settings})
    async_engine = create_async_db_engine(url, pool_pre_ping=False)
    async_factory = async_sessionmaker(async_engine, info={SETTINGS_KEY: settings})
    validator = sessions.SessionValidator(engine, settings=settings)
    async_validator = aio_sessions.SessionValidator(async_engine, settings=settings)
    loop = asyncio.new_event_loop()

    def sync_side(validate: Callable[[Session, str], Any], commit: bool) -> Callable[[int], float]:
        def measure(n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                with factory() as db:
                    validate(db, draw(tokens))
                    if commit:
                        db.commit()
            return time.perf_counter() - started

        return measure

    def async_side(
        validate: Callable[[AsyncSession, str], Awaitable[Any]], commit: bool
    ) -> Callable[[int], float]:
        async def requests(n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                async with async_factory() as db:
                    await validate(db, draw(tokens))
                    if commit:
                        await db.commit()
            return time.perf_counter() - started

        return lambda n: loop.run_until_complete(requests(n))

    def validator_side(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            validator.validate(draw(tokens))
        return time.perf_counter() - started

    async def async_validator_requests(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await async_validator.validate(draw(tokens))
        return time.perf_counter() - started

    peer = Peer(python, url.set(database=peer_db), args.tokens)
    measures: dict[str, Callable[[int], float]] = {
        PEER: peer.measure,
        SIDES[1]: sync_side(sessions.validate_session_alone, commit=False),
        SIDES[2]: async_side(aio_sessions.validate_session_alone, commit=False),
        SIDES[3]: sync_side(sessions.validate_session, commit=True),
        SIDES[4]: async_side(aio_sessions.validate_session, commit=True),
        SIDES[5]: validator_side,
        SIDES[6]: lambda n: loop.run_until_complete(async_validator_requests(n)),
    }
    report: dict[str, Any] = {
        "benchmark": "bench_peer.py",
        "tokens": args.tokens,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "session_touch_interval_s": args.touch_interval,
        "peer_packages": peer_versions(python),
        "authmodels_async": "authmodels.aio (AsyncSession per request, psycopg asyncio driver)",
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    rounds: dict[str, list[float]] = {side: [] for side in SIDES}
    try:
        for side in SIDES:  # warm every side (connections, prepared statements, caches)
            measures[side](200)
        for index in range(args.rounds):
            for side in SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)]:
                rounds[side].append(measures[side](args.requests) / args.requests * 1e6)
            print(f"round {index + 1}: " + ", ".join(f"{rounds[s][-1]:.0f}" for s in SIDES))
    finally:
        peer.close()
        validator.close()
        loop.run_until_complete(async_validator.close())
        loop.run_until_complete(async_engine.dispose())
        loop.close()
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(peer_db)))
    report["load_average_after"] = os.getloadavg()
    report["us_per_request"] = {side: statistics.median(r) for side, r in rounds.items()}
    report["rounds_us_per_request"] = rounds
    peer_us = report["us_per_request"][PEER]
    report["ratio_vs_fastapi_users"] = {
        "sync": peer_us / report["us_per_request"][SIDES[1]],
        "async": peer_us / report["us_per_request"][SIDES[2]],
    }
    report["ratio_vs_fastapi_users_validator"] = {
        "sync": peer_us / report["us_per_request"][SIDES[5]],
        "async": peer_us / report["us_per_request"][SIDES[6]],
    }
    print()
    for side in SIDES:
        us = report["us_per_request"][side]
        print(f"{side:<56} {us:8.0f} µs/request   peer / this {peer_us / us:5.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--touch-interval", type=float, default=1200.0, help="session_touch_interval, seconds"
    )
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--url", help="admin URL of a server to create the databases on")
    parser.add_argument("--json", type=Path, default=RESULTS / "peer.json")
    args = parser.parse_args()
    on_a_new_database(args.url, "bench_peer", lambda url: run(url, args))


if __name__ == "__main__":
    main()
