"""Revision 0004 (device flow hardening) on a database holding plaintext device and user codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from authmodels.codes import normalize_user_code
from authmodels.config import HASH_KEYS_VAR
from authmodels.errors import MissingKeyError
from authmodels.security.hashing import TokenHasher
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, count, indexes, insert, quarantined

BEFORE = "0003_webauthn_storage"
REVISION = "0004_device_flow_hardening"
FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture
def hasher(authmodels_keys: TestKeys) -> TokenHasher:
    return TokenHasher.from_ring(authmodels_keys.hash_keys)


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    alice = insert(runner, "users", email="alice@example.com", password_hash="x")

    def flow(device_code: str, user_code: str, **extra: object) -> str:
        values = {"client_id": "tv-app", "expires_at": FUTURE, **extra}
        return insert(
            runner, "device_flows", device_code=device_code, user_code=user_code, **values
        )

    yield {
        "alice": alice,
        "pending": flow("device-code-pending", "BCDF-GHJK", scope="openid"),
        "approved": flow("device-code-approved", "LMNP-QRST", status="approved", user_id=alice),
        "done": flow(
            "device-code-done",
            "bcdf-ghjk",
            status="consumed",
            user_id=alice,
            expires_at="2020-01-01T00:00:00Z",
        ),
        "older_twin": flow("device-code-1", "wxyz-bcdf", created_at="2025-01-01T00:00:00Z"),
        "newer_twin": flow("device-code-2", "WXYZBCDF", created_at="2025-01-02T00:00:00Z"),
    }


def test_unexpired_flows_are_found_by_their_codes_after_the_upgrade(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str], hasher: TokenHasher
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    before = count(runner, "device_flows")

    runner.upgrade(REVISION)

    # the user types the code in another form than the one displayed
    by_user_code = runner.execute(
        "SELECT id::text FROM auth.device_flows WHERE user_code_hash = ANY(:c) "
        "AND status = 'pending' AND expires_at > now()",
        {"c": hasher.candidates(normalize_user_code("bcdf ghjk"))},
    )
    assert by_user_code == [(ids["pending"],)]
    by_device_code = runner.execute(
        "SELECT id::text, status FROM auth.device_flows WHERE device_code_hash = ANY(:c)",
        {"c": hasher.candidates("device-code-approved")},
    )
    assert by_device_code == [(ids["approved"], "approved")]

    [(device_hash, user_hash, interval, polls, retention, expires)] = runner.execute(
        "SELECT device_code_hash, user_code_hash, interval_seconds, poll_count, "
        "retention_expires_at, expires_at FROM auth.device_flows WHERE id = :i",
        {"i": ids["pending"]},
    )
    assert hasher.matches("device-code-pending", device_hash)
    assert hasher.matches("BCDFGHJK", user_hash)
    assert (interval, polls) == (5, 0)
    assert retention == expires + timedelta(days=1)

    moved = quarantined(runner, "device_flows")
    assert set(moved) == {ids["older_twin"]}
    reason, revision, row = moved[ids["older_twin"]]
    assert "same user code" in reason and revision == REVISION
    assert "device_code" not in row and "user_code" not in row  # no plaintext kept anywhere
    assert count(runner, "device_flows") + len(moved) == before


def test_no_plaintext_code_is_left_in_table_or_quarantine(
    authmodels_migration_runner: MigrationRunner, hasher: TokenHasher
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0001_baseline")
    insert(
        runner,
        "device_flows",
        device_code="secret-device-code",
        user_code="ABCD-EFGH",
        client_id="tv",
        status="approved",
        user_email="nobody@example.com",
        expires_at=FUTURE,
    )
    runner.upgrade(REVISION)  # 0002 quarantines the flow (no such user), 0004 hashes its codes

    cols = {c for _, c, *_ in columns(runner, "device_flows")}
    assert not {"device_code", "user_code"} & cols
    [(row,)] = runner.execute("SELECT row_data FROM auth.quarantine")
    assert "secret-device-code" not in str(row) and "ABCD-EFGH" not in str(row)
    assert hasher.matches("secret-device-code", bytes.fromhex(row["device_code_hash"][2:]))


def test_rows_without_a_key_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner,
    legacy: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = authmodels_migration_runner
    shape = columns(runner, "device_flows")
    monkeypatch.delenv(HASH_KEYS_VAR)

    with pytest.raises(MissingKeyError, match=HASH_KEYS_VAR):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, "device_flows") == shape


def test_an_empty_table_migrates_without_a_key(
    authmodels_migration_runner: MigrationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = authmodels_migration_runner
    monkeypatch.delenv(HASH_KEYS_VAR)
    runner.upgrade(REVISION)
    assert runner.current() == REVISION


def test_downgrade_leaves_unusable_codes_and_expires_live_flows(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    shape = (columns(runner, "device_flows"), indexes(runner))
    before = count(runner, "device_flows")
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert (columns(runner, "device_flows"), indexes(runner)) == shape
    assert count(runner, "device_flows") == before  # the quarantined twin is back
    rows = {
        r[0]: r[1:]
        for r in runner.execute(
            "SELECT id::text, device_code, user_code, status FROM auth.device_flows"
        )
    }
    assert all(
        d.startswith("unrestorable-") and u.startswith("unrestorable-") for d, u, _ in rows.values()
    )
    assert rows[ids["pending"]][2] == "expired"
    assert rows[ids["approved"]][2] == "expired"
    assert rows[ids["done"]][2] == "consumed"
