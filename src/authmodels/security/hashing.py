"""Random tokens and keyed digests of them (HMAC-SHA256 over a rotating key ring).

A token (session token, refresh token, e-mail link, backup code...) is shown to its owner once
and stored only as a keyed digest, so a copy of the database alone does not let anyone use it.
The digest names the key it was made with, so keys can be rotated without invalidating the
tokens already issued.

Digest format (fixed: migrations and the database depend on it)::

    b"\\x01"                      version byte 1
    bytes([len(kid)])            key-id length, 1 to 32
    kid.encode("ascii")          key id
    hmac_sha256(key, raw.encode("utf-8"))   32-byte MAC

so a digest is ``2 + len(kid) + 32`` bytes long.
"""

from __future__ import annotations

import hmac
import secrets

from authmodels.errors import InsecureParametersError, UnknownKeyError
from authmodels.security.keyring import HEADER_VERSION, KeyedPrimitive

__all__ = ["DIGEST_VERSION", "MAC_SIZE", "MIN_TOKEN_BYTES", "TokenHasher", "mac", "new_token"]

#: First byte of every digest made by :class:`TokenHasher` (the key-ring header's version).
DIGEST_VERSION = HEADER_VERSION
#: Size of the HMAC-SHA256 part of a digest.
MAC_SIZE = 32
#: Smallest number of random bytes :func:`new_token` accepts (256 bits).
MIN_TOKEN_BYTES = 32
#: Smallest HMAC key accepted, in bytes.
MIN_HMAC_KEY_BYTES = 32


def new_token(nbytes: int = MIN_TOKEN_BYTES) -> str:
    """Generate a random URL-safe token.

    Args:
        nbytes: number of random bytes (the token is their unpadded URL-safe base64 text,
            about 1.33 characters per byte). At least 32.

    Returns:
        The token, e.g. 43 characters for 32 bytes.

    Raises:
        InsecureParametersError: ``nbytes`` is below 32.
    """
    if nbytes < MIN_TOKEN_BYTES:
        raise InsecureParametersError(
            f"new_token(nbytes={nbytes}) is too short: tokens need at least "
            f"{MIN_TOKEN_BYTES} random bytes (256 bits)"
        )
    return secrets.token_urlsafe(nbytes)


def mac(key: bytes, raw: str) -> bytes:
    """The raw HMAC-SHA256 of ``raw`` (UTF-8 encoded) under ``key``: 32 bytes.

    This is the MAC part of a :class:`TokenHasher` digest, exposed for migrations that build
    digests in bulk.

    Args:
        key: the HMAC key.
        raw: the token text.
    """
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest() in a third
    # of the time (it runs for every token check and every row a migration digests)
    return hmac.digest(key, raw.encode("utf-8"), "sha256")


class TokenHasher(KeyedPrimitive):
    """Keyed HMAC-SHA256 digests of tokens, over a ring of keys that can be rotated.

    New digests use the current key; :meth:`candidates` gives the digest under every key so a
    lookup finds tokens issued before a rotation, and :meth:`needs_rehash` tells which stored
    digests to upgrade. The ring (``from_ring``, ``current``, ``key_ids``, ``key_id_of``) is
    :class:`~authmodels.security.keyring.KeyedPrimitive`'s.

    Args:
        keys: key id -> key (at least 32 bytes), oldest first.
        current: the key id for new digests; the last key of ``keys`` when None.

    Raises:
        MissingKeyError: ``keys`` is empty.
        InvalidKeyError: a key is shorter than 32 bytes or a key id is malformed.
        UnknownKeyError: ``current`` is not one of the key ids.
    """

    ring_name = "hash"
    stored_name = "digest"
    min_key_bytes = MIN_HMAC_KEY_BYTES
    min_body = MAC_SIZE
    exact_body = MAC_SIZE

    def _digest_with(self, kid: str, raw: str) -> bytes:
        return self._headers[kid] + mac(self._keys[kid], raw)

    def digest(self, raw: str) -> bytes:
        """The digest of ``raw`` under the current key (the value to store).

        Args:
            raw: the token as given to its owner.
        """
        return self._digest_with(self._current, raw)

    def candidates(self, raw: str) -> list[bytes]:
        """The digest of ``raw`` under every key of the ring, current key first.

        Use it for lookups that must also find tokens issued under older keys::

            WHERE token_hash = ANY(:candidates)

        Args:
            raw: the token as presented.
        """
        return [self._digest_with(kid, raw) for kid in self.key_ids]

    def matches(self, raw: str, stored: bytes) -> bool:
        """Whether ``raw`` is the token behind the stored digest (constant-time comparison).

        Args:
            raw: the token as presented.
            stored: a digest made by :meth:`digest`, under any key of the ring.

        Raises:
            MalformedEnvelopeError: ``stored`` is not a digest of this format.
            UnknownKeyError: the digest was made with a key that is no longer in the ring.
        """
        stored = bytes(stored)
        kid = self.key_id_of(stored)
        if kid not in self._keys:
            raise UnknownKeyError(
                f"the stored digest was made with hash key {kid!r}, which is not in the key ring "
                f"(it has {', '.join(self._keys)}): add the key back to read it"
            )
        return hmac.compare_digest(self._digest_with(kid, raw), stored)

    def needs_rehash(self, stored: bytes) -> bool:
        """Whether a stored digest was made with a key other than the current one.

        Raises:
            MalformedEnvelopeError: ``stored`` is not a digest of this format.
        """
        return self._made_with_old_key(stored)
