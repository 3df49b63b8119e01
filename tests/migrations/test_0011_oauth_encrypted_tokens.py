"""Revision 0011 (seed 003 #118): legacy hashed OAuth connections survive, new ones encrypt."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from authmodels.errors import MigrationError
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, count, insert
from tests.migrations.migration_helpers import previous, schema_objects, user

REVISION = "0011_oauth_encrypted_tokens"
BEFORE = previous(REVISION)
DIGEST = b"\x01\x02k1" + bytes(range(32))


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(BEFORE)
    yield authmodels_migration_runner


def _legacy(runner: MigrationRunner) -> dict[str, str]:
    owner = user(runner, "ada@example.com")
    return {
        "owner": owner,
        "google": insert(
            runner,
            "oauth_connections",
            user_id=owner,
            provider="google",
            provider_user_id="g-1",
            email="ada@gmail.example",
            access_token_hash=DIGEST,
            refresh_token_hash=DIGEST,
            token_type="Bearer",
            token_expires_at="2020-01-01T00:00:00Z",
            updated_at="2021-01-01T00:00:00Z",
        ),
        "github": insert(
            runner,
            "oauth_connections",
            user_id=owner,
            provider="github",
            provider_user_id="gh-1",
            access_token_hash=DIGEST,
        ),
        "bare": insert(
            runner, "oauth_connections", user_id=owner, provider="github", provider_user_id="gh-2"
        ),
    }


def _encrypted(runner: MigrationRunner, keys: TestKeys, owner: str) -> str:
    row_id = uuid.uuid4()
    cipher = FieldCipher.from_ring(keys.encryption_keys)

    def seal(column: str, token: str) -> bytes:
        return cipher.encrypt(token.encode(), aad=aad_for("oauth_connections", column, row_id))

    return insert(
        runner,
        "oauth_connections",
        id=str(row_id),
        user_id=owner,
        provider="google",
        provider_user_id="g-2",
        access_token_encrypted=seal("access_token_encrypted", "ya29.access"),
        refresh_token_encrypted=seal("refresh_token_encrypted", "1//refresh"),
        tokens_encrypted=True,
        token_expires_at="2000-01-01T00:00:00Z",
    )


def test_legacy_hashed_connections_survive_with_tokens_encrypted_false(
    runner: MigrationRunner,
) -> None:
    ids = _legacy(runner)
    before = runner.execute(
        "SELECT id::text, provider, provider_user_id, access_token_hash, refresh_token_hash, "
        "token_expires_at, updated_at FROM auth.oauth_connections ORDER BY 1"
    )

    runner.upgrade(REVISION)

    after = runner.execute(
        "SELECT id::text, provider, provider_user_id, access_token_hash, refresh_token_hash, "
        "token_expires_at, updated_at FROM auth.oauth_connections ORDER BY 1"
    )
    assert after == before  # nothing rewritten, not even updated_at
    flags = runner.execute(
        "SELECT tokens_encrypted, token_encryption_method, access_token_encrypted, "
        "last_token_refresh_status FROM auth.oauth_connections"
    )
    assert flags == [(False, None, None, None)] * 3
    assert runner.execute("SELECT * FROM auth.count_old_oauth_tokens()") == [
        ("github", 1, 0),
        ("google", 1, 0),
    ]
    assert ids["bare"]  # a connection without tokens is neither old nor encrypted


def test_new_connections_store_encrypted_tokens_and_are_found_for_refresh(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ids = _legacy(runner)
    runner.upgrade(REVISION)

    encrypted = _encrypted(runner, authmodels_keys, ids["owner"])

    assert runner.execute(
        "SELECT token_encryption_method FROM auth.oauth_connections WHERE id = :i",
        {"i": encrypted},
    ) == [("aes-256-gcm",)]
    due = runner.execute(
        "SELECT id::text FROM auth.oauth_connections WHERE tokens_encrypted "
        "AND token_expires_at < now() + interval '5 minutes' "
        "AND refresh_token_encrypted IS NOT NULL"
    )
    assert due == [(encrypted,)]  # the legacy google row is expired too, but cannot refresh
    assert runner.execute("SELECT * FROM auth.count_old_oauth_tokens()") == [
        ("github", 1, 0),
        ("google", 1, 1),
    ]
    with pytest.raises(Exception, match="ck_oauth_connections_tokens_encrypted_consistent"):
        runner.execute(
            "UPDATE auth.oauth_connections SET tokens_encrypted = true WHERE id = :i",
            {"i": ids["github"]},
        )
    with pytest.raises(Exception, match="ck_oauth_connections_access_token_encrypted_envelope"):
        runner.execute(
            "UPDATE auth.oauth_connections SET access_token_encrypted = 'ya29.plain', "
            "tokens_encrypted = true WHERE id = :i",
            {"i": ids["github"]},
        )


def test_the_seed_trigger_function_keeps_updated_at_current(runner: MigrationRunner) -> None:
    ids = _legacy(runner)
    runner.upgrade(REVISION)

    runner.execute(
        "UPDATE auth.oauth_connections SET last_token_refresh_attempt = now(), "
        "last_token_refresh_status = 'skipped' WHERE id = :i",
        {"i": ids["google"]},
    )

    [(fresh, function)] = runner.execute(
        "SELECT c.updated_at > now() - interval '1 minute', t.tgfoid::regproc::text "
        "FROM auth.oauth_connections AS c, pg_trigger AS t "
        "WHERE c.id = :i AND t.tgname = 'trg_oauth_connections_updated_at'",
        {"i": ids["google"]},
    )
    assert fresh is True
    assert function == "auth.update_oauth_connections_updated_at"


def test_downgrade_keeps_every_connection_and_refuses_to_drop_encrypted_tokens(
    runner: MigrationRunner, authmodels_keys: TestKeys, authmodels_empty_database: URL
) -> None:
    ids = _legacy(runner)
    table_before = columns(runner, "oauth_connections")
    objects_before = schema_objects(runner)
    runner.upgrade(REVISION)
    _encrypted(runner, authmodels_keys, ids["owner"])

    with pytest.raises(MigrationError, match="allow_data_loss"):
        runner.downgrade(BEFORE)
    assert runner.current() == REVISION

    allowed = MigrationRunner(authmodels_empty_database, allow_data_loss="true")
    try:
        allowed.downgrade(BEFORE)
    finally:
        allowed.dispose()

    assert columns(runner, "oauth_connections") == table_before
    assert schema_objects(runner) == objects_before
    assert count(runner, "oauth_connections") == 4  # the connection stays; its tokens went
    assert runner.execute(
        "SELECT access_token_hash FROM auth.oauth_connections WHERE id = :i", {"i": ids["google"]}
    ) == [(DIGEST,)]


def test_downgrade_without_encrypted_tokens_needs_no_permission(runner: MigrationRunner) -> None:
    _legacy(runner)
    objects_before = schema_objects(runner)
    runner.upgrade(REVISION)
    runner.downgrade(BEFORE)
    assert schema_objects(runner) == objects_before
    assert count(runner, "oauth_connections") == 3
