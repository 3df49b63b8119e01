"""Revision 0005 (token and session safety) on a database holding plaintext access tokens and
seed 004's unkeyed SHA-256 token hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from authmodels.config import HASH_KEYS_VAR
from authmodels.errors import MissingKeyError
from authmodels.models.tokens import token_lookup_params, token_lookup_sql
from authmodels.security.hashing import TokenHasher
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import columns, constraints, count, indexes, insert

BEFORE = "0004_device_flow_hardening"
REVISION = "0005_token_session_safety"
FUTURE = "2999-01-01T00:00:00Z"
TABLES = (
    "sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "access_tokens",
)


def sha256_hex(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture
def hasher(authmodels_keys: TestKeys) -> TokenHasher:
    return TokenHasher.from_ring(authmodels_keys.hash_keys)


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    user = insert(runner, "users", email="alice@example.com", password_hash="x")
    session = insert(
        runner,
        "sessions",
        user_id=user,
        token_hash=sha256_hex("session-token"),
        refresh_token_hash=sha256_hex("session-refresh").upper(),
        expires_at=FUTURE,
    )
    yield {
        "user": user,
        "session": session,
        "bare_session": insert(
            runner, "sessions", user_id=user, token_hash=sha256_hex("other"), expires_at=FUTURE
        ),
        "refresh": insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=session,
            token_hash=sha256_hex("refresh-token"),
            expires_at=FUTURE,
        ),
        "reset": insert(
            runner,
            "password_reset_tokens",
            user_id=user,
            token_hash=sha256_hex("reset-token"),
            expires_at=FUTURE,
        ),
        "verify": insert(
            runner,
            "email_verification_tokens",
            user_id=user,
            email="alice@example.com",
            token_hash=sha256_hex("verify-token"),
            expires_at=FUTURE,
        ),
        "access": insert(
            runner, "access_tokens", user_id=user, token="access-token-1", expires_at=FUTURE
        ),
        "expired_access": insert(
            runner,
            "access_tokens",
            user_id=user,
            token="access-token-2",
            expires_at="2020-01-01T00:00:00Z",
        ),
    }


def test_tokens_issued_before_the_upgrade_still_validate(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str], hasher: TokenHasher
) -> None:
    runner, ids = authmodels_migration_runner, legacy

    runner.upgrade(REVISION)

    def find(table: str, raw: str) -> list[tuple[object, ...]]:
        return runner.execute(
            f"SELECT id::text, digest_scheme FROM auth.{table} WHERE {token_lookup_sql(table)}",
            token_lookup_params(hasher, raw),
        )

    assert runner.execute(
        "SELECT id::text FROM auth.access_tokens WHERE token_hash = ANY(:c) AND expires_at > now()",
        {"c": hasher.candidates("access-token-1")},
    ) == [(ids["access"],)]
    for table, raw, key in [
        ("sessions", "session-token", "session"),
        ("refresh_tokens", "refresh-token", "refresh"),
        ("password_reset_tokens", "reset-token", "reset"),
        ("email_verification_tokens", "verify-token", "verify"),
    ]:
        assert find(table, raw) == [(ids[key], 2)], table
        assert find(table, sha256_hex(raw)) == []  # the unkeyed hash of a dump is not the token
        scheme_1_only = runner.execute(
            f"SELECT id FROM auth.{table} WHERE token_hash = ANY(:c)",
            {"c": hasher.candidates(raw)},
        )
        assert scheme_1_only == []  # scheme 1 alone misses it

    [(refresh_hash, bare_refresh)] = runner.execute(
        "SELECT s.refresh_token_hash, b.refresh_token_hash FROM auth.sessions s, auth.sessions b "
        "WHERE s.id = :s AND b.id = :b",
        {"s": ids["session"], "b": ids["bare_session"]},
    )
    # the legacy hex was stored in upper case: it is keyed in its canonical lower case
    assert hasher.matches(sha256_hex("session-refresh"), refresh_hash)
    assert bare_refresh is None

    cols = {(t, c) for t, c, *_ in columns(runner, *TABLES)}
    assert ("access_tokens", "token") not in cols
    assert {
        ("access_tokens", "dpop_jkt"),
        ("access_tokens", "rotated_from"),
        ("access_tokens", "revoked_at"),
        ("sessions", "dpop_jkt"),
        ("sessions", "last_rotated_at"),
        ("refresh_tokens", "dpop_jkt"),
    } <= cols
    names = {n for n, _ in indexes(runner)}
    assert {
        "idx_tokens_user_expires",
        "idx_tokens_jkt",
        "idx_tokens_revoked",
        "uq_access_tokens_token_hash",
        "ix_sessions_token_hash",
    } <= names
    assert all(valid for *_, valid in constraints(runner, *TABLES))


def test_new_rows_default_to_the_raw_token_scheme(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str], hasher: TokenHasher
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    runner.upgrade(REVISION)
    new = insert(
        runner,
        "sessions",
        user_id=ids["user"],
        token_hash=hasher.digest("fresh"),
        expires_at=FUTURE,
    )
    assert runner.execute(
        f"SELECT id::text, digest_scheme FROM auth.sessions WHERE {token_lookup_sql('sessions')}",
        token_lookup_params(hasher, "fresh"),
    ) == [(new, 1)]
    with pytest.raises(Exception, match="digest_scheme_known"):
        runner.execute("UPDATE auth.sessions SET digest_scheme = 3 WHERE id = :i", {"i": new})


def test_quarantined_access_tokens_lose_their_plaintext(
    authmodels_migration_runner: MigrationRunner, hasher: TokenHasher
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0001_baseline")
    insert(
        runner,
        "access_tokens",
        token="orphan-secret",
        user_email="nobody@example.com",
        expires_at=FUTURE,
    )
    runner.upgrade(REVISION)
    [(row,)] = runner.execute("SELECT row_data FROM auth.quarantine")
    assert "orphan-secret" not in str(row)
    assert hasher.matches("orphan-secret", bytes.fromhex(row["token_hash"][2:]))


def test_rows_without_a_key_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner,
    legacy: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = authmodels_migration_runner
    shape = columns(runner, *TABLES)
    monkeypatch.delenv(HASH_KEYS_VAR)

    with pytest.raises(MissingKeyError, match=HASH_KEYS_VAR):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, *TABLES) == shape


def test_downgrade_restores_the_schema_and_disables_every_token(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    shape = (columns(runner, *TABLES), indexes(runner), constraints(runner, *TABLES))
    before = {t: count(runner, t) for t in TABLES}
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert (columns(runner, *TABLES), indexes(runner), constraints(runner, *TABLES)) == shape
    assert {t: count(runner, t) for t in TABLES} == before
    [(active, revoked, token_hash)] = runner.execute(
        "SELECT is_active, revoked_at IS NOT NULL, token_hash FROM auth.sessions WHERE id = :i",
        {"i": ids["session"]},
    )
    assert (active, revoked) == (False, True)
    assert token_hash.startswith("unrestorable-")
    assert runner.execute("SELECT count(*) FROM auth.access_tokens WHERE expires_at > now()") == [
        (0,)
    ]
    assert runner.execute(
        "SELECT count(*) FROM auth.password_reset_tokens WHERE used_at IS NULL"
    ) == [(0,)]
