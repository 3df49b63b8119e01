"""``authmodels.aio.sessions.validate_session`` per request, against raw ``psycopg.AsyncConnection``.

Builds a database at head holding 100,000 sessions (``--sessions``, ``bench_sessions.populate``)
and measures, in one run, in alternating blocks (so that drift hits every side alike), one
request at a time, each request one transaction:

- **aio**: what a FastAPI dependency does per request -- a new ``AsyncSession`` from
  ``async_session_factory``, ``await aio.sessions.validate_session(db, token)``, ``await
  db.commit()``, the session closed -- on an engine of ``create_async_db_engine`` (one pooled
  connection), once with its defaults (``pool_pre_ping`` on: a ping per checkout) and once with
  ``pool_pre_ping=False``;
- **aio validate_session_alone**: the same request with
  ``aio.sessions.validate_session_alone`` (pre-ping off): the lookup and its touch in one
  statement, in autocommit on the request's fresh connection -- one round trip, where the other
  sides pay three (``BEGIN``, the lookup, ``COMMIT``);
- **aio SessionValidator**: ``await validator.validate(token)`` on one
  :class:`authmodels.aio.sessions.SessionValidator` (no ``AsyncSession``: its own connection,
  in autocommit, one round trip), against **raw async psycopg, one statement**: the validator's
  statement hand-written on one ``psycopg.AsyncConnection`` in autocommit, prepared, with the
  same checks (``bench_hot_path.raw_params``/``raw_checks``);
- **raw async psycopg**: the same lookup hand-written on one ``psycopg.AsyncConnection``: the
  same candidates, the same state computed in SQL, a prepared statement, the same checks in
  Python (``bench_sessions.raw_validate``'s), then ``COMMIT``;
- **raw lookup in the request's AsyncSession**: the raw side's lookup, on the driver connection
  of a new ``AsyncSession`` per request (pre-ping off), committed and closed like the aio side:
  what SQLAlchemy's per-request session costs by itself, without authmodels;
- **sync**: ``sessions.validate_session`` with a new ``Session`` per request from
  ``session_factory`` on a ``create_db_engine`` engine, and raw sync psycopg, for the sync path
  against the async one.

It prints each side's rate and the ratios aio / raw async psycopg (target: at least 0.8), aio /
raw lookup in the request's AsyncSession (authmodels' own share) and async / sync, and writes
them to ``benchmarks/results/async.json``.

Usage: ``python benchmarks/bench_async.py [--sessions 100000] [--requests 20000] [--url ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from alembic import command
from bench_hot_path import RAW_VALIDATE as ONE_STATEMENT
from bench_hot_path import raw_checks, raw_params
from bench_sessions import (
    RAW_TOUCH,
    RAW_VALIDATE,
    on_a_new_database,
    populate,
    raw_lookup,
    raw_refuse,
)
from bench_sessions import raw_validate as raw_validate_sync
from sqlalchemy.engine import URL

from authmodels.aio import sessions as aio_sessions
from authmodels.config import Settings
from authmodels.db import (
    async_session_factory,
    create_async_db_engine,
    create_db_engine,
    libpq_url,
    session_factory,
)
from authmodels.errors import (
    InvalidTokenError,
)
from authmodels.migrations import alembic_config
from authmodels.services import FlowSettings, sessions
from authmodels.services.settings import SETTINGS_KEY

RESULTS = Path(__file__).resolve().parent / "results" / "async.json"

Request = Callable[[int], Awaitable[None]]


async def raw_validate(
    conn: psycopg.AsyncConnection[Any], settings: FlowSettings, token: str, dpop_jkt: str | None
) -> tuple[Any, ...]:
    """``bench_sessions.raw_validate`` on psycopg's asyncio connection."""
    if not token or len(token) > 512:
        raise InvalidTokenError("invalid")
    params = {
        **raw_lookup(settings.hasher, token),
        "idle": settings.session_idle_timeout,
        "touch": settings.session_touch_interval,
    }
    async with conn.cursor() as cur:
        await cur.execute(RAW_VALIDATE, params, prepare=True)
        row = await cur.fetchone()
        if row is None:
            raise InvalidTokenError("invalid")
        id_, jkt, active, revoked_at = row[0], row[5], row[11], row[14]
        expired, idle, due = row[-3:]
        raw_refuse(revoked_at, active, expired, idle, jkt, dpop_jkt)
        if due:
            await cur.execute(RAW_TOUCH, {"id": id_, "touch": settings.session_touch_interval})
    return tuple(row)


async def alternate(blocks: int, per_block: int, sides: dict[str, Request]) -> dict[str, float]:
    """Run the sides in alternating blocks (the order rotates); each side's total seconds."""
    spent = dict.fromkeys(sides, 0.0)
    names = list(sides)
    start = 0
    for block in range(blocks):
        for name in names[block % len(names) :] + names[: block % len(names)]:
            request = sides[name]
            started = time.perf_counter()
            for i in range(start, start + per_block):
                await request(i)
            spent[name] += time.perf_counter() - started
        start += per_block
    return spent


