"""The peer's side of ``bench_peer.py``: fastapi-users' database token strategy, in its own venv.

Runs under the virtualenv ``bench_peer.py`` creates (``fastapi-users-db-sqlalchemy`` 7.0.0 needs
SQLAlchemy < 2.1, asyncpg), never with authmodels imported. Creates the peer's tables (``user``,
``accesstoken``, as its documentation declares them) in the database it is given and fills them
with ``--tokens`` users, one token each (plain text, as the peer stores them: ``tok-<i>``), then
reads commands on standard input, one a line:

- ``measure N``: N requests, each a new ``AsyncSession`` (the peer's ``get_async_session``
  dependency) calling ``SQLAlchemyAccessTokenDatabase.get_by_token(token, max_age)`` for a random
  token, as ``DatabaseStrategy.read_token`` does; answers the seconds they took, on one line;
- ``quit``.

Usage (by bench_peer.py): ``python peer_fastapi_users.py postgresql+asyncpg://... --tokens N``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


POPULATE = [
    """INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser, is_verified)
       SELECT md5('u' || i)::uuid, 'user' || i || '@example.com', 'x', true, false, true
         FROM generate_series(1, :n) AS i""",
    """INSERT INTO accesstoken (token, created_at, user_id)
       SELECT 'tok-' || i, now(), md5('u' || i)::uuid FROM generate_series(1, :n) AS i""",
    "ANALYZE",
]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--tokens", type=int, default=100_000)
    args = parser.parse_args()
    engine = create_async_engine(args.url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        for statement in POPULATE:
            await conn.execute(text(statement), {"n": args.tokens} if ":n" in statement else {})
    maker = async_sessionmaker(engine, expire_on_commit=False)
    tokens = [f"tok-{i}" for i in range(1, args.tokens + 1)]
    draw = random.Random(7).choice

    async def request() -> None:
        max_age = datetime.now(UTC) - timedelta(days=1)
        async with maker() as session:
            found = await SQLAlchemyAccessTokenDatabase(session, AccessToken).get_by_token(
                draw(tokens), max_age
            )
            if found is None:
                raise AssertionError("a token the script wrote was not found")

    for _ in range(200):  # connect, warm the caches
        await request()
    print("ready", flush=True)
    for line in sys.stdin:
        verb, *rest = line.split()
        if verb == "quit":
            break
        started = time.perf_counter()
        for _ in range(int(rest[0])):
            await request()
        print(time.perf_counter() - started, flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
