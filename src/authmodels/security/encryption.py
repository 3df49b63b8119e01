"""Reversible encryption of column values: AES-256-GCM over a rotating key ring.

Use it for secrets the service must read back (TOTP seeds, OAuth refresh tokens of upstream
providers...). Values that only need to be compared are hashed with
:class:`~authmodels.security.hashing.TokenHasher` instead.

Envelope format (what the column stores)::

    b"\\x01"                 version byte 1
    bytes([len(kid)])       key-id length, 1 to 32
    kid.encode("ascii")     key id
    nonce                   12 random bytes
    ciphertext || tag       AES-256-GCM output, the 16-byte tag last

The GCM associated data is ``header || aad``, where ``header`` is the first ``2 + len(kid)``
bytes of the envelope: the version and key id are authenticated, and so is the caller's
``aad``, which should name where the value lives (see :func:`aad_for`) so that a ciphertext
copied to another row or column does not decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authmodels.errors import DecryptionError, UnknownKeyError
from authmodels.security.keyring import KeyedPrimitive

__all__ = ["AAD_PREFIX", "NONCE_SIZE", "TAG_SIZE", "FieldCipher", "aad_for"]

#: Size of the random GCM nonce stored in each envelope.
NONCE_SIZE = 12
#: Size of the GCM authentication tag at the end of each envelope.
TAG_SIZE = 16
#: AES-256 key size.
KEY_SIZE = 32
#: Prefix of the associated data built by :func:`aad_for`.
AAD_PREFIX = b"authmodels/v1\x00"


def aad_for(table: str, column: str, row_id: object) -> bytes:
    """Associated data that ties a ciphertext to one row and column.

    The encoding is ``b"authmodels/v1\\x00" + table + b"\\x00" + column + b"\\x00" +
    str(row_id)`` (UTF-8). Table and column names cannot contain NUL, so the encoding is
    unambiguous; the row id comes last and may contain anything.

    Pass the row id as the same type every time (e.g. always a :class:`uuid.UUID`, whose
    ``str`` is the lowercase hyphenated form): ``"ABC"`` and ``"abc"`` are different ids.

    Args:
        table: the table name.
        column: the column name.
        row_id: the row's primary key.

    Raises:
        ValueError: ``table`` or ``column`` is empty or contains a NUL character.
    """
    for name, value in (("table", table), ("column", column)):
        if not value or "\x00" in value:
            raise ValueError(f"aad_for: the {name} name must be non-empty and free of NUL")
    return b"".join(
        (
            AAD_PREFIX,
            table.encode("utf-8"),
            b"\x00",
            column.encode("utf-8"),
            b"\x00",
            str(row_id).encode("utf-8"),
        )
    )


class FieldCipher(KeyedPrimitive):
    """AES-256-GCM encryption of column values over a ring of 32-byte keys.

    New envelopes use the current key; envelopes made with any key of the ring still decrypt,
    and :meth:`needs_reencrypt` / :meth:`reencrypt` move them to the current key. The ring
    (``from_ring``, ``current``, ``key_ids``, ``key_id_of``) is
    :class:`~authmodels.security.keyring.KeyedPrimitive`'s.

    Args:
        keys: key id -> 32-byte key, oldest first.
        current: the key id for new envelopes; the last key of ``keys`` when None.

    Raises:
        MissingKeyError: ``keys`` is empty.
        InvalidKeyError: a key is not exactly 32 bytes or a key id is malformed.
        UnknownKeyError: ``current`` is not one of the key ids.
    """

    ring_name = "encryption"
    stored_name = "envelope"
    exact_key_bytes = KEY_SIZE
    min_body = NONCE_SIZE + TAG_SIZE

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        super().__init__(keys, current)
        self._aead = {kid: AESGCM(key) for kid, key in self._keys.items()}

    def _encrypt_with_nonce(self, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
        """Encrypt under the current key with a given nonce (a seam for known-answer tests).

        Never call this with a nonce that was used before under the same key.
        """
        header = self._headers[self._current]
        sealed = self._aead[self._current].encrypt(nonce, bytes(plaintext), header + bytes(aad))
        return header + nonce + sealed

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` under the current key with a fresh random nonce.

        Args:
            plaintext: the value to protect.
            aad: associated data, usually :func:`aad_for` of the row and column; the same bytes
                are needed to decrypt.

        Returns:
            The envelope (``header || nonce || ciphertext || tag``).
        """
        return self._encrypt_with_nonce(plaintext, aad, os.urandom(NONCE_SIZE))

    def encrypt_str(self, plaintext: str, *, aad: bytes) -> bytes:
        """:meth:`encrypt` for text (UTF-8 encoded)."""
        return self.encrypt(plaintext.encode("utf-8"), aad=aad)

    def decrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
        """Decrypt and authenticate an envelope.

        Args:
            envelope: a value made by :meth:`encrypt`, under any key of the ring.
            aad: the associated data given to :meth:`encrypt`.

        Raises:
            MalformedEnvelopeError: the envelope is truncated or has an unknown version.
            UnknownKeyError: the envelope names a key that is not in the ring.
            DecryptionError: wrong key, wrong associated data, or altered bytes.
        """
        data = bytes(envelope)
        kid = self.key_id_of(data)
        aead = self._aead.get(kid)
        if aead is None:
            raise UnknownKeyError(
                f"the envelope was encrypted with key {kid!r}, which is not in the encryption "
                f"key ring (it has {', '.join(self._aead)}): add the key back to read it"
            )
        start = 2 + len(kid)
        header = data[:start]
        nonce = data[start : start + NONCE_SIZE]
        try:
            return aead.decrypt(nonce, data[start + NONCE_SIZE :], header + bytes(aad))
        except InvalidTag:
            raise DecryptionError(
                f"the envelope (key {kid!r}) did not authenticate: it was altered, or the "
                "associated data differs from the one used to encrypt it (another row or column?)"
            ) from None

    def decrypt_str(self, envelope: bytes, *, aad: bytes) -> str:
        """:meth:`decrypt` for values made by :meth:`encrypt_str`.

        Raises:
            DecryptionError: as :meth:`decrypt`, or the plaintext is not UTF-8 text.
        """
        plaintext = self.decrypt(envelope, aad=aad)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError(
                "the envelope decrypted, but to bytes that are not UTF-8 text: it was made with "
                "encrypt(), not encrypt_str(); use decrypt()"
            ) from None

    def needs_reencrypt(self, envelope: bytes) -> bool:
        """Whether an envelope was made with a key other than the current one.

        Raises:
            MalformedEnvelopeError: the envelope is truncated or has an unknown version.
        """
        return self._made_with_old_key(envelope)

    def reencrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
        """Decrypt an envelope and encrypt its plaintext again under the current key.

        Args:
            envelope: a value made by :meth:`encrypt`, under any key of the ring.
            aad: the associated data of the value (unchanged).

        Raises:
            MalformedEnvelopeError, UnknownKeyError, DecryptionError: as :meth:`decrypt`.
        """
        return self.encrypt(self.decrypt(envelope, aad=aad), aad=aad)