async def measure(url: URL, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    settings = FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        # no touch falls due during the run, on any side
        session_touch_interval=timedelta(hours=1),
        session_idle_timeout=timedelta(hours=2),
    )
    started = time.perf_counter()
    tokens, _ = populate(url, settings.hasher, args.sessions)
    print(f"populated {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
    rng = random.Random(14)
    picks = [rng.choice(tokens) for _ in range(args.requests)]

    info = {SETTINGS_KEY: settings}
    pinged = create_async_db_engine(url, pool_size=1, max_overflow=0)
    unpinged = create_async_db_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    sync_engine = create_db_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    AioDb, AioDbNoPing = async_session_factory(pinged), async_session_factory(unpinged)
    AioDb.configure(info=info)
    AioDbNoPing.configure(info=info)
    SyncDb = session_factory(sync_engine)
    SyncDb.configure(info=info)
    raw = await psycopg.AsyncConnection.connect(libpq_url(url))
    raw_sync = psycopg.connect(libpq_url(url))
    server_version = raw_sync.info.server_version

    async def aio_request(i: int) -> None:  # as a FastAPI dependency and route do
        async with AioDb() as db:
            await aio_sessions.validate_session(db, picks[i])
            await db.commit()

    async def aio_request_no_ping(i: int) -> None:
        async with AioDbNoPing() as db:
            await aio_sessions.validate_session(db, picks[i])
            await db.commit()

    async def aio_alone_request(i: int) -> None:  # the one-round-trip validation
        async with AioDbNoPing() as db:
            await aio_sessions.validate_session_alone(db, picks[i])
            await db.commit()

    async def raw_request(i: int) -> None:
        await raw_validate(raw, settings, picks[i], None)
        await raw.commit()

    async def raw_in_session_request(i: int) -> None:
        async with AioDbNoPing() as db:
            connection = await db.connection()
            driver = (await connection.get_raw_connection()).driver_connection
            await raw_validate(driver, settings, picks[i], None)
            await db.commit()

    validator = aio_sessions.SessionValidator(unpinged, settings=settings)
    raw_autocommit = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)

    async def validator_request(i: int) -> None:
        await validator.validate(picks[i])

    async def raw_one_statement_request(i: int) -> None:
        params = raw_params(settings, picks[i], None)
        cursor = await raw_autocommit.execute(ONE_STATEMENT, params, prepare=True)
        raw_checks(await cursor.fetchone(), None)

    async def sync_request(i: int) -> None:
        with SyncDb() as db:
            sessions.validate_session(db, picks[i])
            db.commit()

    async def raw_sync_request(i: int) -> None:
        raw_validate_sync(raw_sync, settings, picks[i], None)
        raw_sync.commit()

    sides = {
        "aio": aio_request,
        "aio, pool_pre_ping off": aio_request_no_ping,
        "aio validate_session_alone, pool_pre_ping off": aio_alone_request,
        "aio SessionValidator": validator_request,
        "raw async psycopg, one statement in autocommit": raw_one_statement_request,
        "raw async psycopg": raw_request,
        "raw lookup in an AsyncSession": raw_in_session_request,
        "sync": sync_request,
        "raw sync psycopg": raw_sync_request,
    }
    try:
        await alternate(3, 200, sides)  # warm-up: caches, prepared statements
        blocks = 12
        per_block = args.requests // blocks
        spent = await alternate(blocks, per_block, sides)
        async with AioDb() as db:
            prepared = (
                await db.execute(sqlalchemy.text("SELECT count(*) FROM pg_prepared_statements"))
            ).scalar()
    finally:
        await validator.close()
        await raw_autocommit.close()
        await raw.close()
        raw_sync.close()
        await pinged.dispose()
        await unpinged.dispose()
        sync_engine.dispose()
    n = blocks * per_block
    rates = {name: round(n / seconds) for name, seconds in spent.items()}
    ratios = {
        "aio / raw async psycopg": spent["raw async psycopg"] / spent["aio"],
        "aio (pool_pre_ping off) / raw async psycopg": spent["raw async psycopg"]
        / spent["aio, pool_pre_ping off"],
        "aio (pool_pre_ping off) / raw lookup in an AsyncSession": spent[
            "raw lookup in an AsyncSession"
        ]
        / spent["aio, pool_pre_ping off"],
        "aio validate_session_alone / raw async psycopg": spent["raw async psycopg"]
        / spent["aio validate_session_alone, pool_pre_ping off"],
        "aio SessionValidator / raw async psycopg, one statement in autocommit": spent[
            "raw async psycopg, one statement in autocommit"
        ]
        / spent["aio SessionValidator"],
        "raw lookup in an AsyncSession / raw async psycopg": spent["raw async psycopg"]
        / spent["raw lookup in an AsyncSession"],
        "aio / sync": spent["sync"] / spent["aio"],
        "aio (pool_pre_ping off) / sync": spent["sync"] / spent["aio, pool_pre_ping off"],
        "raw async psycopg / raw sync psycopg": spent["raw sync psycopg"]
        / spent["raw async psycopg"],
    }
    print(f"\nvalidate_session, one request (one session, one transaction) at a time, n = {n:,}")
    for name, seconds in spent.items():
        print(f"  {name:<46} {n / seconds:8,.0f} /s  ({seconds * 1e6 / n:7.1f} us each)")
    for name, ratio in ratios.items():
        print(f"  {name:<58} {ratio:5.2f}")
    print(f"  statements prepared on the aio session's connection: {prepared}")
    return {
        "benchmark": "benchmarks/bench_async.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        "versions": {
            "sqlalchemy": sqlalchemy.__version__,
            "psycopg": psycopg.__version__,
            "postgresql": server_version,
        },
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "sessions": args.sessions,
        "requests_per_side": n,
        "target": "aio / raw async psycopg >= 0.8",
        "rates_per_second": rates,
        "microseconds_per_request": {k: round(v * 1e6 / n, 1) for k, v in spent.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }


def run(url: URL, args: argparse.Namespace) -> None:
    command.upgrade(alembic_config(url), "head")
    result = asyncio.run(measure(url, args))
    if args.write:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000, help="per side")
    parser.add_argument("--url", help="admin URL of a server to create the database on")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only")
    args = parser.parse_args()
    on_a_new_database(args.url, "bench_async", lambda url: run(url, args))


if __name__ == "__main__":
    main()
