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

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from authmodels.config import KEY_ID_PATTERN, KeyRing
from authmodels.errors import (
    InsecureParametersError,
    InvalidKeyError,
    MalformedEnvelopeError,
    MissingKeyError,
    UnknownKeyError,
)

__all__ = ["DIGEST_VERSION", "MAC_SIZE", "MIN_TOKEN_BYTES", "TokenHasher", "mac", "new_token"]

#: First byte of every digest made by :class:`TokenHasher`.
DIGEST_VERSION = 1
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
    return hmac.new(key, raw.encode("utf-8"), hashlib.sha256).digest()


# --- key rings and headers, shared with encryption and privacy ----------------------------------


def _header(kid: str) -> bytes:
    """``version || len(kid) || kid``: the prefix of digests and envelopes."""
    encoded = kid.encode("ascii")
    return bytes([DIGEST_VERSION, len(encoded)]) + encoded


def _load_ring(
    keys: Mapping[str, bytes],
    current: str | None,
    *,
    what: str,
    min_bytes: int | None = None,
    exact_bytes: int | None = None,
) -> tuple[dict[str, bytes], str]:
    """Validate a key ring and return (a copy of the keys, the current key id).

    Raises:
        MissingKeyError: the ring is empty.
        InvalidKeyError: a key id is malformed or a key has the wrong size.
        UnknownKeyError: ``current`` is not in the ring.
    """
    if not keys:
        raise MissingKeyError(f"the {what} key ring is empty: give at least one key")
    ring: dict[str, bytes] = {}
    for kid, key in keys.items():
        if not isinstance(kid, str) or not KEY_ID_PATTERN.fullmatch(kid):
            raise InvalidKeyError(
                f"{what} key id {kid!r} is invalid: use 1-32 characters from A-Z a-z 0-9 _ - ."
            )
        if not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidKeyError(
                f"{what} key {kid!r} is a {type(key).__name__}; pass the raw key bytes"
            )
        key_bytes = bytes(key)
        if exact_bytes is not None and len(key_bytes) != exact_bytes:
            raise InvalidKeyError(
                f"{what} key {kid!r} is {len(key_bytes)} bytes; it must be exactly {exact_bytes}"
            )
        if min_bytes is not None and len(key_bytes) < min_bytes:
            raise InvalidKeyError(
                f"{what} key {kid!r} is {len(key_bytes)} bytes; it must be at least {min_bytes} "
                "random bytes"
            )
        ring[kid] = key_bytes
    chosen = list(ring)[-1] if current is None else current
    if chosen not in ring:
        raise UnknownKeyError(
            f"current {what} key id {chosen!r} is not in the key ring (it has {', '.join(ring)})"
        )
    return ring, chosen


def _parse_header(data: bytes, *, what: str, min_body: int, exact_body: int | None) -> str:
    """Read the key id from ``version || len || kid || body``, checking the sizes.

    Args:
        data: the stored value.
        what: "digest" or "envelope", for messages.
        min_body: smallest number of bytes after the key id.
        exact_body: the exact number of bytes after the key id, when fixed.

    Raises:
        MalformedEnvelopeError: the value is truncated, has another version or a bad key id.
    """
    if len(data) < 3:
        raise MalformedEnvelopeError(f"the stored {what} is {len(data)} bytes: it is truncated")
    if data[0] != DIGEST_VERSION:
        raise MalformedEnvelopeError(
            f"the stored {what} has format version {data[0]}; this version of authmodels reads "
            f"version {DIGEST_VERSION} only"
        )
    kid_len = data[1]
    body = len(data) - 2 - kid_len
    if kid_len == 0 or body < min_body or (exact_body is not None and body != exact_body):
        raise MalformedEnvelopeError(
            f"the stored {what} is {len(data)} bytes, which does not fit a key id of "
            f"{kid_len} bytes: it is truncated or not an authmodels {what}"
        )
    try:
        kid = data[2 : 2 + kid_len].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedEnvelopeError(f"the key id of the stored {what} is not ASCII") from None
    if not KEY_ID_PATTERN.fullmatch(kid):
        raise MalformedEnvelopeError(f"the stored {what} names an invalid key id {kid!r}")
    return kid


class TokenHasher:
    """Keyed HMAC-SHA256 digests of tokens, over a ring of keys that can be rotated.

    New digests use the current key; :meth:`candidates` gives the digest under every key so a
    lookup finds tokens issued before a rotation, and :meth:`needs_rehash` tells which stored
    digests to upgrade.

    Args:
        keys: key id -> key (at least 32 bytes), oldest first.
        current: the key id for new digests; the last key of ``keys`` when None.

    Raises:
        MissingKeyError: ``keys`` is empty.
        InvalidKeyError: a key is shorter than 32 bytes or a key id is malformed.
        UnknownKeyError: ``current`` is not one of the key ids.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        self._keys, self._current = _load_ring(
            keys, current, what="hash", min_bytes=MIN_HMAC_KEY_BYTES
        )
        self._headers = {kid: _header(kid) for kid in self._keys}

    @classmethod
    def from_ring(cls, ring: KeyRing) -> TokenHasher:
        """Build a hasher from a configured :class:`~authmodels.config.KeyRing`."""
        return cls(ring.keys, ring.current)

    @property
    def current(self) -> str:
        """The key id used for new digests."""
        return self._current

    @property
    def key_ids(self) -> list[str]:
        """Every key id of the ring, current first."""
        return [self._current, *(kid for kid in self._keys if kid != self._current)]

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

    def key_id_of(self, stored: bytes) -> str:
        """The key id a stored digest was made with (which may not be in the ring).

        Raises:
            MalformedEnvelopeError: ``stored`` is not a digest of this format.
        """
        return _parse_header(bytes(stored), what="digest", min_body=MAC_SIZE, exact_body=MAC_SIZE)

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
        return self.key_id_of(stored) != self._current

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_ids={list(self._keys)!r}, current={self._current!r})"
