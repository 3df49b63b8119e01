"""Revision 0003 (WebAuthn storage) on a database holding legacy hex/base64 credentials."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import columns, constraints, count, indexes, insert, quarantined

BEFORE = "0002_identity_unification"
REVISION = "0003_webauthn_storage"

COSE_KEY = bytes(range(77))  # any bytes: the revision only moves them


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    alice = insert(runner, "users", email="alice@example.com", password_hash="x")
    bob = insert(runner, "users", email="bob@example.com", password_hash="x")

    def credential(user: str, credential_id: str, public_key: str, **extra: object) -> str:
        return insert(
            runner,
            "biometric_credentials",
            user_id=user,
            credential_id=credential_id,
            public_key=public_key,
            **extra,
        )

    ids = {
        "alice": alice,
        "bob": bob,
        "lower": credential(alice, "a1b2c3", _b64url(COSE_KEY), sign_count=5),
        "upper": credential(
            alice,
            "DEADBEEF",
            base64.b64encode(COSE_KEY[:10]).decode(),
            revoked_at="2025-01-01T00:00:00Z",
        ),
        "wrapped": credential(bob, "0102", _b64url(b"k"), sign_count=-1),
        "not_hex": credential(alice, "xyz1", _b64url(COSE_KEY)),
        "odd": credential(alice, "abc", _b64url(COSE_KEY)),
        "too_long": credential(alice, "ab" * 1024, _b64url(COSE_KEY)),
        "bad_key": credential(bob, "0a0b", "not base64!"),
        "first": credential(alice, "CAFE", _b64url(b"one"), created_at="2024-01-01T00:00:00Z"),
        "second": credential(bob, "cafe", _b64url(b"two"), created_at="2024-06-01T00:00:00Z"),
    }
    yield ids


def test_credentials_are_converted_to_bytes_or_quarantined(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    before = count(runner, "biometric_credentials")

    runner.upgrade(REVISION)

    rows = {
        r[0]: r[1:]
        for r in runner.execute(
            "SELECT id::text, credential_id, cose_public_key, sign_count, transports, "
            "backup_eligible, backup_state FROM auth.webauthn_credentials"
        )
    }
    assert set(rows) == {ids["lower"], ids["upper"], ids["wrapped"], ids["first"]}
    assert rows[ids["lower"]] == (bytes.fromhex("a1b2c3"), COSE_KEY, 5, [], False, False)
    assert rows[ids["upper"]][:2] == (bytes.fromhex("deadbeef"), COSE_KEY[:10])
    assert rows[ids["wrapped"]][2] == 2**32 - 1  # a wrapped unsigned counter, read back
    assert rows[ids["first"]][:2] == (bytes.fromhex("cafe"), b"one")

    moved = quarantined(runner, "biometric_credentials")
    assert set(moved) == {
        ids["not_hex"],
        ids["odd"],
        ids["too_long"],
        ids["bad_key"],
        ids["second"],
    }
    assert moved[ids["not_hex"]][0] == "credential_id is not an even-length hexadecimal string"
    assert moved[ids["odd"]][0] == "credential_id is not an even-length hexadecimal string"
    assert moved[ids["too_long"]][0] == (
        "credential_id is 1024 bytes; WebAuthn allows at most 1023"
    )
    assert moved[ids["bad_key"]][0] == "public_key is not base64 or base64url text"
    assert moved[ids["second"]][0].startswith("duplicate credential id")
    assert moved[ids["bad_key"]][2]["public_key"] == "not base64!"
    assert {revision for _, revision, _ in moved.values()} == {REVISION}
    assert count(runner, "webauthn_credentials") + len(moved) == before


def test_constraints_and_indexes_guard_the_new_columns(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    runner.upgrade(REVISION)

    assert runner.execute("SELECT to_regclass('auth.biometric_credentials')") == [(None,)]
    checks = {name: valid for _, name, _, valid in constraints(runner, "webauthn_credentials")}
    assert checks == {
        "pk_webauthn_credentials": True,
        "fk_webauthn_credentials_user_id_users": True,
        "ck_webauthn_credentials_sign_count_range": True,
        "ck_webauthn_credentials_credential_id_length": True,
    }
    names = {name for name, _ in indexes(runner)}
    assert {
        "uq_webauthn_user_cred",
        "uq_webauthn_credentials_credential_id",
        "idx_webauthn_aaguid",
        "idx_webauthn_user_active",
    } <= names
    insert_sql = (
        "INSERT INTO auth.webauthn_credentials (user_id, credential_id, cose_public_key, "
        "sign_count) VALUES (:u, :c, '\\x00', :n)"
    )
    with pytest.raises(Exception, match="sign_count_range"):
        runner.execute(insert_sql, {"u": ids["bob"], "c": b"\x09", "n": 2**32})
    with pytest.raises(Exception, match="credential_id_length"):
        runner.execute(insert_sql, {"u": ids["bob"], "c": b"\x01" * 1024, "n": 0})
    with pytest.raises(Exception, match="uq_webauthn"):
        runner.execute(insert_sql, {"u": ids["bob"], "c": bytes.fromhex("a1b2c3"), "n": 0})


def test_downgrade_restores_hex_text_and_the_quarantined_rows(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    shape = (columns(runner, "biometric_credentials"), indexes(runner))
    before = count(runner, "biometric_credentials")
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert (columns(runner, "biometric_credentials"), indexes(runner)) == shape
    assert count(runner, "biometric_credentials") == before
    rows = {
        r[0]: r[1:]
        for r in runner.execute(
            "SELECT id::text, credential_id, public_key, sign_count FROM auth.biometric_credentials"
        )
    }
    assert rows[ids["lower"]] == ("a1b2c3", _b64url(COSE_KEY), 5)
    assert rows[ids["upper"]] == ("deadbeef", _b64url(COSE_KEY[:10]), 0)  # same bytes
    assert rows[ids["wrapped"]][2] == -1
    assert rows[ids["not_hex"]] == ("xyz1", _b64url(COSE_KEY), 0)  # back from quarantine
    assert rows[ids["second"]][0] == "cafe"
    assert runner.execute("SELECT count(*) FROM auth.quarantine") == [(0,)]
