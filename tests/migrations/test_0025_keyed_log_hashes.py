"""0025: audit entries, archived entries and reset links keep keyed IP / user-agent hashes only."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from authmodels.config import HASH_KEYS_VAR, PRIVACY_KEYS_VAR
from authmodels.db import sqlalchemy_url
from authmodels.errors import MissingKeyError
from authmodels.security.privacy import PrivacyHasher
from authmodels.services import audit
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, constraints, insert
from tests.migrations.migration_helpers import previous, user

REVISION = "0025_keyed_log_hashes"
BEFORE = previous(REVISION)
TABLES = ("audit_logs", "audit_logs_archive", "password_reset_tokens")
FUTURE = "2999-01-01T00:00:00Z"

#: (ip, user agent, the address the hash is made of)
CLIENTS = [
    ("203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64)", "203.0.113.7"),
    ("::ffff:198.51.100.1", "curl/8.5.0", "198.51.100.1"),  # IPv4-mapped: hashed as IPv4
    ("2001:db8::1", None, "2001:db8::1"),
    ("10.1.2.3/8", "Ünïcode agent ✓", "10.1.2.3"),  # a netmask is not part of the address
    (None, None, None),
]


@pytest.fixture
def privacy(authmodels_keys: TestKeys) -> PrivacyHasher:
    # no AUTHMODELS_PRIVACY_KEYS in the test run: the hash key ring serves
    return PrivacyHasher.from_ring(authmodels_keys.hash_keys)


def _seed(runner: MigrationRunner) -> dict[str, tuple[str, str | None, str | None]]:
    """Rows with raw values in the three tables, audit entries over three months: id -> client."""
    runner.upgrade(BEFORE)
    runner.execute(
        "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2025-01-01', '2025-03-01')"
    )
    owner = user(runner, "a@example.com")
    rows: dict[str, tuple[str, str | None, str | None]] = {}
    for n, (ip, agent, address) in enumerate(CLIENTS):
        rows[insert(
            runner, "audit_logs", user_id=owner, event_type="login", ip_address=ip,
            user_agent=agent, created_at=f"2025-0{1 + n % 3}-15T12:00:00Z",
        )] = ("audit_logs", address, agent)  # fmt: skip
        rows[insert(
            runner, "audit_logs_archive", id=str(uuid.uuid4()), event_type="login",
            event_status="success", details="{}", created_at="2024-01-01T00:00:00Z",
            ip_address=ip, user_agent=agent,
        )] = ("audit_logs_archive", address, agent)  # fmt: skip
        rows[insert(
            runner, "password_reset_tokens", user_id=owner, token_hash=b"\x01\x01k" + bytes(32),
            expires_at=FUTURE, ip_address=ip, user_agent=agent,
        )] = ("password_reset_tokens", address, agent)  # fmt: skip
    return rows


def _hashes(runner: MigrationRunner) -> dict[str, tuple[bytes | None, bytes | None]]:
    return {
        row[0]: (row[1], row[2])
        for table in TABLES
        for row in runner.execute(f"SELECT id::text, ip_hash, ua_hash FROM auth.{table}")
    }


def test_raw_addresses_and_agents_become_keyed_hashes_in_every_table_and_month(
    authmodels_migration_runner: MigrationRunner, privacy: PrivacyHasher
) -> None:
    runner = authmodels_migration_runner
    rows = _seed(runner)

    runner.upgrade(REVISION)

    hashes = _hashes(runner)
    for row_id, (table, address, agent) in rows.items():
        expected = (
            None if address is None else privacy.ip_hash(address),
            None if agent is None else privacy.ua_hash(agent),
        )
        assert hashes[row_id] == expected, (table, address, agent)
    assert not {"ip_address", "user_agent"} & {c for _, c, *_ in columns(runner, *TABLES)}
    checks = {
        (table, name): validated
        for table, name, _, validated in constraints(runner, *TABLES)
        if name.endswith("_hash_digest")
    }
    assert checks == {
        (f"auth.{t}", f"ck_{t}_{c}_digest"): True for t in TABLES for c in ("ip_hash", "ua_hash")
    }
    assert runner.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = "
        "'auth.ix_audit_logs_ip_hash_created_at'::regclass"
    ) == [(True,)]
    assert runner.execute("SELECT to_regclass('auth.hash_pending_0025')") == [(None,)]
    # seed 004's credential-stuffing question, by hash: entries from one address
    assert runner.execute(
        "SELECT count(*) FROM auth.audit_logs WHERE ip_hash = :h",
        {"h": privacy.ip_hash("203.0.113.7")},
    ) == [(1,)]
    # a shape check refuses what is not a keyed digest
    with pytest.raises(DBAPIError, match="ck_audit_logs_ip_hash_digest"):
        runner.execute(
            "INSERT INTO auth.audit_logs (event_type, ip_hash) VALUES ('login', '\\x01')"
        )
    # the archive function copies the hashes
    moved = runner.execute("SELECT auth.archive_audit_logs(interval '30 days')")
    assert moved == [(5,)]
    assert _hashes(runner) == hashes

    runner.downgrade(BEFORE)

    assert runner.execute(
        "SELECT count(*), count(ip_address), count(user_agent) FROM auth.audit_logs_archive"
    ) == [(10, 0, 0)]  # the raw values cannot come back
    assert not {"ip_hash", "ua_hash"} & {c for _, c, *_ in columns(runner, *TABLES)}
    assert runner.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = "
        "'auth.ix_audit_logs_ip_address_created_at'::regclass"
    ) == [(True,)]
    # 0024's archive function again: it copies the raw columns
    insert(
        runner, "audit_logs", event_type="login", ip_address="192.0.2.1", created_at="2025-01-20Z"
    )
    assert runner.execute("SELECT auth.archive_audit_logs(interval '30 days')") == [(1,)]
    assert runner.execute(
        "SELECT host(ip_address) FROM auth.audit_logs_archive WHERE ip_address IS NOT NULL"
    ) == [("192.0.2.1",)]


def test_rows_without_a_key_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = authmodels_migration_runner
    _seed(runner)
    shape = columns(runner, *TABLES)
    monkeypatch.delenv(HASH_KEYS_VAR)
    monkeypatch.delenv(PRIVACY_KEYS_VAR, raising=False)

    with pytest.raises(MissingKeyError, match=PRIVACY_KEYS_VAR):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, *TABLES) == shape
    assert runner.execute("SELECT to_regclass('auth.hash_pending_0025')") == [(None,)]


def test_entries_written_while_the_upgrade_runs_are_hashed_too(
    authmodels_migration_runner: MigrationRunner,
    authmodels_empty_database: URL,
    privacy: PrivacyHasher,
) -> None:
    """An application still on the previous release writes raw values during the upgrade: each
    one is hashed (by the backfill, the change log's batches or the final catch-up), until the
    raw columns are gone and its writes fail."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    owner = user(runner, "w@example.com")
    runner.execute(
        "INSERT INTO auth.audit_logs (user_id, event_type, ip_address, user_agent) "
        "SELECT CAST(:u AS uuid), 'login', '192.0.2.1', 'seed' FROM generate_series(1, 30000)",
        {"u": owner},
    )
    writer = create_engine(sqlalchemy_url(authmodels_empty_database))
    done = threading.Event()
    written: list[int] = []
    stopped_by: list[BaseException] = []

    def write() -> None:
        n = 0
        try:
            while not done.is_set():
                with writer.begin() as conn:
                    conn.execute(
                        text(
                            "INSERT INTO auth.audit_logs (user_id, event_type, ip_address, "
                            "user_agent, details) VALUES (CAST(:u AS uuid), 'logout', "
                            "'198.51.100.9', 'writer', jsonb_build_object('n', :n))"
                        ),
                        {"u": owner, "n": n},
                    )
                n += 1
        except DBAPIError as exc:  # the raw columns are gone: the old release's writes fail
            stopped_by.append(exc)
        written.append(n)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        runner.upgrade(REVISION)
    finally:
        done.set()
        thread.join()
        writer.dispose()

    assert written[0] > 0
    assert all('column "ip_address"' in str(e) for e in stopped_by), stopped_by
    assert runner.execute(
        "SELECT count(*), count(*) FILTER (WHERE ip_hash = :ip AND ua_hash = :ua) "
        "FROM auth.audit_logs WHERE event_type = 'logout'",
        {"ip": privacy.ip_hash("198.51.100.9"), "ua": privacy.ua_hash("writer")},
    ) == [(written[0], written[0])]
    assert runner.execute(
        "SELECT count(*) FROM auth.audit_logs WHERE ip_hash IS NULL OR ua_hash IS NULL"
    ) == [(0,)]


def test_the_flows_audit_entries_store_the_client_as_keyed_hashes(
    authmodels_migration_runner: MigrationRunner, privacy: PrivacyHasher
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("head")
    owner = uuid.UUID(user(runner, "r@example.com"))
    with Session(runner.engine) as db:
        audit.record(db, "login", user_id=owner, ip="::ffff:203.0.113.5", user_agent="UA/1")
        audit.record(db, "logout", user_id=owner)
        db.commit()
    rows: list[Any] = runner.execute(
        "SELECT event_type, ip_hash, ua_hash FROM auth.audit_logs WHERE user_id = :u ORDER BY 1",
        {"u": owner},
    )
    assert rows == [
        ("login", privacy.ip_hash("203.0.113.5"), privacy.ua_hash("UA/1")),
        ("logout", None, None),
    ]
