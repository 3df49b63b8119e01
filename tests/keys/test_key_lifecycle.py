"""A whole life of provider keys, for the ``file`` and the ``pkcs11`` (SoftHSM2) providers:
data keys made and wrapped by ``authmodels keys``; sign-up, verification, login, a session and a
TOTP enrolment through the flows with them; a restart (another process, which unwraps again)
that reads it all; a data-key rotation with ``keys reencrypt``; a KEK rotation that rewraps the
data keys without touching a row and destroys the old KEK; a last restart. Then every log line,
every line the commands printed and every representation is searched for each key's bytes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker

from authmodels import config
from authmodels.security import totp
from authmodels.security.keys import forget_loaded_keys, load_key_rings
from authmodels.services import FlowSettings, email_verification, mfa, passwords, sessions, signup
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.factories import TEST_PASSWORD_HASHER
from authmodels.testing.softhsm import SoftHsm
from tests.keys.conftest import Cli, Provider, assert_no_key_material

EMAIL, PASSWORD = "ada@example.test", "a passphrase long enough"
IP, UA = "198.51.100.7", "Lifecycle/2.0"
RESTART = Path(__file__).with_name("restart_check.py")

# what the database keeps of the account, its session and its TOTP seed: a KEK rotation must
# leave every byte of it as it was
SNAPSHOT = """
SELECT md5(string_agg(v, ',' ORDER BY v)) FROM (
  SELECT encode(token_hash, 'hex') || encode(coalesce(ip_hash, ''), 'hex') AS v FROM auth.sessions
  UNION ALL SELECT encode(secret_encrypted, 'hex') FROM auth.two_factor_auth
  UNION ALL SELECT encode(code_hash, 'hex') FROM auth.two_factor_backup_codes
  UNION ALL SELECT password_hash || xmin::text FROM auth.users
) AS stored
"""


def _key_ids(engine: Engine) -> tuple[str, str]:
    """The key ids of the newest session's digest and of the TOTP seed's envelope."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT convert_from(substring(s.token_hash FROM 3 FOR get_byte(s.token_hash, 1)),"
                " 'SQL_ASCII') AS digest_kid, convert_from(substring(t.secret_encrypted FROM 3 FOR"
                " get_byte(t.secret_encrypted, 1)), 'SQL_ASCII') AS envelope_kid"
                " FROM auth.sessions s, auth.two_factor_auth t ORDER BY s.created_at DESC LIMIT 1"
            )
        ).one()
    return row.digest_kid, row.envelope_kid


def _snapshot(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(SNAPSHOT)).scalar_one())


