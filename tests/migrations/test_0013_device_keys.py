"""Revision 0013 (seed 003 #122): device keys, key exchanges, and the audit trail raw SQL cannot
skip."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from authmodels import rls
from authmodels.errors import MigrationError
from authmodels.security.e2ee import generate_key_pair, shared_secret, shared_secret_audit_hash
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import application_role, count, insert
from tests.migrations.migration_helpers import previous, schema_objects, user

REVISION = "0013_device_keys"
BEFORE = previous(REVISION)


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(REVISION)
    yield authmodels_migration_runner


def _public_b64(public: bytes) -> str:
    return base64.b64encode(public).decode("ascii")


def _fingerprint(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()


def _register(
    runner: MigrationRunner, keys: TestKeys, owner: str, device: str = "phone"
) -> tuple[str, bytes, bytes]:
    private, public = generate_key_pair()
    row_id = uuid.uuid4()
    envelope = FieldCipher.from_ring(keys.encryption_keys).encrypt(
        private, aad=aad_for("device_keys", "private_key_encrypted", row_id)
    )
    insert(
        runner,
        "device_keys",
        id=str(row_id),
        user_id=owner,
        device_id=device,
        public_key=_public_b64(public),
        private_key_encrypted=envelope,
    )
    return str(row_id), private, public


def _events(runner: MigrationRunner) -> list[tuple[object, ...]]:
    return runner.execute(
        "SELECT event_type::text, device_key_id::text, user_id::text, device_id, "
        "old_public_key_fingerprint, new_public_key_fingerprint, actor_user_id::text, reason "
        "FROM auth.device_key_events ORDER BY created_at, event_type"
    )


def test_registration_rotation_and_deletion_are_recorded_even_from_raw_sql(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ada = user(runner, "ada@example.com")
    key_id, _, first = _register(runner, authmodels_keys, ada)
    _, second = generate_key_pair()

    with runner.connect() as conn:  # the owner rotates, saying why
        rls.set_current_user(conn, ada)
        conn.execute(text("SELECT set_config('authmodels.device_key_change_reason', 'lost', true)"))
        conn.execute(
            text("UPDATE auth.device_keys SET public_key = :k WHERE id = :i"),
            {"k": _public_b64(second), "i": key_id},
        )
    runner.execute(  # an update that keeps the key is no rotation
        "UPDATE auth.device_keys SET updated_at = now() WHERE id = :i", {"i": key_id}
    )
    runner.execute("DELETE FROM auth.device_keys WHERE id = :i", {"i": key_id})

    assert _events(runner) == [
        ("registered", key_id, ada, "phone", None, _fingerprint(first), None, None),
        ("rotated", key_id, ada, "phone", _fingerprint(first), _fingerprint(second), ada, "lost"),
        ("deleted", key_id, ada, "phone", _fingerprint(second), None, None, None),
    ]


def test_the_seed_upsert_rotates_a_device_key(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ada = user(runner, "ada@example.com")
    _register(runner, authmodels_keys, ada)
    _, second = generate_key_pair()
    [(envelope,)] = runner.execute("SELECT private_key_encrypted FROM auth.device_keys")

    runner.execute(
        "INSERT INTO auth.device_keys (user_id, device_id, public_key, private_key_encrypted) "
        "VALUES (:u, 'phone', :k, :e) ON CONFLICT (user_id, device_id) DO UPDATE "
        "SET public_key = EXCLUDED.public_key, "
        "private_key_encrypted = EXCLUDED.private_key_encrypted, updated_at = NOW()",
        {"u": ada, "k": _public_b64(second), "e": envelope},
    )

    assert [e[0] for e in _events(runner)] == ["registered", "rotated"]
    assert count(runner, "device_keys") == 1


def test_keys_deleted_with_their_account_leave_an_event_without_the_account(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ada = user(runner, "ada@example.com")
    key_id, _, public = _register(runner, authmodels_keys, ada)

    runner.execute("DELETE FROM auth.users WHERE id = :u", {"u": ada})

    assert _events(runner) == [
        ("registered", key_id, None, "phone", None, _fingerprint(public), None, None),
        ("deleted", key_id, None, "phone", _fingerprint(public), None, None, "account deleted"),
    ]


def test_only_x25519_public_keys_and_encrypted_private_keys_are_stored(
    runner: MigrationRunner,
) -> None:
    ada = user(runner, "ada@example.com")
    envelope = b"\x01\x02k1" + bytes(12 + 32 + 16)
    for public_key in (
        "test-pub-key",  # the seed's placeholder
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet: not stored so
    ):
        with pytest.raises(Exception, match="ck_device_keys_public_key_x25519"):
            runner.execute(
                "INSERT INTO auth.device_keys (user_id, device_id, public_key, "
                "private_key_encrypted) VALUES (:u, 'd', :k, :e)",
                {"u": ada, "k": public_key, "e": envelope},
            )
    with pytest.raises(Exception, match="ck_device_keys_private_key_encrypted_envelope"):
        runner.execute(
            "INSERT INTO auth.device_keys (user_id, device_id, public_key, private_key_encrypted) "
            "VALUES (:u, 'd', :k, 'test-priv-key-enc')",
            {"u": ada, "k": _public_b64(generate_key_pair()[1])},
        )


def test_key_exchanges_keep_only_the_hmac_of_the_shared_secret(runner: MigrationRunner) -> None:
    ada, bob = user(runner, "ada@example.com"), user(runner, "bob@example.com")
    conversation = insert(runner, "conversations", created_by=ada)
    a_private, a_public = generate_key_pair()
    b_private, b_public = generate_key_pair()
    secret = shared_secret(a_private, b_public)
    assert secret == shared_secret(b_private, a_public)

    insert(
        runner,
        "key_exchanges",
        conversation_id=conversation,
        initiator_id=ada,
        peer_id=bob,
        shared_secret_hash=shared_secret_audit_hash(secret, conversation),
    )

    with pytest.raises(Exception, match="ck_key_exchanges_shared_secret_hash_hmac_sha256"):
        insert(
            runner,
            "key_exchanges",
            conversation_id=conversation,
            initiator_id=ada,
            peer_id=bob,
            shared_secret_hash=secret + b"!",
        )
    with pytest.raises(Exception, match="ck_key_exchanges_initiator_is_not_peer"):
        insert(
            runner,
            "key_exchanges",
            conversation_id=conversation,
            initiator_id=ada,
            peer_id=ada,
            shared_secret_hash=bytes(32),
        )


def test_stats_count_keys_rotations_exchanges_and_failures(
    runner: MigrationRunner, authmodels_keys: TestKeys
) -> None:
    ada, bob = user(runner, "ada@example.com"), user(runner, "bob@example.com")
    conversation = insert(runner, "conversations", created_by=ada)
    key_id, _, _ = _register(runner, authmodels_keys, ada, "phone")
    _register(runner, authmodels_keys, ada, "laptop")
    _register(runner, authmodels_keys, bob, "phone")
    runner.execute(
        "UPDATE auth.device_keys SET public_key = :k WHERE id = :i",
        {"k": _public_b64(generate_key_pair()[1]), "i": key_id},
    )
    insert(
        runner,
        "key_exchanges",
        conversation_id=conversation,
        initiator_id=ada,
        peer_id=bob,
        shared_secret_hash=bytes(32),
    )
    insert(
        runner,
        "device_key_events",
        event_type="exchange_failed",
        user_id=ada,
        conversation_id=conversation,
        peer_id=bob,
        reason="peer key is a low-order point",
    )

    [row] = runner.execute("SELECT * FROM auth.get_device_key_stats()")

    assert tuple(row) == (3, 2, pytest.approx(1.5), 1, 1, 1)


def test_peers_read_each_others_public_keys_only_through_a_shared_conversation(
    runner: MigrationRunner, authmodels_keys: TestKeys, authmodels_empty_database: URL
) -> None:
    ada, bob, eve = (user(runner, f"{n}@example.com") for n in ("ada", "bob", "eve"))
    conversation = insert(runner, "conversations", created_by=ada)
    for member in (ada, bob):
        runner.execute(
            "INSERT INTO auth.conversation_participants (conversation_id, user_id) VALUES (:c, :u)",
            {"c": conversation, "u": member},
        )
    _, _, bob_public = _register(runner, authmodels_keys, bob)

    with application_role(runner, authmodels_empty_database) as (_, app):
        with app.begin() as conn:
            rls.set_current_user(conn, ada)
            assert conn.execute(text("SELECT count(*) FROM auth.device_keys")).scalar() == 0
            peer_keys = conn.execute(
                text("SELECT device_id, public_key FROM auth.get_peer_public_keys(:p)"),
                {"p": bob},
            ).all()
            assert peer_keys == [("phone", _public_b64(bob_public))]
            # ada records the exchange she initiates, and a failure of her own
            conn.execute(
                text(
                    "INSERT INTO auth.key_exchanges (conversation_id, initiator_id, peer_id, "
                    "shared_secret_hash) VALUES (:c, :a, :b, :h)"
                ),
                {"c": conversation, "a": ada, "b": bob, "h": bytes(32)},
            )
            conn.execute(
                text(
                    "INSERT INTO auth.device_key_events (event_type, user_id, conversation_id, "
                    "peer_id, reason) VALUES ('exchange_failed', :a, :c, :b, 'timeout')"
                ),
                {"a": ada, "b": bob, "c": conversation},
            )
        with app.begin() as conn:
            rls.set_current_user(conn, eve)
            none = conn.execute(
                text("SELECT count(*) FROM auth.get_peer_public_keys(:p)"), {"p": bob}
            ).scalar()
            assert none == 0
            assert conn.execute(text("SELECT count(*) FROM auth.key_exchanges")).scalar() == 0
        with pytest.raises(Exception, match="row-level security"), app.begin() as conn:
            rls.set_current_user(conn, ada)
            conn.execute(
                text(
                    "INSERT INTO auth.device_key_events (event_type, user_id, "
                    "new_public_key_fingerprint) VALUES ('registered', :a, :f)"
                ),
                {"a": ada, "f": bytes(32)},
            )


def test_downgrade_refuses_to_drop_keys_unless_allowed(
    authmodels_migration_runner: MigrationRunner,
    authmodels_keys: TestKeys,
    authmodels_empty_database: URL,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    before = schema_objects(runner)
    runner.upgrade(REVISION)
    runner.downgrade(BEFORE)  # empty: nothing to refuse
    assert schema_objects(runner) == before

    runner.upgrade(REVISION)
    _register(runner, authmodels_keys, user(runner, "ada@example.com"))
    with pytest.raises(MigrationError, match=r"auth\.device_keys, auth\.device_key_events"):
        runner.downgrade(BEFORE)
    assert runner.current() == REVISION

    allowed = MigrationRunner(authmodels_empty_database, allow_data_loss="true")
    try:
        allowed.downgrade(BEFORE)
    finally:
        allowed.dispose()
    assert schema_objects(runner) == before
