"""0033: a device is known by the keyed hash of its fingerprint (the client's identifier is not
kept); a session names a device of its own user, and loses it when the device row goes."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from authmodels.config import HASH_KEYS_VAR, PRIVACY_KEYS_VAR
from authmodels.errors import MissingKeyError
from authmodels.security.privacy import PrivacyHasher
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, constraints, insert
from tests.migrations.migration_helpers import previous, user

REVISION = "0033_trusted_devices"
BEFORE = previous(REVISION)
FUTURE = "2999-01-01T00:00:00Z"
DIGEST = b"\x01\x01k" + bytes(32)


@pytest.fixture
def privacy(authmodels_keys: TestKeys) -> PrivacyHasher:
    return PrivacyHasher.from_ring(authmodels_keys.hash_keys)


def _seed(runner: MigrationRunner) -> tuple[str, str, dict[str, str]]:
    runner.upgrade(BEFORE)
    ada, bob = user(runner, "ada@example.com"), user(runner, "bob@example.com")
    devices = {
        insert(runner, "user_devices", user_id=owner, device_id=device_id): device_id
        for owner, device_id in ((ada, "ada-laptop"), (ada, "ada-phone"), (bob, "ada-laptop"))
    }
    return ada, bob, devices


def test_fingerprints_become_keyed_hashes_and_sessions_name_their_users_devices(
    authmodels_migration_runner: MigrationRunner, privacy: PrivacyHasher
) -> None:
    runner = authmodels_migration_runner
    ada, bob, devices = _seed(runner)

    runner.upgrade(REVISION)

    hashes = dict(runner.execute("SELECT id::text, fingerprint_hash FROM auth.user_devices"))
    assert hashes == {row: privacy.client_hash(raw) for row, raw in devices.items()}
    assert "device_id" not in {c for _, c, *_ in columns(runner, "user_devices")}
    assert {
        name: validated
        for _, name, _, validated in constraints(runner, "user_devices", "sessions")
        if "fingerprint" in name or "device_id" in name or name == "uq_user_devices_id_user_id"
    } == {
        "ck_user_devices_fingerprint_hash_digest": True,
        "uq_user_devices_user_id_fingerprint_hash": True,
        "uq_user_devices_id_user_id": True,
        "fk_sessions_device_id_user_devices": True,
    }
    ada_laptop = next(iter(devices))  # the first seeded: Ada's "ada-laptop"
    # one fingerprint per user
    with pytest.raises(IntegrityError, match="uq_user_devices_user_id_fingerprint_hash"):
        insert(runner, "user_devices", user_id=ada, fingerprint_hash=hashes[ada_laptop])
    # a session names a device of its own user, never another's
    session = insert(
        runner, "sessions", user_id=ada, token_hash=DIGEST, expires_at=FUTURE,
        device_id=ada_laptop,
    )  # fmt: skip
    with pytest.raises(DBAPIError, match="fk_sessions_device_id_user_devices"):
        insert(
            runner, "sessions", user_id=bob, token_hash=DIGEST, expires_at=FUTURE,
            device_id=ada_laptop,
        )  # fmt: skip
    # the device row goes: its sessions stay, without a device
    runner.execute("DELETE FROM auth.user_devices WHERE id = CAST(:d AS uuid)", {"d": ada_laptop})
    assert runner.execute(
        "SELECT device_id FROM auth.sessions WHERE id = CAST(:s AS uuid)", {"s": session}
    ) == [(None,)]

    runner.downgrade(BEFORE)  # a fingerprint cannot come back: a text form of its hash
    restored = dict(runner.execute("SELECT id::text, device_id FROM auth.user_devices"))
    assert restored == {row: "fp:" + hashes[row].hex() for row in devices if row != ada_laptop}
    assert "device_id" not in {c for _, c, *_ in columns(runner, "sessions")}


def test_rows_without_a_key_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = authmodels_migration_runner
    _seed(runner)
    shape = columns(runner, "user_devices", "sessions")
    monkeypatch.delenv(HASH_KEYS_VAR)
    monkeypatch.delenv(PRIVACY_KEYS_VAR, raising=False)

    with pytest.raises(MissingKeyError, match=PRIVACY_KEYS_VAR):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, "user_devices", "sessions") == shape
