"""``validate_session`` and ``rotate_refresh_token`` against hand-written psycopg, on the same data.

Builds a database at head holding 100,000 sessions (``--sessions``; one refresh token each, a
tenth of them converted from seed 004's SHA-256 digests, ``digest_scheme`` 2) of 10,000 users,
then measures on one connection each, in one run:

- **validate**: :func:`authmodels.services.sessions.validate_session` against a psycopg
  prepared statement doing the same lookup -- the same candidates (both digest schemes under
  every key), the same state computed in SQL, the same checks in Python (revoked, expired, idle,
  DPoP) -- one request per transaction on both sides (``BEGIN``, lookup, ``COMMIT``);
- **rotate**: :func:`authmodels.services.sessions.rotate_refresh_token` against the equivalent
  raw SQL transaction (the same conditional UPDATE inserting the successor pair and the
  ``rotated`` session audit entry, with successor tokens derived and digested the same way),
  each side rotating its own chains of tokens.

Both sides run in alternating blocks so that drift (caches, autovacuum) hits them alike, and each
prints its rate; the ratio is helper / raw (target: at least 0.8).

The server is a temporary embedded PostgreSQL (deleted at the end) unless ``--url`` names a
server to create the database on.

Usage: ``python benchmarks/bench_sessions.py [--sessions 100000] [--url postgresql://...]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from psycopg import sql
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.config import HASH_KEYS_VAR, Settings, format_key_ring
from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.errors import (
    DPoPBindingMismatch,
    InvalidTokenError,
    SessionExpiredError,
    SessionIdleTimeoutError,
    SessionRevokedError,
)
from authmodels.migrations import alembic_config
from authmodels.security.hashing import TokenHasher, mac, new_token
from authmodels.services import FlowSettings, sessions, use_settings

USERS = 10_000
LEGACY_EVERY = 10  # one session in ten carries a seed-004 digest (scheme 2)

# --- the hand-written side ---------------------------------------------------------------------

# The candidates go through a scalar subquery, as in authmodels' lookups (token_lookup_sql): a
# careful hand-written statement keeps its generic plan too, so the comparison is of the code
# around the statement, not of the statement's plan.
RAW_VALIDATE = """
SELECT id, user_id, token_hash, refresh_token_hash, digest_scheme, dpop_jkt, last_rotated_at,
       ip_hash, ua_hash, device_fingerprint, device_id, is_active, expires_at, last_activity_at,
       revoked_at, revoked_reason, created_at,
       expires_at <= now() AS expired,
       last_activity_at <= now() - %(idle)s::interval AS idle,
       last_activity_at <= now() - %(touch)s::interval AS touch_due
  FROM auth.sessions
 WHERE token_hash = ANY(CAST((SELECT CAST(%(candidates)s AS bytea[])) AS bytea[]))
   AND digest_scheme = CASE WHEN token_hash = ANY(%(raw_candidates)s) THEN 1 ELSE 2 END
"""

RAW_TOUCH = """
UPDATE auth.sessions SET last_activity_at = now()
 WHERE id = %(id)s AND last_activity_at <= now() - %(touch)s::interval
