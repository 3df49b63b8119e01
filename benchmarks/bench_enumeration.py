"""How long the flows that must not tell whether an address has an account take, per answer.

A password-reset request, a magic-link request and a sign-up answer the client the same way
whether or not an account has the address; this measures whether they also take the same time.
Each request is one handler's work: a session, the flow, ``COMMIT``. The two kinds of request
(an address with a live account, one without) alternate in shuffled blocks so that drift hits
both alike, and each flow prints the median and 90th percentile of both and the difference of
the medians. Sign-up hashes the password with the library's default Argon2id parameters, as in
production; the other two flows hash nothing.

The server is a temporary embedded PostgreSQL (deleted at the end) unless ``--url`` names a
server to create the database on.

Usage: ``python benchmarks/bench_enumeration.py [--requests 400] [--url postgresql://...]``
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from alembic import command
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.config import HASH_KEYS_VAR, Settings, format_key_ring
from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.migrations import alembic_config
from authmodels.models import User
from authmodels.services import FlowSettings, magic_links, password_reset, signup, use_settings

Request = Callable[[Session, int], object]


def measure(engine: object, settings: FlowSettings, request: Request, i: int) -> float:
    started = time.perf_counter()
    with Session(engine) as db:  # type: ignore[call-overload]
        use_settings(db, settings)
        request(db, i)
        db.commit()
    return time.perf_counter() - started


def report(name: str, known: list[float], unknown: list[float]) -> None:
    def line(label: str, values: list[float]) -> str:
        median = statistics.median(values) * 1e3
        p90 = statistics.quantiles(values, n=10)[-1] * 1e3
        return f"  {label:<22} median {median:8.3f} ms   p90 {p90:8.3f} ms"

    print(name)
    print(line("an account has it", known))
    print(line("no account has it", unknown))
    difference = (statistics.median(known) - statistics.median(unknown)) * 1e3
    print(f"  {'difference of medians':<22} {difference:+.3f} ms")


def run(url: URL, requests: int) -> None:
    command.upgrade(alembic_config(url), "head")
    settings = FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        request_limit_per_account=1_000_000,
        request_limit_per_ip=1_000_000,
    )
    engine = create_engine(sqlalchemy_url(url))
    hashed = settings.password_hasher.hash("a passphrase of a user")
    with Session(engine) as db:
        db.add_all(
            User(email=f"user{i}@example.com", password_hash=hashed) for i in range(requests)
        )
        db.commit()

    flows: dict[str, tuple[Request, Request]] = {
        "password_reset.request": (
            lambda db, i: password_reset.request(db, f"user{i}@example.com", ip="192.0.2.1"),
            lambda db, i: password_reset.request(db, f"none{i}@example.com", ip="192.0.2.1"),
        ),
        "magic_links.request": (
            lambda db, i: magic_links.request(db, f"user{i}@example.com", ip="192.0.2.1"),
            lambda db, i: magic_links.request(db, f"none{i}@example.com", ip="192.0.2.1"),
        ),
        "signup.register (Argon2id, OWASP parameters)": (
            lambda db, i: signup.register(db, f"user{i}@example.com", "a new long passphrase"),
            lambda db, i: signup.register(db, f"new{i}@example.com", "a new long passphrase"),
        ),
    }
    rng = random.Random(13)
    try:
        for name, (known, unknown) in flows.items():
            count = requests if "signup" not in name else requests // 4
            for i in range(20):  # warm-up: caches, prepared statements
                measure(engine, settings, unknown, requests + i)
            spent: dict[str, list[float]] = {"known": [], "unknown": []}
            order = [("known", i) for i in range(count)] + [("unknown", i) for i in range(count)]
            blocks = [order[i : i + 10] for i in range(0, len(order), 10)]
            rng.shuffle(blocks)
            for block in blocks:
                for kind, i in block:
                    request = known if kind == "known" else unknown
                    spent[kind].append(measure(engine, settings, request, i))
            report(name, spent["known"], spent["unknown"])
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per kind and flow")
    parser.add_argument("--url", help="admin URL of a server to create the database on")
    args = parser.parse_args()
    if not os.environ.get(HASH_KEYS_VAR):
        os.environ[HASH_KEYS_VAR] = format_key_ring({"bench": secrets.token_bytes(32)})

    server = None
    if args.url:
        admin = sqlalchemy_url(args.url)
    else:
        server = EmbeddedServer(
            Path(tempfile.mkdtemp(prefix="authmodels-bench-enumeration-")), delete_on_exit=True
        )
        admin = sqlalchemy_url(server.url())
    name = f"bench_enumeration_{secrets.token_hex(4)}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        run(admin.set(database=name), args.requests)
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
