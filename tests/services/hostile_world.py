"""Valid rows and values for the hostile-input tests: a :class:`World` of one test's session
(users, a DPoP-bound session, tokens, device requests, keys...), made on first use."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import timedelta
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.orm import Session
from webauthn import verify_registration_response
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers.structs import (
    AttestationFormat,
    CredentialDeviceType,
    PublicKeyCredentialType,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from authmodels.models import User
from authmodels.security import e2ee as e2ee_keys
from authmodels.security import totp
from authmodels.security.dpop import sign_proof, verify_proof
from authmodels.testing.factories import UserFactory
from tests.services.test_webauthn import ORIGIN, RP_ID, SoftwareAuthenticator

URL = "https://api.example.com/resource"
#: The challenge of :meth:`World.authenticator`'s assertions.
CHALLENGE = b"a-challenge-the-server-issued-32b"
__all__ = ["CHALLENGE", "ORIGIN", "RP_ID", "URL", "World", "registration"]


def registration(**changes: Any) -> VerifiedRegistration:
    values: dict[str, Any] = {
        "credential_id": secrets.token_bytes(32),
        "credential_public_key": b"\xa5\x01\x02\x03&",
        "sign_count": 0,
        "aaguid": str(uuid.uuid4()),
        "fmt": AttestationFormat.NONE,
        "credential_type": PublicKeyCredentialType.PUBLIC_KEY,
        "user_verified": True,
        "attestation_object": b"",
        "credential_device_type": CredentialDeviceType.SINGLE_DEVICE,
        "credential_backed_up": False,
    }
    return VerifiedRegistration(**{**values, **changes})


class World:
    """Valid rows and raw values for the calls, made once per test in its session."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.factory = UserFactory(db)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.counter = 0

    def prepare(self) -> None:
        """Make every row now and commit it (into the test's outer transaction), so that a
        measured call finds them and writes only what it writes itself."""
        for name in (
            "session", "bound_access_token", "access_token", "user_step_up", "admin_step_up",
            "pending_user_code", "approved_device_code", "api_key", "connection_id",
            "conversation_id", "totp_enrolled", "totp_pending", "authenticator",
        ):  # fmt: skip
            getattr(self, name)
        self.db.commit()

    def proof(self, **claims: Any) -> str:
        return sign_proof(self.key, **{"htm": "GET", "htu": URL, **claims})

    @cached_property
    def jkt(self) -> str:
        return verify_proof(self.proof(), htm="GET", htu=URL).jkt

    @cached_property
    def user(self) -> User:
        return self.factory()

    @cached_property
    def peer(self) -> User:
        return self.factory()

    @cached_property
    def admin(self) -> User:
        return self.factory(role="admin")

    @cached_property
    def session(self) -> Any:
        from authmodels.services import sessions

        return sessions.create_session(
            self.db, self.user, ttl=timedelta(hours=1), dpop_jkt=self.jkt
        )

    @cached_property
    def bound_access_token(self) -> str:
        from authmodels.services import tokens

        return tokens.issue_access_token(
            self.db, self.user, dpop_jkt=self.jkt, session_id=self.session.session.id
        ).token

    @cached_property
    def access_token(self) -> str:
        from authmodels.services import tokens

        return tokens.issue_access_token(self.db, self.user).token

    def step_up_token(self, user: User) -> str:
        from authmodels.services import step_up

        return step_up.issue(self.db, user, ttl=timedelta(minutes=10))

    @cached_property
    def user_step_up(self) -> str:
        return self.step_up_token(self.user)

    @cached_property
    def admin_step_up(self) -> str:
        return self.step_up_token(self.admin)

    @cached_property
    def pending_user_code(self) -> str:
        from authmodels.services import device_flow

        return device_flow.start(self.db, client_id="tv", scope="read").user_code

    @cached_property
    def approved_device_code(self) -> str:
        from authmodels.services import device_flow

        started = device_flow.start(self.db, client_id="tv", scope="read")
        device_flow.approve(self.db, started.user_code, self.user)
        return started.device_code

    @cached_property
    def api_key(self) -> Any:
        from authmodels.services import api_keys

        return api_keys.create(self.db, self.user, name="ci", scopes=["read"])

    @cached_property
    def connection_id(self) -> uuid.UUID:
        from authmodels.services import oauth

        connection = oauth.store_tokens(
            self.db, self.user, provider="github", provider_user_id="42", access_token="t",
            refresh_token="r",
        )  # fmt: skip
        return connection.id

    @cached_property
    def conversation_id(self) -> uuid.UUID:
        conversation: uuid.UUID = self.db.execute(
            text("INSERT INTO auth.conversations (created_by) VALUES (:u) RETURNING id"),
            {"u": self.user.id},
        ).scalar_one()
        for member in (self.user, self.peer):
            self.db.execute(
                text(
                    "INSERT INTO auth.conversation_participants (conversation_id, user_id) "
                    "VALUES (:c, :u)"
                ),
                {"c": conversation, "u": member.id},
            )
        return conversation

    @cached_property
    def key_pair(self) -> tuple[bytes, bytes]:
        return e2ee_keys.generate_key_pair()

    @cached_property
    def totp_enrolled(self) -> tuple[User, bytes, list[str]]:
        """A user with a confirmed TOTP enrolment: (user, seed, backup codes)."""
        from authmodels.services import mfa

        user = self.factory()
        enrollment = mfa.enroll(self.db, user, issuer="Shop")
        now = int(time.time())
        codes = mfa.confirm(self.db, user, totp.code_at(enrollment.secret, now), now=now)
        return user, enrollment.secret, codes

    @cached_property
    def totp_pending(self) -> tuple[User, bytes]:
        from authmodels.services import mfa

        user = self.factory()
        return user, mfa.enroll(self.db, user, issuer="Shop").secret

    @cached_property
    def authenticator(self) -> SoftwareAuthenticator:
        from authmodels.services import webauthn

        authenticator = SoftwareAuthenticator()
        challenge = secrets.token_bytes(32)
        verified = verify_registration_response(
            credential=authenticator.register(challenge),
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        webauthn.store_registration(self.db, self.user, verified)
        return authenticator

    # --- the account lifecycle: a fresh value per call where a call uses it up ---------------

    @staticmethod
    def new_address() -> str:
        return f"new-{uuid.uuid4().hex[:12]}@example.com"

    def reset_token(self) -> str:
        from authmodels.services import password_reset

        token = password_reset.request(self.db, self.user.email).token
        assert token is not None
        return token

    def verification_token(self) -> str:
        from authmodels.services import email_verification

        return email_verification.issue(self.db, self.user.id, self.new_address()).token

    def magic_link(self) -> str:
        from authmodels.services import magic_links

        token = magic_links.request(self.db, self.user.email).token
        assert token is not None
        return token

    def backup_code(self) -> str:
        """A new unused backup code of :attr:`recovery_user`."""
        from authmodels.services.settings import settings_for

        code = totp.new_backup_codes(1)[0]
        self.db.execute(
            text("INSERT INTO auth.two_factor_backup_codes (user_id, code_hash) VALUES (:u, :h)"),
            {
                "u": self.recovery_user.id,
                "h": settings_for(self.db).hasher.digest(totp.normalize_backup_code(code)),
            },
        )
        return code

    @cached_property
    def recovery_user(self) -> User:
        """A user with a confirmed TOTP enrolment (backup codes belong to one)."""
        from authmodels.services import mfa

        user = self.factory()
        secret = mfa.enroll(self.db, user, issuer="Shop").secret
        now = int(time.time())
        mfa.confirm(self.db, user, totp.code_at(secret, now), now=now)
        return user

    def recovery_token(self) -> str:
        from authmodels.services import recovery

        return recovery.start_with_code(self.db, self.recovery_user.email, self.backup_code())

    def pending_delivery(self) -> uuid.UUID:
        from authmodels.services import delivery

        return delivery.log_email(self.db, "ada@example.com", template="otp").id

    @cached_property
    def sent_message_id(self) -> str:
        from authmodels.services import delivery

        sent = delivery.log_email(self.db, "ada@example.com", template="otp")
        delivery.mark_sent(self.db, sent.id, provider_message_id="world-message")
        return "world-message"

    @cached_property
    def device(self) -> Any:
        from authmodels.services import devices

        return devices.record_login(self.db, self.user, "world-fingerprint").device

    def new_device(self) -> uuid.UUID:
        from authmodels.services import devices

        return devices.record_login(self.db, self.user, uuid.uuid4().hex).device.id

    def device_step_up(self) -> str:
        from authmodels.services import step_up

        return step_up.issue(self.db, self.user, ttl=timedelta(minutes=5), purpose="device.trust")

    @cached_property
    def trust_token(self) -> str:
        from authmodels.services import devices

        return devices.trust(
            self.db, self.user, self.device, step_up_token=self.device_step_up()
        ).token

    def assertion(self) -> VerifiedAuthentication:
        self.counter += 1
        return VerifiedAuthentication(
            credential_id=self.authenticator.credential_id,
            new_sign_count=self.authenticator.counter + self.counter,
            credential_device_type=CredentialDeviceType.SINGLE_DEVICE,
            credential_backed_up=False,
            user_verified=True,
        )
