"""0035: a transaction that revokes a live session, access token or API key commits with
``synchronous_commit = remote_apply``; other writes keep the server's setting.

What the setting buys on a real standby is shown in ``tests/test_replicas.py``; here, what each
kind of change does to the transaction's setting, before and after the revision."""

from __future__ import annotations

import secrets

from sqlalchemy import pool, text
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import insert
from tests.migrations.migration_helpers import previous, user

REVISION = "0035_replica_revocations"
BEFORE = previous(REVISION)
FUTURE = "2999-01-01T00:00:00+00:00"
PAST = "2000-01-01T00:00:00+00:00"  # created and expired then


def digest() -> bytes:
    """A value of the keyed-digest shape: 0x01, key id length, key id, 32 bytes."""
    return b"\x01\x02k1" + secrets.token_bytes(32)


def _setting_after(url: URL, statement: str, **params: object) -> str:
    """``synchronous_commit`` in a transaction after ``statement`` (rolled back)."""
    engine = create_db_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET synchronous_commit = off"))  # as on the test server
            conn.commit()
            with conn.begin() as transaction:
                conn.execute(text(statement), params)
                setting = str(conn.execute(text("SHOW synchronous_commit")).scalar())
                transaction.rollback()
            return setting
    finally:
        engine.dispose()


def test_revocations_wait_for_replicas_and_nothing_else_does(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    ada = user(runner, "ada@example.com")
    live = insert(runner, "sessions", user_id=ada, token_hash=digest(), expires_at=FUTURE)
    expired = insert(runner, "sessions", user_id=ada, token_hash=digest(), expires_at=PAST,
                     created_at="1999-12-31T00:00:00+00:00")  # fmt: skip
    token = insert(runner, "access_tokens", user_id=ada, token_hash=digest(), expires_at=FUTURE)
    [(key,)] = runner.execute(
        "INSERT INTO auth.api_keys (user_id, name, prefix, key_hash) "
        "VALUES (CAST(:u AS uuid), 'ci', 'am_abcdefgh', :h) RETURNING id::text",
        {"u": ada, "h": digest()},
    )
    url = authmodels_empty_database
    revocations = {
        "logout": ("UPDATE auth.sessions SET revoked_at = now(), is_active = false "
                   "WHERE id = CAST(:i AS uuid)", live),
        "deactivation": ("UPDATE auth.sessions SET is_active = false WHERE id = CAST(:i AS uuid)",
                         live),
        "a live session deleted": ("DELETE FROM auth.sessions WHERE id = CAST(:i AS uuid)", live),
        "access token": ("UPDATE auth.access_tokens SET revoked_at = now() "
                         "WHERE id = CAST(:i AS uuid)", token),
        "API key": ("UPDATE auth.api_keys SET revoked_at = now() WHERE id = CAST(:i AS uuid)",
                    key),
    }  # fmt: skip
    others = {
        "touch": ("UPDATE auth.sessions SET last_activity_at = now() WHERE id = CAST(:i AS uuid)",
                  live),
        "an expired session purged": ("DELETE FROM auth.sessions WHERE id = CAST(:i AS uuid)",
                                      expired),
        "API key used": ("UPDATE auth.api_keys SET last_used_at = now() "
                         "WHERE id = CAST(:i AS uuid)", key),
    }  # fmt: skip
    changes = {**revocations, **others}
    before = {name: _setting_after(url, sql, i=row) for name, (sql, row) in changes.items()}
    assert set(before.values()) == {"off"}

    runner.upgrade(REVISION)
    after = {name: _setting_after(url, sql, i=row) for name, (sql, row) in changes.items()}
    assert after == {**dict.fromkeys(revocations, "remote_apply"), **dict.fromkeys(others, "off")}
    runner.execute("UPDATE auth.api_keys SET revoked_at = now()")
    again = "UPDATE auth.api_keys SET revoked_at = now() WHERE id = CAST(:i AS uuid)"
    assert _setting_after(url, again, i=key) == "off"  # already revoked: nothing to wait for
    runner.execute("UPDATE auth.api_keys SET revoked_at = NULL")

    runner.downgrade(BEFORE)
    undone = {name: _setting_after(url, sql, i=row) for name, (sql, row) in revocations.items()}
    assert set(undone.values()) == {"off"}
