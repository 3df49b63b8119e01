"""E2EE helpers against RFC 7748 (X25519) and RFC 5869 (HKDF) vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from authmodels.errors import (
    DecryptionError,
    InvalidKeyError,
    InvalidPublicKeyError,
    MalformedEnvelopeError,
)
from authmodels.security import e2ee

# RFC 7748 section 6.1
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
CONVERSATION = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> tuple[bytes, bytes]:
    """RFC 5869 written out with hmac (extract, then expand), independent of cryptography."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return prk, okm[:length]


def test_rfc7748_section_6_1() -> None:
    assert e2ee.public_key_from_private(ALICE_PRIVATE) == ALICE_PUBLIC
    assert e2ee.public_key_from_private(BOB_PRIVATE) == BOB_PUBLIC
    assert e2ee.shared_secret(ALICE_PRIVATE, BOB_PUBLIC) == SHARED
    assert e2ee.shared_secret(BOB_PRIVATE, ALICE_PUBLIC) == SHARED


def test_rfc5869_a1_vector() -> None:
    """RFC 5869 A.1, both through cryptography's HKDF and through the hmac-only reference."""
    ikm = bytes([0x0B] * 22)
    salt = bytes(range(13))
    info = bytes(range(0xF0, 0xFA))
    okm = bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert HKDF(algorithm=hashes.SHA256(), length=42, salt=salt, info=info).derive(ikm) == okm
    prk, derived = _hkdf_sha256(ikm, salt, info, 42)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    assert derived == okm


def test_derive_message_key_is_hkdf_with_uuid_salt_and_documented_info() -> None:
    """The reference HKDF (checked against RFC 5869 above) with salt = the conversation's 16
    UUID bytes and info = b"authmodels/e2ee/message-key/v1" gives our message key."""
    _, expected = _hkdf_sha256(SHARED, CONVERSATION.bytes, b"authmodels/e2ee/message-key/v1", 32)
    assert e2ee.derive_message_key(SHARED, conversation_id=CONVERSATION) == expected
    assert e2ee.derive_message_key(SHARED, conversation_id=str(CONVERSATION)) == expected
    other = e2ee.derive_message_key(SHARED, conversation_id=uuid.uuid4())
    assert other != expected
    assert e2ee.derive_message_key(SHARED, conversation_id=CONVERSATION, info=b"x") != expected
    with pytest.raises(ValueError, match="UUID"):
        e2ee.derive_message_key(SHARED, conversation_id="not-a-uuid")
    with pytest.raises(InvalidKeyError):
        e2ee.derive_message_key(SHARED[:16], conversation_id=CONVERSATION)


def test_audit_hash_is_the_documented_hmac() -> None:
    expected = hmac.new(
        SHARED, b"authmodels/e2ee/audit/v1" + CONVERSATION.bytes, hashlib.sha256
    ).digest()
    assert e2ee.shared_secret_audit_hash(SHARED, CONVERSATION) == expected
    assert len(expected) == 32
    assert e2ee.shared_secret_audit_hash(SHARED, uuid.uuid4()) != expected


def test_full_exchange_between_two_parties() -> None:
    a_private, a_public = e2ee.generate_key_pair()
    b_private, b_public = e2ee.generate_key_pair()
    assert len(a_private) == len(a_public) == 32
    secret_a = e2ee.shared_secret(a_private, e2ee.validate_public_key(b_public))
    secret_b = e2ee.shared_secret(b_private, e2ee.validate_public_key(a_public))
    assert secret_a == secret_b
    key_a = e2ee.derive_message_key(secret_a, conversation_id=CONVERSATION)
    key_b = e2ee.derive_message_key(secret_b, conversation_id=CONVERSATION)
    ciphertext, nonce = e2ee.encrypt_message(key_a, b"hello", aad=b"msg-1")
    assert len(nonce) == 12 and len(ciphertext) == 5 + 16
    assert e2ee.decrypt_message(key_b, ciphertext, nonce, aad=b"msg-1") == b"hello"


def test_decrypt_failures() -> None:
    key = os.urandom(32)
    ciphertext, nonce = e2ee.encrypt_message(key, b"hello", aad=b"a")
    with pytest.raises(DecryptionError):
        e2ee.decrypt_message(key, ciphertext, nonce, aad=b"b")
    with pytest.raises(DecryptionError):
        e2ee.decrypt_message(os.urandom(32), ciphertext, nonce, aad=b"a")
    with pytest.raises(DecryptionError):
        e2ee.decrypt_message(key, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), nonce, aad=b"a")
    with pytest.raises(MalformedEnvelopeError):
        e2ee.decrypt_message(key, ciphertext, nonce[:8], aad=b"a")
    with pytest.raises(InvalidKeyError):
        e2ee.encrypt_message(key[:16], b"x")


def test_validate_public_key_forms() -> None:
    assert e2ee.validate_public_key(BOB_PUBLIC) == BOB_PUBLIC
    assert e2ee.validate_public_key(base64.b64encode(BOB_PUBLIC).decode()) == BOB_PUBLIC
    unpadded = base64.urlsafe_b64encode(BOB_PUBLIC).rstrip(b"=")
    assert e2ee.validate_public_key(unpadded.decode()) == BOB_PUBLIC
    assert e2ee.validate_public_key(unpadded) == BOB_PUBLIC
    for bad in (b"\x01" * 31, "", "!!!!", base64.b64encode(b"x" * 33).decode(), 42):
        with pytest.raises(InvalidPublicKeyError):
            e2ee.validate_public_key(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "low_order",
    [
        bytes(32),  # 0
        (1).to_bytes(32, "little"),  # 1
        # a point of order 8
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_low_order_points_are_refused(low_order: bytes) -> None:
    with pytest.raises(InvalidPublicKeyError, match="low-order"):
        e2ee.validate_public_key(low_order)
    with pytest.raises(InvalidPublicKeyError, match="low-order"):
        e2ee.shared_secret(ALICE_PRIVATE, low_order)


@given(plaintext=st.binary(max_size=256), aad=st.binary(max_size=32))
def test_message_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    key = e2ee.derive_message_key(SHARED, conversation_id=CONVERSATION)
    ciphertext, nonce = e2ee.encrypt_message(key, plaintext, aad=aad)
    assert e2ee.decrypt_message(key, ciphertext, nonce, aad=aad) == plaintext
