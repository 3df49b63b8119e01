"""End-to-end encryption helpers: X25519 key agreement, HKDF message keys, ChaCha20-Poly1305.

The server normally only stores public keys and an audit hash of each key exchange; these
functions are shared with clients (and tests) so both sides derive keys the same way.

Key derivation, specified here (seed 003 left it open)::

    shared  = X25519(private_key, peer_public_key)                      32 bytes
    key     = HKDF-SHA256(ikm=shared, salt=conversation_id.bytes,       32 bytes
                          info=b"authmodels/e2ee/message-key/v1")
    audit   = HMAC-SHA256(key=shared,                                   32 bytes
                          msg=b"authmodels/e2ee/audit/v1" + conversation_id.bytes)

where ``conversation_id.bytes`` is the 16-byte big-endian form of the conversation's UUID.
``audit`` is what the ``key_exchanges`` table stores: it lets both parties prove later which
secret they agreed on, without the server learning the secret or any message key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authmodels.errors import (
    DecryptionError,
    InvalidKeyError,
    InvalidPublicKeyError,
    MalformedEnvelopeError,
)

__all__ = [
    "AUDIT_LABEL",
    "MESSAGE_KEY_INFO",
    "decrypt_message",
    "derive_message_key",
    "encrypt_message",
    "generate_key_pair",
    "public_key_from_private",
    "shared_secret",
    "shared_secret_audit_hash",
    "validate_public_key",
]

#: Size of X25519 keys and shared secrets, and of message keys.
KEY_SIZE = 32
#: ChaCha20-Poly1305 nonce size (96 bits).
NONCE_SIZE = 12
#: Default HKDF ``info`` of :func:`derive_message_key`.
MESSAGE_KEY_INFO = b"authmodels/e2ee/message-key/v1"
#: Prefix of the HMAC message of :func:`shared_secret_audit_hash`.
AUDIT_LABEL = b"authmodels/e2ee/audit/v1"


def _conversation_uuid(conversation_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(conversation_id, uuid.UUID):
        return conversation_id
    try:
        return uuid.UUID(str(conversation_id))
    except ValueError:
        raise ValueError(f"conversation_id {str(conversation_id)[:40]!r} is not a UUID") from None


def _private_key(private_key: bytes) -> X25519PrivateKey:
    if len(private_key) != KEY_SIZE:
        raise InvalidKeyError(
            f"an X25519 private key is {KEY_SIZE} raw bytes, not {len(private_key)}"
        )
    return X25519PrivateKey.from_private_bytes(bytes(private_key))


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new X25519 key pair as raw bytes.

    Returns:
        ``(private_key, public_key)``, 32 bytes each.
    """
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def public_key_from_private(private_key: bytes) -> bytes:
    """The raw 32-byte X25519 public key of a raw private key.

    Raises:
        InvalidKeyError: ``private_key`` is not 32 bytes.
    """
    return _private_key(private_key).public_key().public_bytes_raw()


def _decode_public(data: bytes | str) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) == KEY_SIZE:
            return raw
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidPublicKeyError(
                f"an X25519 public key is {KEY_SIZE} raw bytes or their base64, "
                f"not {len(raw)} bytes"
            ) from None
    elif isinstance(data, str):
        text = data
    else:
        raise InvalidPublicKeyError(
            f"an X25519 public key is bytes or base64 text, not {type(data).__name__}"
        )
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPublicKeyError("the X25519 public key is not valid base64") from None
    if len(raw) != KEY_SIZE:
        raise InvalidPublicKeyError(
            f"the X25519 public key decodes to {len(raw)} bytes; it must be {KEY_SIZE}"
        )
    return raw


def validate_public_key(data: bytes | str) -> bytes:
    """Check a peer's X25519 public key and return it as raw bytes.

    Accepts the 32 raw bytes, or their standard or URL-safe base64 (padded or not) as text or
    ASCII bytes; a bytes value of exactly 32 bytes is always taken as the raw key. Low-order
    points, which would make every shared secret all-zero, are refused.

    Args:
        data: the key as received.

    Returns:
        The 32 raw bytes.

    Raises:
        InvalidPublicKeyError: the value is not 32 bytes (raw or base64) or is a low-order
            point.
    """
    raw = _decode_public(data)
    try:
        public = X25519PublicKey.from_public_bytes(raw)
        X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise InvalidPublicKeyError(
            "the X25519 public key is a low-order point (the shared secret would be all-zero)"
        ) from None
    return raw


