"""Leaving the ``env`` provider without changing a key: ``keys import`` wraps the environment's
rings (same ids, same current keys, so every stored digest and envelope still matches), and
``keys rewrap --from`` moves the store from a key file to a PKCS#11 token."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from authmodels import config
from authmodels.config import Settings, format_key_ring, parse_key_ring
from authmodels.security import FieldCipher, TokenHasher
from tests.keys.conftest import Cli, Provider, assert_no_key_material


def test_env_rings_imported_then_moved_to_a_token_keep_every_key(
    file_provider: Provider, hsm_provider: Provider, cli: Cli
) -> None:
    hash_keys = {"2025-01": secrets.token_bytes(32), "2026-01": secrets.token_bytes(48)}
    enc_keys = {"2026-01": secrets.token_bytes(32)}
    env_rings = {
        config.HASH_KEYS_VAR: format_key_ring(hash_keys),
        config.HASH_KEY_CURRENT_VAR: "2025-01",  # a staged key: the current one is not the last
        config.ENCRYPTION_KEYS_VAR: format_key_ring(enc_keys),
    }
    before = Settings.from_env(env_rings)
    token_digest = TokenHasher.from_ring(before.require_hash_keys()).digest("a session token")
    envelope = FieldCipher.from_ring(before.require_encryption_keys()).encrypt(b"seed", aad=b"r")

    # hsm_provider set os.environ last: point it back at the file provider, with the env rings
    for name, value in file_provider.environ.items():
        file_provider.set(name, value)
    for name, value in env_rings.items():
        file_provider.monkeypatch.setenv(name, value)
    file_provider.monkeypatch.delenv(config.PKCS11_PIN_VAR)
    cli.ok("keys", "kek", "create", "--id", "file-kek")
    imported = cli.ok("keys", "import")
    assert "3 key(s) imported" in imported
    for name in env_rings:
        file_provider.monkeypatch.delenv(name)
    status, output = cli("keys", "import")
    assert status == 1 and "there is no ring to import" in output

    after = Settings.from_env(file_provider.environ)
    assert after.require_hash_keys().keys == hash_keys
    assert after.require_hash_keys().current == "2025-01"
    assert after.require_encryption_keys().keys == enc_keys
    assert token_digest in TokenHasher.from_ring(after.require_hash_keys()).candidates(
        "a session token"
    )
    cipher = FieldCipher.from_ring(after.require_encryption_keys())
    assert cipher.decrypt(envelope, aad=b"r") == b"seed"

    # the same store, moved under a KEK inside the token
    token_store = file_provider.store.with_name("token-wrapped-keys.json")
    shutil.copy(file_provider.store, token_store)
    hsm_provider.environ[config.WRAPPED_KEYS_VAR] = str(token_store)
    for name, value in hsm_provider.environ.items():
        hsm_provider.set(name, value)
    cli.ok("keys", "kek", "create")
    kek_uri = file_provider.environ[config.KEY_PROVIDER_VAR]
    moved = cli.ok("keys", "rewrap", "--from", kek_uri)
    assert "3 data key(s) rewrapped under KEK" in moved and "from file-kek (3)" in moved
    in_token = Settings.from_env(hsm_provider.environ)
    assert in_token.require_hash_keys().keys == hash_keys
    assert in_token.require_encryption_keys().keys == enc_keys
    assert "file-kek" not in cli.ok("keys", "list")
    kek_file = parse_key_ring(
        Path(kek_uri.removeprefix("file:")).read_text(), source="kek file", exact_bytes=32
    )
    every_key = [*hash_keys.values(), *enc_keys.values(), kek_file.current_key]
    assert assert_no_key_material(every_key, cli.printed) > 500
