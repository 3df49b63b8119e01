"""Revision 0007 (privacy and retention): keyed IP / user-agent hashes replace the raw values,
device-flow retention is enforced, and ``auth.purge_expired_data()`` removes what has expired."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from authmodels.config import HASH_KEYS_VAR, PRIVACY_KEYS_VAR
from authmodels.errors import MissingKeyError
from authmodels.security.privacy import PrivacyHasher
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import application_role, columns, count, indexes, insert

BEFORE = "0006_row_level_security"
REVISION = "0007_privacy_retention"
FUTURE = "2999-01-01T00:00:00Z"
LONG_AGO = "2020-01-01T00:00:00Z"


@pytest.fixture
def privacy(authmodels_keys: TestKeys) -> PrivacyHasher:
    # no AUTHMODELS_PRIVACY_KEYS in the test run: the hash key ring serves
    return PrivacyHasher.from_ring(authmodels_keys.hash_keys)


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    user = insert(runner, "users", email="a@example.com", password_hash="x")

    def session(ip: str | None, agent: str | None) -> str:
        return insert(
            runner,
            "sessions",
            user_id=user,
            token_hash=b"\x01" + (ip or "").encode(),
            ip_address=ip,
            user_agent=agent,
            expires_at=FUTURE,
        )

    yield {
        "user": user,
        "v4": session("203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64)"),
        "mapped": session("::ffff:198.51.100.1", "curl/8.5.0"),
        "v6": session("2001:db8::1", None),
        "none": session(None, None),
        "flow": insert(
            runner,
            "device_flows",
            device_code_hash=b"d",
            user_code_hash=b"u",
            client_id="tv",
            expires_at="2030-01-01T00:00:00Z",
        ),
    }


def test_sessions_keep_only_keyed_hashes_of_address_and_agent(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str], privacy: PrivacyHasher
) -> None:
    runner, ids = authmodels_migration_runner, legacy

    runner.upgrade(REVISION)

    hashes = {
        r[0]: (r[1], r[2])
        for r in runner.execute("SELECT id::text, ip_hash, ua_hash FROM auth.sessions")
    }
    assert hashes[ids["v4"]] == (
        privacy.ip_hash("203.0.113.7"),
        privacy.ua_hash("Mozilla/5.0 (X11; Linux x86_64)"),
    )
    # an IPv4-mapped IPv6 address hashes as the IPv4 address it carries
    assert hashes[ids["mapped"]] == (privacy.ip_hash("198.51.100.1"), privacy.ua_hash("curl/8.5.0"))
    assert hashes[ids["v6"]] == (privacy.ip_hash("2001:db8::1"), None)
    assert hashes[ids["none"]] == (None, None)

    cols = {c for _, c, *_ in columns(runner, "sessions", "active_sessions")}
    assert not {"ip_address", "user_agent"} & cols
    assert {"ip_hash", "ua_hash"} <= cols
    assert runner.execute(
        "SELECT count(*) FROM auth.active_sessions WHERE ip_hash = :h",
        {"h": privacy.ip_hash("203.0.113.7")},
    ) == [(1,)]


def test_rows_without_a_key_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner,
    legacy: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = authmodels_migration_runner
    shape = columns(runner, "sessions", "device_flows")
    monkeypatch.delenv(HASH_KEYS_VAR)
    monkeypatch.delenv(PRIVACY_KEYS_VAR, raising=False)

    with pytest.raises(MissingKeyError, match=PRIVACY_KEYS_VAR):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, "sessions", "device_flows") == shape


def test_device_flow_retention_is_filled_and_enforced(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    runner.execute(  # a flow written by code that did not set it yet
        "UPDATE auth.device_flows SET retention_expires_at = NULL WHERE id = :i",
        {"i": ids["flow"]},
    )

    runner.upgrade(REVISION)

    [(retention, expires)] = runner.execute(
        "SELECT retention_expires_at, expires_at FROM auth.device_flows WHERE id = :i",
        {"i": ids["flow"]},
    )
    assert retention == expires + timedelta(days=1)
    defaulted = insert(
        runner,
        "device_flows",
        device_code_hash=b"d2",
        user_code_hash=b"u2",
        client_id="tv",
        expires_at="2030-01-01T00:00:00Z",
    )
    chosen = insert(
        runner,
        "device_flows",
        device_code_hash=b"d3",
        user_code_hash=b"u3",
        client_id="tv",
        expires_at="2030-01-01T00:00:00Z",
        retention_expires_at="2031-01-01T00:00:00Z",
    )
    rows = dict(
        runner.execute(
            "SELECT id::text, retention_expires_at - expires_at FROM auth.device_flows "
            "WHERE id IN (:a, :b)",
            {"a": defaulted, "b": chosen},
        )
    )
    assert rows == {defaulted: timedelta(days=1), chosen: timedelta(days=365)}
    assert ("device_flows", "retention_expires_at", "timestamp with time zone", "NO", None) in (
        columns(runner, "device_flows")
    )


def test_purge_removes_expired_rows_of_every_user_through_rls(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    users = [insert(runner, "users", email=f"u{i}@example.com", password_hash="x") for i in (1, 2)]
    kept: dict[str, set[str]] = {}
    for user in users:
        old = insert(
            runner, "sessions", user_id=user, token_hash=b"o" + user.encode(), expires_at=LONG_AGO
        )
        live = insert(
            runner, "sessions", user_id=user, token_hash=b"l" + user.encode(), expires_at=FUTURE
        )
        insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=old,
            token_hash=b"r1" + user.encode(),
            expires_at=FUTURE,  # dies with its session
        )
        live_refresh = insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=live,
            token_hash=b"r2" + user.encode(),
            expires_at=FUTURE,
        )
        insert(
            runner,
            "access_tokens",
            user_id=user,
            token_hash=b"a1" + user.encode(),
            expires_at=LONG_AGO,
        )
        live_access = insert(
            runner,
            "access_tokens",
            user_id=user,
            token_hash=b"a2" + user.encode(),
            expires_at=FUTURE,
        )
        insert(
            runner,
            "password_reset_tokens",
            user_id=user,
            token_hash=b"p" + user.encode(),
            expires_at=LONG_AGO,
        )
        insert(
            runner,
            "device_flows",
            user_id=user,
            device_code_hash=b"d" + user.encode(),
            user_code_hash=b"u" + user.encode(),
            client_id="tv",
            expires_at=LONG_AGO,
        )
        kept.setdefault("sessions", set()).add(live)
        kept.setdefault("refresh_tokens", set()).add(live_refresh)
        kept.setdefault("access_tokens", set()).add(live_access)
    runner.execute(
        "INSERT INTO auth.app_logs (message, created_at) VALUES ('old', :t), ('new', now())",
        {"t": LONG_AGO},
    )

    with application_role(runner, authmodels_empty_database) as (_, app), app.begin() as conn:
        # no user is set: RLS hides every row from the role, yet the purge sees them all
        assert conn.execute(text("SELECT count(*) FROM auth.sessions")).scalar() == 0
        first = dict(conn.execute(text("SELECT * FROM auth.purge_expired_data(1)")).all())
        rest = dict(conn.execute(text("SELECT * FROM auth.purge_expired_data()")).all())

    assert first["sessions"] == 1 and first["access_tokens"] == 1  # at most batch_limit each
    assert {t: first[t] + rest[t] for t in first} == {
        "device_flows": 2,
        "sessions": 2,
        "refresh_tokens": 0,  # the two of the purged sessions went with them
        "access_tokens": 2,
        "password_reset_tokens": 2,
        "email_verification_tokens": 0,
        "app_logs": 1,
    }
    for table, ids in kept.items():
        assert {r[0] for r in runner.execute(f"SELECT id::text FROM auth.{table}")} == ids
    assert count(runner, "device_flows") == 0
    assert runner.execute("SELECT message FROM auth.app_logs") == [("new",)]


def test_no_cron_job_is_scheduled_without_pg_cron(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    assert runner.execute("SELECT count(*) FROM pg_extension WHERE extname = 'cron'") == [(0,)]
    assert runner.execute("SELECT to_regprocedure('auth.purge_expired_data(integer)')") != [(None,)]


def test_downgrade_brings_back_empty_raw_columns(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner = authmodels_migration_runner
    shape = (columns(runner, "sessions", "device_flows", "active_sessions"), indexes(runner))
    before = count(runner, "sessions")
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert (
        columns(runner, "sessions", "device_flows", "active_sessions"),
        indexes(runner),
    ) == shape
    assert count(runner, "sessions") == before
    assert runner.execute(
        "SELECT count(*) FROM auth.sessions WHERE ip_address IS NOT NULL OR user_agent IS NOT NULL"
    ) == [(0,)]
    assert runner.execute("SELECT to_regprocedure('auth.purge_expired_data(integer)')") == [(None,)]