RETURNING last_activity_at
"""

RAW_ROTATE = """
WITH used AS (
    UPDATE auth.refresh_tokens AS rt SET used_at = now()
      FROM auth.sessions AS s
     WHERE rt.token_hash = ANY(CAST((SELECT CAST(%(candidates)s AS bytea[])) AS bytea[]))
       AND rt.digest_scheme = CASE WHEN rt.token_hash = ANY(%(raw_candidates)s) THEN 1 ELSE 2 END
       AND rt.used_at IS NULL AND rt.revoked_at IS NULL AND rt.expires_at > now()
       AND (rt.dpop_jkt IS NULL OR rt.dpop_jkt = %(dpop_jkt)s)
       AND s.id = rt.session_id
       AND s.is_active AND s.revoked_at IS NULL AND s.expires_at > now()
    RETURNING rt.id, rt.user_id, rt.session_id, rt.dpop_jkt, s.expires_at AS session_expires_at
), previous AS (
    SELECT a.id, a.client_id, a.scope
      FROM used, LATERAL (SELECT id, client_id, scope FROM auth.access_tokens
                           WHERE session_id = used.session_id
                           ORDER BY created_at DESC, id DESC LIMIT 1) AS a
), refresh AS (
    INSERT INTO auth.refresh_tokens (id, user_id, session_id, parent_token_id, token_hash,
                                     digest_scheme, dpop_jkt, expires_at)
    SELECT %(pair_id)s, user_id, session_id, id, %(refresh_hash)s, 1, dpop_jkt,
           least(now() + %(refresh_ttl)s, session_expires_at)
      FROM used
    RETURNING expires_at
), access AS (
    INSERT INTO auth.access_tokens (id, token_hash, user_id, session_id, client_id, scope,
                                    dpop_jkt, rotated_from, expires_at)
    SELECT %(pair_id)s, %(access_hash)s, used.user_id, used.session_id, previous.client_id,
           previous.scope, used.dpop_jkt, previous.id,
           least(now() + %(access_ttl)s, used.session_expires_at)
      FROM used LEFT JOIN previous ON true
    RETURNING expires_at, scope
), rotated AS (
    UPDATE auth.sessions AS s SET last_rotated_at = now(), last_activity_at = now()
      FROM used WHERE s.id = used.session_id
), audited AS (
    INSERT INTO auth.session_audits (session_id, user_id, action, details)
    SELECT used.session_id, used.user_id, 'rotated',
           jsonb_build_object('refresh_token_id', used.id, 'pair_id', %(pair_id)s)
      FROM used
)
SELECT used.user_id, used.session_id, used.dpop_jkt, refresh.expires_at, access.expires_at,
       access.scope
  FROM used, refresh, access
"""


def raw_lookup(hasher: TokenHasher, raw: str) -> dict[str, list[bytes]]:
    """The same candidates as the helper: both schemes, every key."""
    raw_candidates = hasher.candidates(raw)
    legacy = hasher.candidates(hashlib.sha256(raw.encode()).hexdigest())
    return {"candidates": [*raw_candidates, *legacy], "raw_candidates": raw_candidates}


def raw_refuse(
    revoked_at: Any, active: bool, expired: bool, idle: bool | None, jkt: Any, dpop_jkt: Any
) -> None:
    """The hand-written validations' checks of a found session's state, in the flows' order."""
    if revoked_at is not None or (not active and not expired):
        raise SessionRevokedError("revoked")
    if expired:
        raise SessionExpiredError("expired")
    if idle:
        raise SessionIdleTimeoutError("idle")
    if jkt is not None and jkt != dpop_jkt:
        raise DPoPBindingMismatch("dpop")


def raw_validate(
    conn: psycopg.Connection[Any], settings: FlowSettings, token: str, dpop_jkt: str | None
) -> tuple[Any, ...]:
    """The hand-written ``validate_session``: one prepared lookup, the same checks."""
    if not token or len(token) > 512:
        raise InvalidTokenError("invalid")
    params = {
        **raw_lookup(settings.hasher, token),
        "idle": settings.session_idle_timeout,
        "touch": settings.session_touch_interval,
    }
    with conn.cursor() as cur:
        row = cur.execute(RAW_VALIDATE, params, prepare=True).fetchone()
        if row is None:
            raise InvalidTokenError("invalid")
        (
            id_,
            _,
            _,
            _,
            _,
            jkt,
            _,
            _,
            _,
            _,
            _,
            active,
            _,
            _,
            revoked_at,
            _,
            _,
            expired,
            idle,
            due,
        ) = row
        raw_refuse(revoked_at, active, expired, idle, jkt, dpop_jkt)
        if due:
            cur.execute(RAW_TOUCH, {"id": id_, "touch": settings.session_touch_interval})
    return tuple(row)


def derive(settings: FlowSettings, kid: str, purpose: str, pair_id: uuid.UUID, parent: str) -> str:
    digest = mac(
        settings.hash_keys.keys[kid],
        f"authmodels.refresh-successor\x00{purpose}\x00{pair_id}\x00{parent}",
    )
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def raw_rotate(conn: psycopg.Connection[Any], settings: FlowSettings, token: str) -> str:
    """The hand-written rotation transaction (the success path); returns the new refresh token."""
    pair_id = uuid.uuid4()
    kid = settings.hasher.current
    new_refresh = derive(settings, kid, "refresh", pair_id, token)
    new_access = derive(settings, kid, "access", pair_id, token)
    params = {
        **raw_lookup(settings.hasher, token),
        "dpop_jkt": None,
        "pair_id": pair_id,
        "refresh_hash": settings.hasher.digest(new_refresh),
        "access_hash": settings.hasher.digest(new_access),
        "refresh_ttl": settings.refresh_token_ttl,
        "access_ttl": settings.access_token_ttl,
    }
    row = conn.execute(RAW_ROTATE, params, prepare=True).fetchone()
    if row is None:
        raise InvalidTokenError("not usable")
    return new_refresh


