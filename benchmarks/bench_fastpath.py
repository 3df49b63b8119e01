"""Is ``services._fastpath`` worth its SQLAlchemy internals? The same lookups, three ways, one run.

``authmodels.services._fastpath`` runs the hot statements (the session lookup of
``validate_session``, the rotation of ``rotate_refresh_token``) on the session's raw psycopg
connection as prepared statements, and builds the ORM object from the row through SQLAlchemy
internals. This script measures, on one database at head holding 100,000 sessions (``--sessions``;
``bench_sessions.populate`` fills it), in one ORM ``Session`` on one connection, in alternating
blocks so that drift hits every side alike:

1. **the session lookup** (the token's candidates, the row, its state computed with the
   database's clock, the ORM object), three ways:

   - *fast path*: ``Statement.first`` on the psycopg connection, then ``load_instance``;
   - *Core*: the same ``text()`` statement through ``Session.execute``, then ``load_instance``
     (the fast path's own fallback);
   - *ORM*: ``select(Session, <the three state expressions>).where(token_lookup_clause(...))``,
     the entity loaded by the ORM;

2. **the whole flows** -- ``validate_session`` and ``rotate_refresh_token`` -- with the fast path,
   and with it switched off (every ``Statement`` takes its SQLAlchemy fallback).

Each is measured with 100 operations per transaction and with a transaction each. It prints each
side's rate and the gain of the fast path over the best other side, ``1 - t_fast / t_other``:
issue 19 keeps the module only if that gain is at least 15%.

Usage: ``python benchmarks/bench_fastpath.py [--sessions 100000] [--lookups 20000]``
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from alembic import command
from bench_sessions import alternate, on_a_new_database, populate
from sqlalchemy import Interval, bindparam, cast, create_engine, func, pool, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.config import Settings
from authmodels.db import sqlalchemy_url
from authmodels.migrations import alembic_config
from authmodels.models import Session as SessionModel
from authmodels.models import token_lookup_clause, token_lookup_params
from authmodels.services import FlowSettings, _fastpath, sessions, use_settings


@contextmanager
def fast_path_off() -> Iterator[None]:
    """Every ``Statement`` takes its SQLAlchemy fallback (the driver is not psycopg to it)."""
    real = _fastpath.psycopg_connection
    _fastpath.psycopg_connection = lambda db: None  # type: ignore[assignment]
    try:
        yield
    finally:
        _fastpath.psycopg_connection = real


def report(title: str, n: int, spent: dict[str, float]) -> float:
    """Print each side's rate and the fast path's gain over the best other side; the gain."""
    print(f"\n{title}")
    for name, seconds in spent.items():
        print(f"  {name:<28} {n / seconds:9,.0f} /s  ({seconds * 1e6 / n:7.1f} us each)")
    fast = spent["fast path"]
    other_name, other = min(
        ((k, v) for k, v in spent.items() if k != "fast path"), key=lambda x: x[1]
    )
    gain = 1 - fast / other
    print(f"  gain of the fast path over {other_name}: {gain:+.1%}")
    return gain


def run(url: URL, args: argparse.Namespace) -> None:
    command.upgrade(alembic_config(url), "head")
    settings = FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        session_touch_interval=timedelta(hours=1),  # no touch falls due during the run
        session_idle_timeout=timedelta(hours=2),
    )
    started = time.perf_counter()
    session_tokens, refresh_tokens = populate(url, settings.hasher, args.sessions)
    print(f"populated {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")

    engine = create_engine(sqlalchemy_url(url), poolclass=pool.StaticPool)
    rng = random.Random(19)
    picks = [rng.choice(session_tokens) for _ in range(args.lookups)]
    gains: dict[str, float] = {}
    try:
        with engine.connect() as connection:
            db = use_settings(Session(bind=connection, expire_on_commit=False), settings)
            statement = sessions._LOOKUP_SESSION
            names, n = sessions._SESSION_COLUMNS, len(sessions._SESSION_COLUMNS)
            orm_lookup = select(
                SessionModel,
                SessionModel.expires_at <= func.now(),
                SessionModel.last_activity_at <= func.now() - cast(bindparam("idle"), Interval),
                SessionModel.last_activity_at <= func.now() - cast(bindparam("touch"), Interval),
            )

            def params(i: int) -> dict[str, Any]:
                return {
                    **token_lookup_params(settings.hasher, picks[i]),
                    "idle": settings.session_idle_timeout,
                    "touch": settings.session_touch_interval,
                }

            def fast(i: int) -> None:
                row = statement.first(db, params(i))
                assert row is not None
                _fastpath.load_instance(db, SessionModel, names, row[:n])

            def core(i: int) -> None:
                row = db.execute(statement.clause, params(i)).first()
                assert row is not None
                _fastpath.load_instance(db, SessionModel, names, tuple(row)[:n])

            def orm(i: int) -> None:
                where = token_lookup_clause(SessionModel, settings.hasher, picks[i])
                row = db.execute(
                    orm_lookup.where(where),
                    {
                        "idle": settings.session_idle_timeout,
                        "touch": settings.session_touch_interval,
                    },
                ).first()
                assert row is not None and isinstance(row[0], SessionModel)

            lookups = {
                "fast path": (fast, db.commit),
                "Core": (core, db.commit),
                "ORM": (orm, db.commit),
            }
            alternate(3, 200, 1, lookups)  # warm-up: caches, prepared statements
            per_block = args.lookups // args.blocks
            for every, label in ((100, "100 per transaction"), (1, "a transaction each")):
                spent = alternate(args.blocks, per_block, every, lookups)
                gains[f"lookup, {label}"] = report(
                    f"1. the session lookup ({label})", args.blocks * per_block, spent
                )

            def validate(i: int) -> None:
                sessions.validate_session(db, picks[i])

            def validate_off(i: int) -> None:
                with fast_path_off():
                    sessions.validate_session(db, picks[i])

            flows = {
                "fast path": (validate, db.commit),
                "fallback (Core)": (validate_off, db.commit),
            }
            alternate(2, 200, 1, flows)
            for every, label in ((100, "100 per transaction"), (1, "a transaction each")):
                spent = alternate(args.blocks, per_block, every, flows)
                gains[f"validate_session, {label}"] = report(
                    f"2. validate_session ({label})", args.blocks * per_block, spent
                )

            chains = args.rotation_chains
            chain = {
                "fast path": refresh_tokens[-chains:],
                "fallback (Core)": refresh_tokens[-2 * chains : -chains],
            }

            def rotate(i: int) -> None:
                side = chain["fast path"]
                side[i % chains] = sessions.rotate_refresh_token(db, side[i % chains]).refresh_token

            def rotate_off(i: int) -> None:
                side = chain["fallback (Core)"]
                with fast_path_off():
                    pair = sessions.rotate_refresh_token(db, side[i % chains])
                side[i % chains] = pair.refresh_token

            flows = {"fast path": (rotate, db.commit), "fallback (Core)": (rotate_off, db.commit)}
            alternate(2, 50, 1, flows)
            per_block = args.rotations // args.blocks
            for every, label in ((1, "a transaction each"), (100, "100 per transaction")):
                spent = alternate(args.blocks, per_block, every, flows)
                gains[f"rotate_refresh_token, {label}"] = report(
                    f"2. rotate_refresh_token ({label})", args.blocks * per_block, spent
                )
            db.close()
    finally:
        engine.dispose()
    print("\ngain of the fast path over the best other side (keep the module only if >= 15%):")
    for name, gain in gains.items():
        print(f"  {name:<44} {gain:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="per side")
    parser.add_argument("--rotations", type=int, default=4_000, help="per side")
    parser.add_argument("--rotation-chains", type=int, default=200, help="token chains per side")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--url", help="admin URL of a server to create the database on")
    args = parser.parse_args()
    on_a_new_database(args.url, "bench_fastpath", lambda url: run(url, args))


if __name__ == "__main__":
    main()