def shared_secret(private_key: bytes, peer_public_key: bytes) -> bytes:
    """The raw X25519 shared secret (32 bytes) of our private key and a peer's public key.

    Never use it as a key directly: derive keys with :func:`derive_message_key`.

    Raises:
        InvalidKeyError: ``private_key`` is not 32 bytes.
        InvalidPublicKeyError: ``peer_public_key`` is not 32 bytes or is a low-order point.
    """
    private = _private_key(private_key)
    if len(peer_public_key) != KEY_SIZE:
        raise InvalidPublicKeyError(
            f"an X25519 public key is {KEY_SIZE} raw bytes, not {len(peer_public_key)}"
        )
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public_key)))
    except ValueError:
        raise InvalidPublicKeyError(
            "the peer's X25519 public key is a low-order point (the shared secret is all-zero)"
        ) from None


def _check_secret(secret: bytes) -> None:
    if len(secret) != KEY_SIZE:
        raise InvalidKeyError(f"an X25519 shared secret is {KEY_SIZE} bytes, not {len(secret)}")


def derive_message_key(
    shared_secret: bytes,
    *,
    conversation_id: uuid.UUID | str,
    info: bytes = MESSAGE_KEY_INFO,
) -> bytes:
    """A 32-byte message key: HKDF-SHA256(ikm=shared_secret, salt=UUID bytes, info).

    Args:
        shared_secret: the X25519 shared secret (32 bytes).
        conversation_id: the conversation's UUID; its 16 bytes are the HKDF salt, so each
            conversation gets its own key from the same pair of identities.
        info: the HKDF context; change it to derive independent keys for other purposes.

    Raises:
        InvalidKeyError: ``shared_secret`` is not 32 bytes.
        ValueError: ``conversation_id`` is not a UUID.
    """
    _check_secret(shared_secret)
    salt = _conversation_uuid(conversation_id).bytes
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=bytes(info))
    return hkdf.derive(bytes(shared_secret))


def _cipher(key: bytes) -> ChaCha20Poly1305:
    if len(key) != KEY_SIZE:
        raise InvalidKeyError(f"a ChaCha20-Poly1305 key is {KEY_SIZE} bytes, not {len(key)}")
    return ChaCha20Poly1305(bytes(key))


def encrypt_message(key: bytes, plaintext: bytes, *, aad: bytes = b"") -> tuple[bytes, bytes]:
    """Encrypt a message with ChaCha20-Poly1305 and a random 96-bit nonce.

    A random nonce is safe for up to about 2**32 messages under one key; derive a new key
    (e.g. per conversation) well before that.

    Args:
        key: a 32-byte message key.
        plaintext: the message.
        aad: associated data, authenticated but not encrypted.

    Returns:
        ``(ciphertext, nonce)``; the ciphertext ends with the 16-byte Poly1305 tag.

    Raises:
        InvalidKeyError: ``key`` is not 32 bytes.
    """
    nonce = os.urandom(NONCE_SIZE)
    return _cipher(key).encrypt(nonce, bytes(plaintext), bytes(aad)), nonce


def decrypt_message(key: bytes, ciphertext: bytes, nonce: bytes, *, aad: bytes = b"") -> bytes:
    """Decrypt and authenticate a message made by :func:`encrypt_message`.

    Raises:
        InvalidKeyError: ``key`` is not 32 bytes.
        MalformedEnvelopeError: the nonce is not 12 bytes or the ciphertext is shorter than
            the tag.
        DecryptionError: wrong key, nonce or associated data, or altered bytes.
    """
    cipher = _cipher(key)
    if len(nonce) != NONCE_SIZE or len(ciphertext) < 16:
        raise MalformedEnvelopeError(
            f"a message needs a {NONCE_SIZE}-byte nonce and at least a 16-byte tag "
            f"(got a {len(nonce)}-byte nonce and {len(ciphertext)} bytes of ciphertext)"
        )
    try:
        return cipher.decrypt(bytes(nonce), bytes(ciphertext), bytes(aad))
    except InvalidTag:
        raise DecryptionError(
            "the message did not authenticate: wrong key, nonce or associated data, or altered"
        ) from None


def shared_secret_audit_hash(shared_secret: bytes, conversation_id: uuid.UUID | str) -> bytes:
    """HMAC-SHA256(key=shared_secret, msg=b"authmodels/e2ee/audit/v1" + UUID bytes): 32 bytes.

    The value stored in ``key_exchanges``: both parties can recompute it to show which secret
    they agreed on for the conversation, and it reveals nothing about the secret.

    Raises:
        InvalidKeyError: ``shared_secret`` is not 32 bytes.
        ValueError: ``conversation_id`` is not a UUID.
    """
    _check_secret(shared_secret)
    message = AUDIT_LABEL + _conversation_uuid(conversation_id).bytes
    return hmac.new(bytes(shared_secret), message, hashlib.sha256).digest()