# --- data ----------------------------------------------------------------------------------------


def populate(url: URL, hasher: TokenHasher, count: int) -> tuple[list[str], list[str]]:
    """Users, sessions and one refresh token per session; the raw tokens, in memory only."""
    session_tokens, refresh_tokens = [], []
    sessions_copy, refresh_copy = io.StringIO(), io.StringIO()
    user_ids = [
        uuid.UUID(hashlib.md5(f"u{i}".encode(), usedforsecurity=False).hexdigest())
        for i in range(USERS)
    ]
    now = datetime.now(UTC)
    session_end, refresh_end = (now + timedelta(days=30)).isoformat(), (now + timedelta(days=7))
    for i in range(count):
        session_id = uuid.uuid4()
        token, refresh = new_token(), new_token()
        legacy = i % LEGACY_EVERY == 0
        stored = hashlib.sha256(token.encode()).hexdigest() if legacy else token
        session_tokens.append(token)
        refresh_tokens.append(refresh)
        sessions_copy.write(
            f"{session_id}\t{user_ids[i % USERS]}\t\\\\x{hasher.digest(stored).hex()}\t"
            f"{2 if legacy else 1}\t{session_end}\t{now.isoformat()}\n"
        )
        refresh_copy.write(
            f"{uuid.uuid4()}\t{user_ids[i % USERS]}\t{session_id}\t"
            f"\\\\x{hasher.digest(refresh).hex()}\t{refresh_end.isoformat()}\n"
        )
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, password_hash) "
            "SELECT md5('u' || i)::uuid, 'user' || i || '@example.com', '!unusable' "
            "FROM generate_series(0, %s) AS i",
            (USERS - 1,),
        )
        with conn.cursor() as cur:
            with cur.copy(
                "COPY auth.sessions (id, user_id, token_hash, digest_scheme, expires_at, "
                "last_activity_at) FROM STDIN"
            ) as copy:
                copy.write(sessions_copy.getvalue())
            with cur.copy(
                "COPY auth.refresh_tokens (id, user_id, session_id, token_hash, expires_at) "
                "FROM STDIN"
            ) as copy:
                copy.write(refresh_copy.getvalue())
        conn.execute("VACUUM ANALYZE auth.sessions")
        conn.execute("VACUUM ANALYZE auth.refresh_tokens")
    return session_tokens, refresh_tokens


# --- timing --------------------------------------------------------------------------------------


Side = tuple[Callable[[int], None], Callable[[], None]]


def alternate(blocks: int, per_block: int, every: int, sides: dict[str, Side]) -> dict[str, float]:
    """Run the sides in alternating blocks (the order rotates); each side's total seconds.

    A side is (one operation, commit); a commit follows every ``every`` operations.
    """
    spent = dict.fromkeys(sides, 0.0)
    names = list(sides)
    start = 0
    for block in range(blocks):
        for name in names[block % len(names) :] + names[: block % len(names)]:
            operation, commit = sides[name]
            started = time.perf_counter()
            for i in range(start, start + per_block):
                operation(i)
                if (i + 1) % every == 0:
                    commit()
            commit()
            spent[name] += time.perf_counter() - started
        start += per_block
    return spent


def report(title: str, n: int, spent: dict[str, float]) -> None:
    """Print each side's rate and the helper's ratio to the raw side."""
    print(f"\n{title}")
    for name, seconds in spent.items():
        print(f"  {name:<34} {n / seconds:8,.0f} /s  ({seconds * 1e6 / n:7.1f} us each)")
    ratio = spent["raw psycopg"] / spent["helper"]
    print(f"  {'ratio helper / raw psycopg':<34} {ratio:8.2f}     (target >= 0.80)")
    if "raw, Session transaction" in spent:
        same = spent["raw, Session transaction"] / spent["helper"]
        print(f"  {'ratio helper / raw, Session txn':<34} {same:8.2f}")


