"""Revision 0010 (seed 002): the security tables, and seed 004's plaintext TOTP seeds moved out.

The live data here is ``users.two_factor_secret``: each base32 seed must end up encrypted in
``two_factor_auth`` (and decrypt to the same bytes, so the user's authenticator app keeps
working), and come back on downgrade.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from authmodels.errors import MigrationError, MissingKeyError
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.security.totp import code_at
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, count, insert
from tests.migrations.migration_helpers import previous, schema_objects, user

REVISION = "0010_security_tables"
BEFORE = previous(REVISION)
SEED = "JBSWY3DPEHPK3PXP"
CREATED = (
    "login_attempts", "security_events", "password_history", "email_delivery_logs",
    "sms_delivery_logs", "user_devices", "two_factor_auth", "two_factor_backup_codes",
    "oauth_connections", "api_keys", "account_recovery", "session_audits",
)  # fmt: skip


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(BEFORE)
    yield authmodels_migration_runner


def _enrolled(runner: MigrationRunner) -> dict[str, str]:
    ids = {
        "enabled": user(runner, "a@example.com", two_factor_secret=SEED, two_factor_enabled=True),
        "pending": user(runner, "b@example.com", two_factor_secret="jbsw y3dp-ehpk 3pxp===="),
        "none": user(runner, "c@example.com"),
        "blank": user(runner, "d@example.com", two_factor_secret="  "),
    }
    return ids


def test_plaintext_totp_seeds_move_encrypted_and_still_give_the_same_codes(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ids = _enrolled(runner)

    runner.upgrade(REVISION)

    cipher = FieldCipher.from_ring(authmodels_keys.encryption_keys)
    rows = {
        str(r[1]): (r[0], bytes(r[2]), r[3])
        for r in runner.execute(
            "SELECT id, user_id, secret_encrypted, confirmed_at IS NOT NULL "
            "FROM auth.two_factor_auth"
        )
    }
    assert set(rows) == {ids["enabled"], ids["pending"]}
    for user_id, (row_id, envelope, _) in rows.items():
        assert SEED.encode() not in envelope
        seed = cipher.decrypt(envelope, aad=aad_for("two_factor_auth", "secret_encrypted", row_id))
        assert seed == base64.b32decode(SEED), user_id
        assert code_at(seed, 1_700_000_000) == code_at(base64.b32decode(SEED), 1_700_000_000)
    assert rows[ids["enabled"]][2] is True  # confirmed: 2FA was enabled
    assert rows[ids["pending"]][2] is False
    assert ("users", "two_factor_secret") not in {(c[0], c[1]) for c in columns(runner, "users")}


def test_a_seed_that_is_not_base32_stops_the_revision_before_any_change(
    runner: MigrationRunner,
) -> None:
    _enrolled(runner)
    user(runner, "e@example.com", two_factor_secret="not!base32")
    before = schema_objects(runner)

    with pytest.raises(MigrationError, match="not base32"):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert schema_objects(runner) == before
    assert count(runner, "users") == 5


def test_seeds_to_move_without_an_encryption_key_stop_the_revision(
    runner: MigrationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enrolled(runner)
    monkeypatch.delenv("AUTHMODELS_ENCRYPTION_KEYS")

    with pytest.raises(MissingKeyError, match="AUTHMODELS_ENCRYPTION_KEYS"):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert runner.execute("SELECT to_regclass('auth.two_factor_auth')") == [(None,)]


def test_an_empty_database_migrates_without_keys(
    runner: MigrationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    user(runner, "c@example.com")
    monkeypatch.delenv("AUTHMODELS_ENCRYPTION_KEYS")
    runner.upgrade(REVISION)
    assert runner.current() == REVISION


def test_downgrade_decrypts_the_seeds_back_and_restores_the_schema(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ids = _enrolled(runner)
    users_before = columns(runner, "users")
    objects_before = schema_objects(runner)
    runner.upgrade(REVISION)
    enrolled_later = user(runner, "f@example.com")
    row_id = uuid.uuid4()  # an enrolment made by the application at 0010
    envelope = FieldCipher.from_ring(authmodels_keys.encryption_keys).encrypt(
        base64.b32decode("MFRGGZDFMZTWQ2LK"),
        aad=aad_for("two_factor_auth", "secret_encrypted", row_id),
    )
    insert(
        runner, "two_factor_auth", id=str(row_id), user_id=enrolled_later, secret_encrypted=envelope
    )

    runner.downgrade(BEFORE)

    assert columns(runner, "users") == users_before
    assert schema_objects(runner) == objects_before
    secrets = dict(runner.execute("SELECT id::text, two_factor_secret FROM auth.users"))
    assert secrets[ids["enabled"]] == SEED
    assert secrets[ids["pending"]] == SEED  # normalised: upper case, no spaces or padding
    assert secrets[ids["none"]] is None
    assert secrets[ids["blank"]] is None  # blank: no seed to keep (said in the docstring)
    assert secrets[enrolled_later] == "MFRGGZDFMZTWQ2LK"


def test_downgrade_refuses_to_drop_rows_unless_allowed(
    runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    owner = user(runner, "a@example.com")
    runner.upgrade(REVISION)
    insert(
        runner,
        "login_attempts",
        user_id=owner,
        identifier_hash=b"\x01\x01k" + bytes(32),
        attempt_result="failed_password",
        failure_reason="wrong password",
    )

    with pytest.raises(MigrationError, match=r"auth\.login_attempts.*allow_data_loss"):
        runner.downgrade(BEFORE)
    assert runner.current() == REVISION
    assert count(runner, "login_attempts") == 1

    allowed = MigrationRunner(authmodels_empty_database, allow_data_loss="true")
    try:
        allowed.downgrade(BEFORE)
    finally:
        allowed.dispose()
    assert runner.current() == BEFORE
    assert all(runner.execute(f"SELECT to_regclass('auth.{t}')") == [(None,)] for t in CREATED)
