"""0032: the delivery logs keep a keyed hash and a masked form of each recipient, never the raw
address or number; rows written while it runs are converted too; the downgrade sets rows aside
(it cannot bring the addresses back) and a new upgrade restores them."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from authmodels.config import HASH_KEYS_VAR, PRIVACY_KEYS_VAR
from authmodels.db import sqlalchemy_url
from authmodels.errors import MissingKeyError
from authmodels.security.privacy import PrivacyHasher
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.invariants.checks import raw_recipient_columns
from tests.migrations.helpers import columns, constraints, count, insert
from tests.migrations.migration_helpers import previous, user

REVISION = "0032_delivery_recipients"
BEFORE = previous(REVISION)
TABLES = ("email_delivery_logs", "sms_delivery_logs")
#: raw recipient -> its masked form
EMAILS = {
    "Ada.Lovelace@Example.com": "A***@example.com",
    "b@example.org": "***@example.org",  # one character: masked whole
    "grace+tag@sub.example.net": "g***@sub.example.net",
}
PHONES = {
    "+442071838750": "+44********50",
    "+15550100123": "+15*******23",
    "+4915112345678": "+49*********78",
}


@pytest.fixture
def privacy(authmodels_keys: TestKeys) -> PrivacyHasher:
    # no AUTHMODELS_PRIVACY_KEYS in the test run: the hash key ring serves
    return PrivacyHasher.from_ring(authmodels_keys.hash_keys)


def _seed(runner: MigrationRunner) -> dict[str, str]:
    """Rows with raw recipients in both logs, at the revision before: id -> raw recipient."""
    runner.upgrade(BEFORE)
    owner = user(runner, "owner@example.com")
    rows = {}
    for email in EMAILS:
        rows[insert(
            runner, "email_delivery_logs", user_id=owner, to_email=email, template="otp",
            provider="smtp", subject="Your code",
        )] = email  # fmt: skip
    for n, phone in enumerate(PHONES):
        rows[insert(
            runner, "sms_delivery_logs", to_phone=phone, template="otp", provider="twilio",
            provider_message_id=f"SM{n}", status="sent", sent_at="2025-01-01T00:00:00Z",
            created_at="2025-01-01T00:00:00Z", cost="0.0075", currency="USD",
        )] = phone  # fmt: skip
    return rows


def _recipients(runner: MigrationRunner) -> dict[str, tuple[bytes, str]]:
    return {
        row[0]: (bytes(row[1]), row[2])
        for table in TABLES
        for row in runner.execute(
            f"SELECT id::text, recipient_hash, recipient_masked FROM auth.{table}"
        )
    }


def test_raw_recipients_become_keyed_hashes_and_masked_forms(
    authmodels_migration_runner: MigrationRunner, privacy: PrivacyHasher
) -> None:
    runner = authmodels_migration_runner
    rows = _seed(runner)
    with runner.connect() as conn:  # the invariant names the hole at the revision before
        assert sorted(v.split(" ")[0] for v in raw_recipient_columns(conn)) == [
            "auth.email_delivery_logs.to_email",
            "auth.sms_delivery_logs.to_phone",
        ]

    runner.upgrade(REVISION)

    converted = _recipients(runner)
    assert converted == {
        row_id: (
            (privacy.email_hash(raw), EMAILS[raw])
            if raw in EMAILS
            else (privacy.phone_hash(raw), PHONES[raw])
        )
        for row_id, raw in rows.items()
    }
    # the hash is the address's identity: found whatever its letter case
    assert privacy.email_hash("ada.lovelace@example.com") in {h for h, _ in converted.values()}
    shape = {(t, c): nullable for t, c, _, nullable, _ in columns(runner, *TABLES)}
    assert ("email_delivery_logs", "to_email") not in shape
    assert ("sms_delivery_logs", "to_phone") not in shape
    assert {k: v for k, v in shape.items() if k[1].startswith("recipient_")} == {
        (t, c): "NO" for t in TABLES for c in ("recipient_hash", "recipient_masked")
    }
    checks = {
        name: validated
        for _, name, _, validated in constraints(runner, *TABLES)
        if "recipient" in name
    }
    assert checks == {
        f"ck_{t}_{c}": True
        for t in TABLES
        for c in ("recipient_hash_digest", "recipient_masked_format")
    }
    assert runner.execute("SELECT to_regclass('auth.recipient_pending_0032')") == [(None,)]
    with runner.connect() as conn:
        assert raw_recipient_columns(conn) == []
    # seed 002's questions still have their answers: the SMS cost, the delivery status
    assert runner.execute(
        "SELECT currency, sum(cost), count(*) FROM auth.sms_delivery_logs GROUP BY currency"
    ) == [("USD", Decimal("0.0225"), 3)]
    # "was anything sent to this address?", by hash
    assert runner.execute(
        "SELECT count(*) FROM auth.email_delivery_logs WHERE recipient_hash = :h",
        {"h": privacy.email_hash("b@example.org")},
    ) == [(1,)]
    # the shape checks refuse a raw value written by mistake
    with pytest.raises(DBAPIError, match="ck_email_delivery_logs_recipient_masked_format"):
        runner.execute(
            "INSERT INTO auth.email_delivery_logs (recipient_hash, recipient_masked, template, "
            "provider) VALUES (:h, 'ada@example.com', 'otp', 'smtp')",
            {"h": privacy.email_hash("ada@example.com")},
        )
    with pytest.raises(DBAPIError, match="ck_sms_delivery_logs_recipient_hash_digest"):
        runner.execute(
            "INSERT INTO auth.sms_delivery_logs (recipient_hash, recipient_masked, template, "
            "provider) VALUES (convert_to('+442071838750', 'UTF8'), '+44********50', 'otp', 'sms')"
        )

    runner.downgrade(BEFORE)  # the addresses cannot come back: the rows wait in quarantine
    assert count(runner, "email_delivery_logs") == count(runner, "sms_delivery_logs") == 0
    assert count(runner, "quarantine") == len(rows)
    assert ("email_delivery_logs", "to_email") in {(t, c) for t, c, *_ in columns(runner, *TABLES)}

    runner.upgrade(REVISION)  # ... and come back with the next upgrade
    assert _recipients(runner) == converted
    assert count(runner, "quarantine") == 0


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
    assert runner.execute("SELECT to_regclass('auth.recipient_pending_0032')") == [(None,)]


def test_messages_logged_while_the_upgrade_runs_are_converted_too(
    authmodels_migration_runner: MigrationRunner,
    authmodels_empty_database: URL,
    privacy: PrivacyHasher,
) -> None:
    """A service still on the previous release logs mails during the upgrade: each is converted
    (by the backfill, the write log's batches or the final catch-up), until the raw column is
    gone and its writes fail."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    runner.execute(
        "INSERT INTO auth.email_delivery_logs (to_email, template, provider) "
        "SELECT 'seed' || n || '@example.com', 'otp', 'smtp' FROM generate_series(1, 20000) AS n"
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
                            "INSERT INTO auth.email_delivery_logs (to_email, template, provider) "
                            "VALUES ('writer@example.com', 'password_reset', 'smtp')"
                        )
                    )
                n += 1
        except DBAPIError as exc:  # the raw column is gone: the old release's writes fail
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
    assert all("to_email" in str(e) or "recipient" in str(e) for e in stopped_by), stopped_by
    assert runner.execute(
        "SELECT count(*), count(*) FILTER (WHERE recipient_hash = :h "
        "AND recipient_masked = 'w***@example.com') "
        "FROM auth.email_delivery_logs WHERE template = 'password_reset'",
        {"h": privacy.email_hash("writer@example.com")},
    ) == [(written[0], written[0])]
