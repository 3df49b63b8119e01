"""The seeds' own verification SQL, run against head, gives the results the seeds expect.

Seed 001's "Verify Migration" queries and seed 003's "Post-Deployment Verification" queries are
run as the seeds wrote them, with ``search_path`` set to schema ``auth`` and our plural table
names; the placeholders (``'<test-user-id>'``...) are filled with real ids. Where the hardened
schema refuses the seed's placeholder *values* (``'test-pub-key'`` is no X25519 key), real values
are used and the refusal of the placeholders is asserted as well.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from authmodels.config import Settings
from authmodels.security.e2ee import generate_key_pair
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import insert


def _auth_path(conn: Connection) -> None:
    conn.execute(text("SET LOCAL search_path = auth"))


# --- seed 001, step 4 "Verify Migration" -------------------------------------------------------


def test_seed_001_verify_migration_finds_tables_columns_and_the_master_admin(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0008_type_hygiene")  # the database as it was before seed 001's migration
    first = insert(
        runner,
        "users",
        email="first@example.com",
        password_hash="x",
        role="admin",
        created_at="2020-01-01T00:00:00Z",
    )
    insert(runner, "users", email="second@example.com", password_hash="x", role="admin")
    insert(runner, "users", email="plain@example.com", password_hash="x")
    runner.upgrade("head")

    with runner.connect() as conn:
        _auth_path(conn)
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'auth' "
                "AND table_name IN ('step_up_tokens', 'audit_logs') ORDER BY 1"
            )
        ).all()
        master_column = conn.execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'auth' AND table_name = 'users' "
                "AND column_name = 'is_master_admin'"
            )
        ).all()
        # seed 001 puts ``version`` on its own token_lending table; here it is users.version
        version_column = conn.execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'auth' AND table_name = 'users' AND column_name = 'version'"
            )
        ).all()
        admins = conn.execute(
            text(
                "SELECT id::text, email, role::text, is_master_admin "
                "FROM users WHERE role = 'admin'"
            )
        ).all()

    assert tables == [("audit_logs",), ("step_up_tokens",)]
    assert master_column == [("is_master_admin", "boolean")]
    assert version_column == [("version", "integer")]
    # "Expected output: At least one admin with is_master_admin = true."
    assert [(a[0], a[3]) for a in admins if a[3]] == [(first, True)]
    assert len(admins) == 2


# --- seed 003, "Post-Deployment Verification" --------------------------------------------------


def test_seed_003_migration_118_oauth_connections(
    conn: Connection, make_user: Callable[..., str]
) -> None:
    test_user = make_user()
    _auth_path(conn)

    assert conn.execute(text("SELECT * FROM oauth_connections LIMIT 0")).all() == []
    conn.execute(text("SELECT * FROM count_old_oauth_tokens()")).all()
    conn.execute(
        text(
            "INSERT INTO oauth_connections (user_id, provider, provider_user_id) "
            "VALUES (:u, 'google', 'test-123')"
        ),
        {"u": test_user},
    )
    [(created,)] = conn.execute(
        text("SELECT updated_at FROM oauth_connections WHERE provider_user_id = 'test-123'")
    ).all()
    assert created is not None
    # "Verify trigger works": an update moves updated_at (a later transaction time here)
    conn.execute(
        text(
            "UPDATE oauth_connections SET updated_at = '2000-01-01', name = 'Ada' "
            "WHERE provider_user_id = 'test-123'"
        )
    )
    [(updated,)] = conn.execute(
        text("SELECT updated_at FROM oauth_connections WHERE provider_user_id = 'test-123'")
    ).all()
    assert updated == created  # the trigger set now(), overriding the value written
    assert conn.execute(text("SELECT * FROM count_old_oauth_tokens()")).all() == [("google", 0, 0)]


def test_seed_003_migration_119_message_encryption(
    conn: Connection, make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    sender = make_user()
    conversation = conn.execute(
        text("INSERT INTO auth.conversations (created_by) VALUES (:u) RETURNING id"),
        {"u": sender},
    ).scalar_one()
    _auth_path(conn)

    assert conn.execute(
        text(
            "SELECT conname FROM pg_constraint "
            "WHERE conname = 'chk_messages_encryption_version_valid'"
        )
    ).all() == [("chk_messages_encryption_version_valid",)]
    conn.execute(text("SELECT * FROM get_message_encryption_stats()")).all()
    # "This should FAIL (invalid encryption_version)" -- uuid_generate_v4() is uuid-ossp's;
    # gen_random_uuid() is built in and authmodels needs no extension.
    error = refused(
        "INSERT INTO messages (id, conversation_id, sender_id, content_encrypted, content_nonce, "
        "encryption_version) VALUES (gen_random_uuid(), :c, :u, E'\\\\x00'::bytea, "
        "E'\\\\x00'::bytea, 99)",
        c=conversation,
        u=sender,
    )
    assert error.orig.diag.constraint_name == "chk_messages_encryption_version_valid"  # type: ignore[union-attr]


def test_seed_003_migration_122_device_keys(
    conn: Connection, make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    owner = make_user()
    cipher = FieldCipher.from_ring(Settings.from_env().require_encryption_keys())

    def values() -> dict[str, object]:
        row_id = uuid.uuid4()
        public = base64.b64encode(generate_key_pair()[1]).decode()
        envelope = cipher.encrypt(
            generate_key_pair()[0], aad=aad_for("device_keys", "private_key_encrypted", row_id)
        )
        return {"i": row_id, "u": owner, "k": public, "e": envelope}

    _auth_path(conn)
    assert conn.execute(text("SELECT * FROM device_keys LIMIT 0")).all() == []
    assert conn.execute(text("SELECT * FROM key_exchanges LIMIT 0")).all() == []
    assert len(conn.execute(text("SELECT * FROM get_device_key_stats()")).all()) == 1

    insert_key = (
        "INSERT INTO device_keys (id, user_id, device_id, public_key, private_key_encrypted) "
        "VALUES (:i, :u, 'device-1', :k, :e)"
    )
    conn.execute(text(insert_key), values())
    # "This should FAIL (duplicate device)"
    duplicate = refused(insert_key, **values())
    assert duplicate.orig.diag.constraint_name == "uq_device_keys_user_id_device_id"  # type: ignore[union-attr]

    # the seed's placeholder values are refused by the hardened checks
    placeholder = refused(
        "INSERT INTO device_keys (user_id, device_id, public_key, private_key_encrypted) "
        "VALUES (:u, 'device-2', 'test-pub-key', 'test-priv-key-enc')",
        u=owner,
    )
    assert placeholder.orig.diag.constraint_name in {  # type: ignore[union-attr]
        "ck_device_keys_public_key_x25519",
        "ck_device_keys_private_key_encrypted_envelope",
    }


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM count_old_oauth_tokens()",
        "SELECT * FROM get_message_encryption_stats()",
        "SELECT * FROM get_device_key_stats()",
    ],
)
def test_the_seed_helper_functions_run_on_an_empty_schema(conn: Connection, statement: str) -> None:
    _auth_path(conn)
    conn.execute(text(statement)).all()
