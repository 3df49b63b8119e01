"""Re-encryption of every encrypted column to the newest key (``authmodels keys reencrypt``):
resumable, idempotent, and complete (every column the models declare encrypted)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from authmodels.cli import main
from authmodels.config import format_key_ring
from authmodels.security.encryption import FieldCipher
from authmodels.services import FlowSettings, mfa, oauth, reencryption
from authmodels.testing.factories import UserFactory
from authmodels.testing.plugin import TestKeys
from tests.services.helpers import count
from tests.services.test_oauth import link


def test_every_column_the_database_checks_as_an_envelope_is_reencrypted(
    authmodels_session: Session,
) -> None:
    """The columns come from the models' ``field_envelope()`` checks; the catalog at head agrees."""
    checked = authmodels_session.execute(
        text(
            "SELECT conrelid::regclass::text, a.attname FROM pg_constraint AS c "
            "JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
            "WHERE c.connamespace = 'auth'::regnamespace AND c.contype = 'c' "
            "AND pg_get_constraintdef(c.oid) LIKE '%is_field_envelope(%'"
        )
    ).all()
    listed = {
        (f"auth.{table}", column)
        for table, columns in reencryption.ENCRYPTED_COLUMNS
        for column in columns
    }
    assert listed == set(checked)
    assert ("auth.two_factor_auth", "secret_encrypted") in listed


def _key_ids(db: Session) -> list[str]:
    return sorted(
        db.execute(
            text(
                """
                SELECT convert_from(substring(v FROM 3 FOR get_byte(v, 1)), 'SQL_ASCII')
                  FROM (SELECT access_token_encrypted AS v FROM auth.oauth_connections
                        UNION ALL SELECT refresh_token_encrypted FROM auth.oauth_connections
                        UNION ALL SELECT secret_encrypted FROM auth.two_factor_auth) AS e
                 WHERE v IS NOT NULL
                """
            )
        ).scalars()
    )


@pytest.fixture
def populated(
    fresh: Callable[..., sessionmaker[Session]], authmodels_keys: TestKeys
) -> tuple[sessionmaker[Session], int]:
    """Five connections (two envelopes each) and one TOTP seed under the run's key."""
    factory = fresh()
    with factory() as db:
        users = UserFactory(db).batch(5)
        for i, user in enumerate(users):
            link(db, user, f"g-{i}", access_token=f"access-{i}", refresh_token=f"refresh-{i}")
        mfa.enroll(db, users[0], issuer="authmodels")
        db.commit()
    return factory, 11


def test_reencrypt_moves_every_envelope_to_the_new_key_and_is_idempotent(
    populated: tuple[sessionmaker[Session], int],
    authmodels_keys: TestKeys,
    authmodels_fresh_database: URL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    factory, values = populated
    old = dict(authmodels_keys.encryption_keys.keys)
    new_key = secrets.token_bytes(32)
    monkeypatch.setenv("AUTHMODELS_ENCRYPTION_KEYS", format_key_ring({**old, "rotated": new_key}))
    monkeypatch.setenv("AUTHMODELS_ENCRYPTION_KEY_CURRENT", "rotated")
    url = authmodels_fresh_database.render_as_string(hide_password=False)

    assert main(["keys", "reencrypt", "--url", url, "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{values} value(s) moved to key 'rotated'" in out

    with factory() as db:
        assert set(_key_ids(db)) == {"rotated"}
        # readable with the new key alone
        only_new = FlowSettings(
            hash_keys=authmodels_keys.hash_keys,
            encryption_keys=authmodels_keys.encryption_keys.__class__(
                keys={"rotated": new_key}, current="rotated"
            ),
        )
        db.info["authmodels.services.settings"] = only_new
        connection_id = db.execute(
            text("SELECT id FROM auth.oauth_connections WHERE provider_user_id = 'g-3'")
        ).scalar_one()
        assert oauth.read_tokens(db, connection_id).refresh_token == "refresh-3"
        assert count(db, "oauth_connections", "updated_at > created_at") == 0  # not a change

    assert main(["keys", "reencrypt", "--url", url]) == 0
    assert "0 value(s)" in capsys.readouterr().out


def test_interrupted_reencrypt_keeps_its_batches_and_the_next_run_finishes(
    populated: tuple[sessionmaker[Session], int], authmodels_keys: TestKeys
) -> None:
    factory, values = populated
    ring = {**authmodels_keys.encryption_keys.keys, "rotated": secrets.token_bytes(32)}
    cipher = FieldCipher(ring, current="rotated")

    class Crashing(FieldCipher):
        calls = 0

        def reencrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
            Crashing.calls += 1
            if Crashing.calls == 4:
                raise KeyboardInterrupt
            return super().reencrypt(envelope, aad=aad)

    with factory() as db, pytest.raises(KeyboardInterrupt):
        reencryption.reencrypt(db, batch_size=2, cipher=Crashing(ring, current="rotated"))
    with factory() as db:
        assert _key_ids(db).count("rotated") == 2  # the first batch of two is committed

    with factory() as db:
        report = reencryption.reencrypt(db, batch_size=2, cipher=cipher)
    assert report.total == values - 2
    with factory() as db:
        assert set(_key_ids(db)) == {"rotated"}
        assert reencryption.reencrypt(db, cipher=cipher).total == 0


def test_reencrypt_without_the_old_key_stops_with_a_clear_error(
    populated: tuple[sessionmaker[Session], int],
) -> None:
    factory, _ = populated
    from authmodels.errors import UnknownKeyError

    with factory() as db, pytest.raises(UnknownKeyError, match="add the key back"):
        reencryption.reencrypt(db, cipher=FieldCipher({"rotated": secrets.token_bytes(32)}))