@pytest.mark.parametrize("provider", ["file_provider", "hsm_provider"])
def test_provider_keys_serve_the_flows_across_restarts_and_both_rotations_without_a_leak(
    provider: str,
    request: pytest.FixtureRequest,
    cli: Cli,
    authmodels_fresh_engine: Engine,
    authmodels_fresh_database: URL,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chosen: Provider = request.getfixturevalue(provider)
    caplog.set_level(logging.DEBUG)
    engine = authmodels_fresh_engine
    url = authmodels_fresh_database.render_as_string(hide_password=False)
    outputs: list[str] = []
    data_keys: dict[str, bytes] = {}

    def remember_keys() -> None:
        rings = load_key_rings(chosen.environ)
        for name in ("hash", "encryption", "privacy"):
            ring = rings.ring(name)
            assert ring is not None
            data_keys.update({f"{name}/{kid}": key for kid, key in ring.keys.items()})

    def restart(session_token: str, at: int) -> dict[str, object]:
        given = {"url": url, "session_token": session_token, "email": EMAIL,
                 "password": PASSWORD, "ip": IP, "ua": UA, "totp_at": str(at),
                 "totp_code": totp.code_at(seed, at)}  # fmt: skip
        ran = subprocess.run(
            [sys.executable, str(RESTART), json.dumps(given)],
            env=dict(os.environ), capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        outputs.extend([ran.stdout, ran.stderr])
        assert ran.returncode == 0, ran.stderr[-3000:]
        seen: dict[str, object] = json.loads(ran.stdout)
        assert seen["user"] == seen["session_user"] == str(user_id)
        assert "unwrapped" in ran.stderr  # the restarted process unwrapped the rings itself
        return seen

    # --- the KEK and the data keys ---------------------------------------------------------
    first_kek = cli.ok("-v", "keys", "kek", "create").split("'")[1]
    for ring, kid in (("hash", "h1"), ("encryption", "e1"), ("privacy", "p1")):
        assert "it is the ring's current key" in cli.ok("-v", "keys", "create", ring, "--id", kid)
    listed = cli.ok("-v", "keys", "list")
    for kid in ("h1", "e1", "p1"):
        assert f" {kid} " in listed and first_kek in listed
    remember_keys()

    # --- the flows, with the provider's keys ----------------------------------------------
    settings = FlowSettings.from_env().replace(password_hasher=TEST_PASSWORD_HASHER)
    assert (settings.hash_keys.current, settings.cipher.current) == ("h1", "e1")
    factory = sessionmaker(engine, expire_on_commit=False, info={SETTINGS_KEY: settings})
    t0 = int(time.time())
    with factory() as db:
        signed_up = signup.register(db, EMAIL, PASSWORD, ip=IP, user_agent=UA)
        assert signed_up.user is not None and signed_up.verification is not None
        user_id = signed_up.user.id
        db.commit()
    with factory() as db:
        email_verification.verify(db, signed_up.verification.token, ip=IP, user_agent=UA)
        db.commit()
    with factory() as db:
        passwords.authenticate(db, EMAIL, PASSWORD, ip=IP, user_agent=UA)
        issued = sessions.create_session(db, user_id, ttl=timedelta(hours=1), ip=IP, user_agent=UA)
        enrollment = mfa.enroll(db, user_id, issuer="authmodels", account_name=EMAIL)
        seed = enrollment.secret
        mfa.confirm(db, user_id, totp.code_at(seed, t0 - 30), now=t0)
        db.commit()
    assert _key_ids(engine) == ("h1", "e1")

    # --- a restart reads it all ------------------------------------------------------------
    seen = restart(issued.session_token, t0 + 30)
    assert seen["current"] == {"hash": "h1", "encryption": "e1"}

    # --- data-key rotation: staged, current, stored values moved, old key retired ----------
    for ring, kid in (("hash", "h2"), ("encryption", "e2")):
        assert "staged" in cli.ok("-v", "keys", "create", ring, "--id", kid)
        cli.ok("-v", "keys", "rotate", ring)
    remember_keys()
    moved = cli.ok("-v", "keys", "reencrypt", "--url", url, "--no-progress")
    assert "auth.two_factor_auth.secret_encrypted: 1 re-encrypted" in moved
    assert "moved to key 'e2' from e1" in moved
    cli.ok("-v", "keys", "retire", "encryption", "e1")
    seen = restart(issued.session_token, t0 + 60)  # the h1 session still found; seed under e2
    assert seen["current"] == {"hash": "h2", "encryption": "e2"}
    forget_loaded_keys()
    rotated = FlowSettings.from_env().replace(password_hasher=TEST_PASSWORD_HASHER)
    with sessionmaker(engine, info={SETTINGS_KEY: rotated})() as db:
        sessions.create_session(db, user_id, ttl=timedelta(hours=1), ip=IP, user_agent=UA)
        db.commit()
    assert _key_ids(engine) == ("h2", "e2")

    # --- KEK rotation: rewrapped in the store, not a row changed, old KEK destroyed --------
    before = _snapshot(engine)
    store_before = chosen.store.read_text()
    new_kek = f"{first_kek}-2"
    cli.ok("-v", "keys", "kek", "create", "--id", new_kek)
    if chosen.environ[config.KEY_PROVIDER_VAR].startswith("pkcs11:"):
        uri = chosen.environ[config.KEY_PROVIDER_VAR]
        chosen.set(config.KEY_PROVIDER_VAR, uri.replace(f"object={first_kek}", f"object={new_kek}"))
    rewrapped = cli.ok("-v", "keys", "rewrap")
    assert f"4 data key(s) rewrapped under KEK '{new_kek}' from {first_kek} (4)" in rewrapped
    cli.ok("-v", "keys", "kek", "retire", first_kek)
    assert _snapshot(engine) == before
    store_after = json.loads(chosen.store.read_text())
    assert {k["kek"] for ring in store_after["rings"].values() for k in ring["keys"]} == {new_kek}
    assert store_after != json.loads(store_before)
    forget_loaded_keys()
    remember_keys()
    seen = restart(issued.session_token, t0 + 90)
    assert seen["current"] == {"hash": "h2", "encryption": "e2"}

    # --- nothing printed, logged or shown holds a key --------------------------------------
    assert set(data_keys) == {"hash/h1", "hash/h2", "encryption/e1", "encryption/e2",
                              "privacy/p1"}  # fmt: skip
    secrets_ = list(data_keys.values())
    if provider == "file_provider":  # the KEKs themselves are bytes this process could read
        kek_file = Path(chosen.environ[config.KEY_PROVIDER_VAR].removeprefix("file:"))
        secrets_ += [kek_file.read_bytes()]
    texts = [caplog.text, *cli.printed, *outputs, repr(settings), repr(rotated)]
    assert "unwrapped" in caplog.text and "rewrapped 4 data key(s)" in caplog.text
    assert assert_no_key_material(secrets_, texts) > 2000
    if provider == "hsm_provider":
        pin = request.getfixturevalue("authmodels_softhsm")
        assert isinstance(pin, SoftHsm) and pin.pin not in "\n".join(texts)
