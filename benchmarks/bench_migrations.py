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

The server is a temporary embedded PostgreSQL (deleted at the end) unless ``--url`` names a
server to create the database on. Hash keys are generated for the run unless
``AUTHMODELS_HASH_KEYS`` is set.

Usage: ``python benchmarks/bench_migrations.py [--scale 0.01] [--url postgresql://...]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import psycopg
from alembic import command
from psycopg import sql
from sqlalchemy.engine import URL

from authmodels.config import HASH_KEYS_VAR, format_key_ring
from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.migrations import alembic_config
from authmodels.testing.migrations import revision_ids

BASELINE = "0001_baseline"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    parser.add_argument("--url", help="admin URL of a server to create the database on")
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
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin.set(database=name)
    try:
        _run(url, _counts(args.scale))
    finally:
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()


def _run(url: URL, counts: dict[str, int]) -> None:
    cfg = alembic_config(url)
    command.upgrade(cfg, BASELINE)

    print(f"populating {BASELINE}: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for table, statement in POPULATE:
            started = time.perf_counter()
            conn.execute(statement, counts)
            print(f"  {table:<24} {time.perf_counter() - started:8.1f} s")
        # a production table is vacuumed and analysed; a freshly loaded one would have
        # autovacuum competing with the migration for the whole run
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        print(f"  {'VACUUM ANALYZE':<24} {time.perf_counter() - started:8.1f} s")

    print(f"\n{'revision':<30} {'seconds':>9}")
    total = 0.0
    for revision in revision_ids()[1:]:
        started = time.perf_counter()
        command.upgrade(cfg, revision)
        elapsed = time.perf_counter() - started
        total += elapsed
        print(f"{revision:<30} {elapsed:9.1f}", flush=True)
    print(f"{'total':<30} {total:9.1f}")

    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'auth' "
            "AND relname IN ('users', 'sessions', 'access_tokens', 'webauthn_credentials', "
            "'device_flows', 'quarantine') ORDER BY relname"
        ).fetchall()
        exact = {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM auth.{}").format(sql.Identifier(table))
            ).fetchone()[0]  # type: ignore[index]  # count(*) always returns a row
            for table, _ in rows
        }
    print("\nrows at head: " + ", ".join(f"{t}={n:,}" for t, n in exact.items()))


if __name__ == "__main__":
    main()
