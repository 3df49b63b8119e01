"""AES-256-GCM field encryption: envelope layout, known answers, tamper and rotation behaviour."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from authmodels.errors import (
    DecryptionError,
    InvalidKeyError,
    MalformedEnvelopeError,
    UnknownKeyError,
)
from authmodels.security import FieldCipher, aad_for

K1 = os.urandom(32)
K2 = os.urandom(32)
CIPHER = FieldCipher({"k1": K1})
ROTATED = FieldCipher({"k1": K1, "k2": K2})
AAD = aad_for("users", "totp_secret", uuid.UUID(int=7))


def test_gcm_spec_test_case_16_directly() -> None:
    """AES-256-GCM test case 16 of the GCM specification (McGrew & Viega; NIST SP 800-38D).

    Proves that the primitive FieldCipher builds on (cryptography's AESGCM) produces the
    published ciphertext and tag for a 256-bit key, 96-bit IV and non-empty associated data.
    """
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = bytes.fromhex("cafebabefacedbaddecaf888")
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    ciphertext = bytes.fromhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    )
    tag = bytes.fromhex("76fc6ece0f4e1768cddf8853bb2d551b")
    assert AESGCM(key).encrypt(iv, plaintext, aad) == ciphertext + tag


def test_envelope_is_header_nonce_and_gcm_output_over_header_plus_aad() -> None:
    """With the nonce fixed through the private seam, the envelope is exactly
    ``01 || len(kid) || kid || nonce || AESGCM(key).encrypt(nonce, pt, header + aad)``.

    Together with the test above this pins our construction to the published GCM vector: the
    only thing FieldCipher adds is the header, which is both prepended and authenticated.
    """
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    nonce = bytes.fromhex("cafebabefacedbaddecaf888")
    cipher = FieldCipher({"nist": key})
    envelope = cipher._encrypt_with_nonce(b"secret", AAD, nonce)
    header = b"\x01\x04nist"
    assert envelope == header + nonce + AESGCM(key).encrypt(nonce, b"secret", header + AAD)
    assert cipher.decrypt(envelope, aad=AAD) == b"secret"
    # The header really is authenticated: the same ciphertext under a header-less AAD fails.
    with pytest.raises(InvalidTag):
        AESGCM(key).decrypt(nonce, envelope[len(header) + 12 :], AAD)


def test_round_trip_str_and_random_nonces() -> None:
    first = CIPHER.encrypt_str("JBSWY3DPEHPK3PXP", aad=AAD)
    second = CIPHER.encrypt_str("JBSWY3DPEHPK3PXP", aad=AAD)
    assert first != second  # fresh nonce each time
    assert CIPHER.decrypt_str(first, aad=AAD) == "JBSWY3DPEHPK3PXP"
    assert len(first) == 2 + 2 + 12 + len("JBSWY3DPEHPK3PXP") + 16
    with pytest.raises(DecryptionError, match="not UTF-8"):
        CIPHER.decrypt_str(CIPHER.encrypt(b"\xff\xfe", aad=AAD), aad=AAD)


def test_copied_to_another_row_or_column_does_not_decrypt() -> None:
    envelope = CIPHER.encrypt(b"seed", aad=aad_for("users", "totp_secret", 1))
    for other in (
        aad_for("users", "totp_secret", 2),
        aad_for("users", "recovery_secret", 1),
        aad_for("admins", "totp_secret", 1),
    ):
        with pytest.raises(DecryptionError):
            CIPHER.decrypt(envelope, aad=other)


def test_aad_for_encoding_is_unambiguous() -> None:
    assert aad_for("t", "c", 5) == b"authmodels/v1\x00t\x00c\x005"
    assert aad_for("ab", "c", 1) != aad_for("a", "bc", 1)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert aad_for("t", "c", u).endswith(b"12345678-1234-5678-1234-567812345678")
    with pytest.raises(ValueError, match="NUL"):
        aad_for("t\x00x", "c", 1)
    with pytest.raises(ValueError):
        aad_for("", "c", 1)


def test_rotation_reencrypt_and_unknown_key() -> None:
    old = CIPHER.encrypt(b"v", aad=AAD)
    assert ROTATED.current == "k2"
    assert ROTATED.decrypt(old, aad=AAD) == b"v"
    assert ROTATED.needs_reencrypt(old)
    fresh = ROTATED.reencrypt(old, aad=AAD)
    assert ROTATED.key_id_of(fresh) == "k2"
    assert not ROTATED.needs_reencrypt(fresh)
    assert ROTATED.decrypt(fresh, aad=AAD) == b"v"
    with pytest.raises(UnknownKeyError, match="k2"):
        CIPHER.decrypt(fresh, aad=AAD)


def test_wrong_key_under_the_same_key_id_fails() -> None:
    impostor = FieldCipher({"k1": K2})
    with pytest.raises(DecryptionError):
        impostor.decrypt(CIPHER.encrypt(b"v", aad=AAD), aad=AAD)


def test_malformed_envelopes() -> None:
    good = CIPHER.encrypt(b"", aad=AAD)
    assert len(good) == 2 + 2 + 12 + 16
    for bad in (b"", b"\x01", b"\x01\x02k1", good[:-1], b"\x02" + good[1:], b"\x00" + good[1:]):
        with pytest.raises(MalformedEnvelopeError):
            CIPHER.decrypt(bad, aad=AAD)


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(InvalidKeyError, match="exactly 32"):
        FieldCipher({"k": os.urandom(16)})
    with pytest.raises(InvalidKeyError, match="exactly 32"):
        FieldCipher({"k": os.urandom(64)})


@given(plaintext=st.binary(max_size=512), aad=st.binary(max_size=64))
def test_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    envelope = ROTATED.encrypt(plaintext, aad=aad)
    assert ROTATED.decrypt(envelope, aad=aad) == plaintext


@given(plaintext=st.binary(max_size=64), aad=st.binary(max_size=32), other=st.binary(max_size=32))
def test_wrong_aad_fails_property(plaintext: bytes, aad: bytes, other: bytes) -> None:
    if other == aad:
        return
    envelope = CIPHER.encrypt(plaintext, aad=aad)
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(envelope, aad=other)


@settings(max_examples=300)
@given(plaintext=st.binary(max_size=64), data=st.data())
def test_any_single_bit_flip_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    envelope = ROTATED.encrypt(plaintext, aad=AAD)
    bit = data.draw(st.integers(0, len(envelope) * 8 - 1))
    flipped = bytearray(envelope)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((DecryptionError, UnknownKeyError)):
        # MalformedEnvelopeError is a DecryptionError; no flip may return the plaintext.
        ROTATED.decrypt(bytes(flipped), aad=AAD)


@given(kid=st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True))
def test_needs_reencrypt_for_every_old_key_id(kid: str) -> None:
    if kid == "current":
        return
    old = FieldCipher({kid: K1}).encrypt(b"x", aad=b"")
    ring = FieldCipher({kid: K1, "current": K2})
    assert ring.needs_reencrypt(old)
    assert ring.key_id_of(old) == kid
    assert ring.decrypt(ring.reencrypt(old, aad=b""), aad=b"") == b"x"
