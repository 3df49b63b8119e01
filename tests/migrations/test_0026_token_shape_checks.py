"""0026: the digest columns of the token tables accept keyed digests only; what does not fit is
quarantined, never deleted."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from authmodels.db import libpq_url
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import constraints, count, insert, quarantined
from tests.migrations.migration_helpers import previous, user

REVISION = "0026_token_shape_checks"
BEFORE = previous(REVISION)
FUTURE = "2999-01-01T00:00:00Z"
MALFORMED = b"\x01"
DIGEST_COLUMNS = {
    "sessions": ("token_hash", "refresh_token_hash", "ip_hash", "ua_hash"),
    "refresh_tokens": ("token_hash",),
    "access_tokens": ("token_hash",),
    "password_reset_tokens": ("token_hash",),
    "email_verification_tokens": ("token_hash",),
    "device_flows": ("device_code_hash", "user_code_hash"),
}


def digest() -> bytes:
    """A value of the keyed-digest shape: 0x01, key id length, key id, 32 bytes."""
    return b"\x01\x02k1" + secrets.token_bytes(32)


def _session(runner: MigrationRunner, owner: str, **digests: bytes) -> str:
    return insert(
        runner, "sessions", user_id=owner, expires_at=FUTURE, **{"token_hash": digest(), **digests}
    )


def test_malformed_digests_are_quarantined_with_their_sessions_tokens_and_checked_from_then_on(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    owner = user(runner, "t@example.com")
    good = _session(runner, owner, refresh_token_hash=digest(), ip_hash=digest())
    bad = _session(runner, owner, token_hash=MALFORMED)
    bad_agent = _session(runner, owner, ua_hash=b"Mozilla/5.0")
    of_bad = {"session_id": bad, "user_id": owner, "expires_at": FUTURE}
    child_refresh = insert(runner, "refresh_tokens", token_hash=digest(), **of_bad)
    child_access = insert(runner, "access_tokens", token_hash=digest(), **of_bad)
    child_step_up = insert(
        runner, "step_up_tokens", token_hash=digest(), purpose="admin.role_change",
        session_id=bad, user_id=owner,
        expires_at=(datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
    )  # fmt: skip
    kept_refresh = insert(
        runner, "refresh_tokens", token_hash=digest(), session_id=good, user_id=owner,
        expires_at=FUTURE,
    )  # fmt: skip
    bad_refresh = insert(
        runner, "refresh_tokens", token_hash=b"plaintext-token", session_id=good, user_id=owner,
        expires_at=FUTURE,
    )  # fmt: skip
    bad_access = insert(
        runner, "access_tokens", token_hash=b"\x01" * 40, user_id=owner, expires_at=FUTURE
    )
    bad_reset = insert(
        runner, "password_reset_tokens", token_hash=b"", user_id=owner, expires_at=FUTURE
    )
    bad_verification = insert(
        runner, "email_verification_tokens", token_hash=bytes(35), user_id=owner,
        email="t@example.com", expires_at=FUTURE,
    )  # fmt: skip
    bad_flow = insert(
        runner, "device_flows", device_code_hash=digest(), user_code_hash=b"BCDF-GHJK",
        client_id="tv", expires_at=FUTURE,
    )  # fmt: skip
    counts = {t: count(runner, t) for t in [*DIGEST_COLUMNS, "step_up_tokens"]}

    runner.upgrade(REVISION)

    moved = {t: quarantined(runner, t) for t in [*DIGEST_COLUMNS, "step_up_tokens"]}
    reasons = {row_id: reason for rows in moved.values() for row_id, (reason, _, _) in rows.items()}
    assert reasons == {
        bad: "not a keyed digest (auth.is_token_digest): token_hash",
        bad_agent: "not a keyed digest (auth.is_token_digest): ua_hash",
        child_refresh: f"its session {bad} was quarantined: it held a malformed digest",
        child_access: f"its session {bad} was quarantined: it held a malformed digest",
        child_step_up: f"its session {bad} was quarantined: it held a malformed digest",
        bad_refresh: "not a keyed digest (auth.is_token_digest): token_hash",
        bad_access: "not a keyed digest (auth.is_token_digest): token_hash",
        bad_reset: "not a keyed digest (auth.is_token_digest): token_hash",
        bad_verification: "not a keyed digest (auth.is_token_digest): token_hash",
        bad_flow: "not a keyed digest (auth.is_token_digest): user_code_hash",
    }
    assert all(revision == REVISION for rows in moved.values() for _, revision, _ in rows.values())
    # nothing deleted: every row is in its table or in quarantine
    for table, n in counts.items():
        assert count(runner, table) + len(moved[table]) == n, table
    assert runner.execute(
        "SELECT id::text FROM auth.refresh_tokens WHERE session_id = CAST(:s AS uuid)",
        {"s": good},
    ) == [(kept_refresh,)]
    checks = {
        (table, name): validated
        for table, name, _, validated in constraints(runner, *DIGEST_COLUMNS)
        if name.endswith("_digest")
    }
    for table, columns in DIGEST_COLUMNS.items():
        for column in columns:
            assert checks[(f"auth.{table}", f"ck_{table}_{column}_digest")] is True
    with pytest.raises(IntegrityError, match="ck_sessions_token_hash_digest"):
        _session(runner, owner, token_hash=MALFORMED)
    with pytest.raises(IntegrityError, match="ck_access_tokens_token_hash_digest"):
        insert(runner, "access_tokens", token_hash=b"x", user_id=owner, expires_at=FUTURE)

    runner.downgrade(BEFORE)

    assert {t: count(runner, t) for t in counts} == counts
    assert runner.execute(
        "SELECT count(*) FROM auth.quarantine WHERE revision = :r", {"r": REVISION}
    ) == [(0,)]
    assert not [c for c in constraints(runner, *DIGEST_COLUMNS) if c[1].endswith("hash_digest")
                and c[0] != "auth.password_reset_tokens"]  # fmt: skip


def _waiting(conninfo: str, query_like: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            (query_like,),
        ).fetchone()
    return bool(row and row[0])


def test_a_row_written_malformed_before_its_check_is_quarantined_instead_of_failing(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    """The walk is done, the check not yet added: a writer stores a malformed digest then. The
    validation finds it, the table is walked again, and the upgrade goes through."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    owner = user(runner, "late@example.com")
    _session(runner, owner)
    conninfo = libpq_url(authmodels_empty_database)
    outcome: list[BaseException] = []

    def upgrade() -> None:
        try:
            runner.upgrade(REVISION)
        except BaseException as exc:
            outcome.append(exc)

    with psycopg.connect(conninfo) as writer:
        # a writer's lock: the walk goes on (it takes the same), adding the check waits for it
        writer.execute("LOCK TABLE auth.sessions IN ROW EXCLUSIVE MODE")
        migration = threading.Thread(target=upgrade)
        migration.start()
        deadline = time.monotonic() + 20
        while not _waiting(conninfo, "%ALTER TABLE auth.sessions%ck_sessions_token_hash_digest%"):
            assert migration.is_alive(), outcome
            assert time.monotonic() < deadline, "adding the check never waited for the writer"
            time.sleep(0.02)
        [(late,)] = writer.execute(
            "INSERT INTO auth.sessions (user_id, token_hash, expires_at) "
            "VALUES (%s, %s, %s) RETURNING id::text",
            (owner, MALFORMED, FUTURE),
        ).fetchall()
        writer.commit()
        migration.join(timeout=60)

    assert outcome == []
    assert runner.current() == REVISION
    assert late in quarantined(runner, "sessions")
    assert count(runner, "sessions") == 1