def run(url: URL, args: argparse.Namespace) -> None:
    command.upgrade(alembic_config(url), "head")
    settings = FlowSettings(
        hash_keys=Settings.from_env().require_hash_keys(),
        # no touch falls due during the run, on either side
        session_touch_interval=timedelta(hours=1),
        session_idle_timeout=timedelta(hours=2),
    )
    started = time.perf_counter()
    session_tokens, refresh_tokens = populate(url, settings.hasher, args.sessions)
    print(f"populated {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")

    engine = create_engine(sqlalchemy_url(url), poolclass=pool.StaticPool)
    raw_conn = psycopg.connect(libpq_url(url))
    rng = random.Random(8628)
    blocks = 12
    try:
        with engine.connect() as connection:
            # as authmodels.db.session_factory makes them
            db = use_settings(Session(bind=connection, expire_on_commit=False), settings)

            def session_driver() -> psycopg.Connection[Any]:
                driver = db.connection().connection.driver_connection
                assert isinstance(driver, psycopg.Connection)
                return driver

            # -- validate ---------------------------------------------------------------------
            picks = [rng.choice(session_tokens) for _ in range(args.validations)]

            def helper_validate(i: int) -> None:
                sessions.validate_session(db, picks[i])

            def hand_validate(i: int) -> None:
                raw_validate(raw_conn, settings, picks[i], None)

            def hand_validate_in_session(i: int) -> None:
                raw_validate(session_driver(), settings, picks[i], None)

            sides: dict[str, Side] = {
                "helper": (helper_validate, db.commit),
                "raw psycopg": (hand_validate, raw_conn.commit),
                # the hand-written statement with the helper's transaction handling: the
                # difference to "raw psycopg" is SQLAlchemy's Session.begin/commit, not the lookup
                "raw, Session transaction": (hand_validate_in_session, db.commit),
            }
            alternate(3, 200, 1, sides)  # warm-up: caches, prepared statements
            per_block = args.validations // blocks
            for every, label in ((100, "lookups, 100 per transaction"), (1, "a transaction each")):
                spent = alternate(blocks, per_block, every, sides)
                report(f"validate_session ({label})", blocks * per_block, spent)

            # -- rotate ------------------------------------------------------------------------
            # each side rotates its own chains: a chain's next token is its last successor
            chains = args.rotation_chains
            helper_chain = refresh_tokens[-chains:]
            raw_chain = refresh_tokens[-2 * chains : -chains]

            def helper_rotate(i: int) -> None:
                pair = sessions.rotate_refresh_token(db, helper_chain[i % chains])
                helper_chain[i % chains] = pair.refresh_token

            def hand_rotate(i: int) -> None:
                raw_chain[i % chains] = raw_rotate(raw_conn, settings, raw_chain[i % chains])

            sides = {
                "helper": (helper_rotate, db.commit),
                "raw psycopg": (hand_rotate, raw_conn.commit),
            }
            alternate(2, 50, 1, sides)
            per_block = args.rotations // blocks
            for every, label in ((1, "a transaction each"), (100, "100 per transaction")):
                spent = alternate(blocks, per_block, every, sides)
                report(f"rotate_refresh_token ({label})", blocks * per_block, spent)
            db.close()
    finally:
        raw_conn.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--validations", type=int, default=20_000, help="per side")
    parser.add_argument("--rotations", type=int, default=4_000, help="per side")
    parser.add_argument("--rotation-chains", type=int, default=200, help="token chains per side")
    parser.add_argument("--url", help="admin URL of a server to create the database on")
    args = parser.parse_args()
    on_a_new_database(args.url, "bench_sessions", lambda url: run(url, args))


def on_a_new_database(server_url: str | None, name: str, run: Callable[[URL], None]) -> None:
    """``run(url)`` on a new database of ``server_url`` (default: a temporary embedded server),
    dropped afterwards, with a hash key ring in the environment."""
    if not os.environ.get(HASH_KEYS_VAR):
        os.environ[HASH_KEYS_VAR] = format_key_ring({"bench": secrets.token_bytes(32)})
    server = None
    if server_url:
        admin = sqlalchemy_url(server_url)
    else:
        server = EmbeddedServer(
            Path(tempfile.mkdtemp(prefix=f"authmodels-{name}-")), delete_on_exit=True
        )
        admin = sqlalchemy_url(server.url())
    name = f"{name}_{secrets.token_hex(4)}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        run(admin.set(database=name))
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
