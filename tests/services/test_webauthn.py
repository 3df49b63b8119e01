"""WebAuthn: real registration and assertion responses from a software authenticator (an ES256
key made here), verified by py_webauthn, stored and recorded; signature-counter regressions
recorded as security events and handled by the configured policy."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from webauthn import verify_authentication_response, verify_registration_response

from authmodels.errors import (
    InvalidWebAuthnResponse,
    SignCountRegressionError,
    WebAuthnCredentialExists,
    WebAuthnCredentialNotFound,
)
from authmodels.models import User
from authmodels.services import FlowSettings, use_settings
from authmodels.services import webauthn as service
from tests.services.helpers import count, snapshot

RP_ID, ORIGIN = "example.test", "https://example.test"
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
TABLES = ("webauthn_credentials", "security_events", "audit_logs")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SoftwareAuthenticator:
    """An ES256 authenticator in memory: makes "none"-attested registrations and signed
    assertions exactly as a browser would hand them to the server."""

    synced: bool = False
    counter: int = 0
    aaguid: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def _flags(self, *, uv: bool) -> int:
        return UP | (UV if uv else 0) | ((BE | BS) if self.synced else 0)

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, kind: str, challenge: bytes) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": b64url(challenge), "origin": ORIGIN, "crossOrigin": False}
        ).encode()

    def register(self, challenge: bytes, *, uv: bool = True) -> dict[str, Any]:
        auth_data = (
            hashlib.sha256(RP_ID.encode()).digest()
            + bytes([self._flags(uv=uv) | AT])
            + struct.pack(">I", self.counter)
            + self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "response": {
                "clientDataJSON": b64url(self._client_data("webauthn.create", challenge)),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "type": "public-key",
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def assert_(
        self, challenge: bytes, *, uv: bool = True, count: int | None = None
    ) -> dict[str, Any]:
        if count is None:
            if not self.synced:
                self.counter += 1
            count = self.counter
        auth_data = (
            hashlib.sha256(RP_ID.encode()).digest()
            + bytes([self._flags(uv=uv)])
            + struct.pack(">I", count)
        )
        client_data = self._client_data("webauthn.get", challenge)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None,
            },
            "type": "public-key",
            "clientExtensionResults": {},
        }


def register(
    db: Session, user: User, authenticator: SoftwareAuthenticator
) -> service.WebAuthnCredential:
    challenge = secrets.token_bytes(32)
    response = authenticator.register(challenge)
    verified = verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    return service.store_registration(
        db, user, verified, transports=response["response"]["transports"], device_name="laptop"
    )


def sign_in(
    db: Session, authenticator: SoftwareAuthenticator, **kwargs: Any
) -> service.WebAuthnCredential:
    challenge = secrets.token_bytes(32)
    return service.verify_authentication(
        db,
        authenticator.assert_(challenge, **kwargs),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )


def regression_events(db: Session) -> list[dict[str, Any]]:
    return list(
        db.execute(
            text(
                "SELECT details FROM auth.security_events "
                "WHERE event_type = :t AND severity = 'high'"
            ),
            {"t": service.SIGN_COUNT_REGRESSION_EVENT},
        ).scalars()
    )


def test_a_real_registration_is_stored(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    credential = register(db, user, authenticator)

    assert credential.credential_id == authenticator.credential_id
    assert credential.aaguid == uuid.UUID(bytes=authenticator.aaguid)
    assert credential.transports == ["hybrid", "internal"] and credential.device_name == "laptop"
    assert credential.sign_count == 0 and credential.last_uv_result is True
    assert (credential.backup_eligible, credential.backup_state) == (False, False)
    assert cbor2.loads(credential.cose_public_key)[3] == -7


def test_a_synced_passkey_is_stored_with_its_backup_flags(db: Session, user: User) -> None:
    credential = register(db, user, SoftwareAuthenticator(synced=True))
    assert (credential.backup_eligible, credential.backup_state) == (True, True)


def test_a_credential_registered_twice_is_refused(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    register(db, user, authenticator)
    before = snapshot(db, *TABLES)
    with pytest.raises(WebAuthnCredentialExists):
        register(db, user, authenticator)
    assert snapshot(db, *TABLES) == before


def test_a_real_assertion_records_counter_uv_and_last_use(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    register(db, user, authenticator)

    first = sign_in(db, authenticator, uv=False)
    assert (first.sign_count, first.last_uv_result) == (1, False) and first.last_used_at is not None
    second = sign_in(db, authenticator)
    assert (second.sign_count, second.last_uv_result) == (2, True)
    assert regression_events(db) == []


def test_zero_counters_of_a_synced_passkey_are_accepted(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator(synced=True)
    register(db, user, authenticator)
    for _ in range(3):
        assert sign_in(db, authenticator).sign_count == 0
    assert regression_events(db) == []


def test_a_regressed_counter_is_refused_and_the_event_survives_a_rollback(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()
    authenticator = SoftwareAuthenticator()
    with factory() as db:
        credential = register(db, fresh_user, authenticator)
        sign_in(db, authenticator)
        sign_in(db, authenticator)  # stored counter: 2
        db.commit()
        before = snapshot(db, "webauthn_credentials")

    with factory() as db:
        with pytest.raises(SignCountRegressionError, match="may have been cloned"):
            sign_in(db, authenticator, count=2)  # a clone replaying the same counter
        db.rollback()

    with factory() as db:
        assert snapshot(db, "webauthn_credentials") == before
        assert regression_events(db) == [
            {"credential": str(credential.id), "stored_sign_count": 2, "presented_sign_count": 2,
             "policy": "reject"}
        ]  # fmt: skip


def test_a_regressed_counter_is_accepted_and_flagged_under_the_flag_policy(
    db: Session, user: User, settings: FlowSettings
) -> None:
    use_settings(db, settings.replace(webauthn_sign_count_policy="flag"))
    authenticator = SoftwareAuthenticator()
    register(db, user, authenticator)
    for _ in range(5):
        sign_in(db, authenticator)

    accepted = sign_in(db, authenticator, count=3)

    assert accepted.sign_count == 5  # never lowered
    assert [e["presented_sign_count"] for e in regression_events(db)] == [3]


def test_a_counter_dropping_to_zero_is_a_regression(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    register(db, user, authenticator)
    sign_in(db, authenticator)
    with pytest.raises(SignCountRegressionError):
        sign_in(db, authenticator, count=0)


def test_unknown_or_revoked_credentials_are_refused(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    with pytest.raises(WebAuthnCredentialNotFound):
        sign_in(db, authenticator)
    credential = register(db, user, authenticator)
    db.execute(
        text("UPDATE auth.webauthn_credentials SET revoked_at = now() WHERE id = :id"),
        {"id": credential.id},
    )
    before = snapshot(db, *TABLES)
    with pytest.raises(WebAuthnCredentialNotFound):
        sign_in(db, authenticator)
    assert snapshot(db, *TABLES) == before


def test_an_assertion_signed_by_another_key_is_an_invalid_response(db: Session, user: User) -> None:
    authenticator = SoftwareAuthenticator()
    register(db, user, authenticator)
    impostor = SoftwareAuthenticator(credential_id=authenticator.credential_id)
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidWebAuthnResponse, match="Could not verify authentication signature"):
        sign_in(db, impostor)
    assert snapshot(db, *TABLES) == before


def test_record_authentication_takes_a_result_verified_by_the_caller(
    db: Session, user: User
) -> None:
    authenticator = SoftwareAuthenticator()
    credential = register(db, user, authenticator)
    challenge = secrets.token_bytes(32)
    verified = verify_authentication_response(
        credential=authenticator.assert_(challenge),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=credential.cose_public_key,
        credential_current_sign_count=0,
    )
    assert service.record_authentication(db, verified, user=user).sign_count == 1
    assert count(db, "webauthn_credentials", "last_used_at IS NOT NULL") == 1


def test_one_assertion_presented_twice_at_once_passes_once(
    fresh: Callable[..., sessionmaker[Session]], fresh_user: User
) -> None:
    factory = fresh()
    authenticator = SoftwareAuthenticator()
    with factory() as db:
        register(db, fresh_user, authenticator)
        db.commit()
    challenge = secrets.token_bytes(32)
    response = authenticator.assert_(challenge)  # counter 1, replayed by a second request
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def present(index: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                outcomes[index] = service.verify_authentication(
                    db,
                    response,
                    expected_challenge=challenge,
                    expected_rp_id=RP_ID,
                    expected_origin=ORIGIN,
                )
                db.commit()
            except SignCountRegressionError as exc:
                db.rollback()
                outcomes[index] = exc

    workers = [threading.Thread(target=present, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert sum(isinstance(o, SignCountRegressionError) for o in outcomes) == 1, outcomes
    with factory() as db:
        assert db.execute(text("SELECT sign_count FROM auth.webauthn_credentials")).scalar() == 1
        assert len(regression_events(db)) == 1
