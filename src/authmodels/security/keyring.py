"""Key rings of the keyed primitives, and the header that names a stored value's key.

:class:`~authmodels.security.hashing.TokenHasher` (HMAC digests),
:class:`~authmodels.security.encryption.FieldCipher` (AES-256-GCM envelopes) and
:class:`~authmodels.security.privacy.PrivacyHasher` (keyed IP / user-agent hashes) each work over
a ring of keys named by key ids: new values use the current key, values made under any key of the
ring are still read, so keys rotate without invalidating what is stored. They share this module:
the ring's validation, its accessors (:class:`KeyedPrimitive`) and the header format.

Header format (fixed: stored values, migrations and the database depend on it)::

    b"\\x01"                 version byte 1 (HEADER_VERSION)
    bytes([len(kid)])       key-id length, 1 to 32
    kid.encode("ascii")     key id

followed by the primitive's body (a 32-byte MAC, or a nonce and a ciphertext).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from authmodels.config import KEY_ID_PATTERN, KeyRing
from authmodels.errors import (
    InvalidKeyError,
    MalformedEnvelopeError,
    MissingKeyError,
    UnknownKeyError,
)

__all__ = ["HEADER_VERSION", "KeyedPrimitive", "header", "load_ring", "parse_header"]

#: First byte of every stored digest and envelope.
HEADER_VERSION = 1


def header(kid: str) -> bytes:
    """``version || len(kid) || kid``: the prefix of digests and envelopes."""
    encoded = kid.encode("ascii")
    return bytes([HEADER_VERSION, len(encoded)]) + encoded


def load_ring(
    keys: Mapping[str, bytes],
    current: str | None,
    *,
    what: str,
    min_bytes: int | None = None,
    exact_bytes: int | None = None,
) -> tuple[dict[str, bytes], str]:
    """Validate a key ring and return (a copy of the keys, the current key id).

    Args:
        keys: key id -> key, oldest first.
        current: the key id for new values; the last key of ``keys`` when None.
        what: the ring's name in messages ("hash", "encryption").
        min_bytes: the smallest key size accepted.
        exact_bytes: the one key size accepted, when the algorithm fixes it.

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


def parse_header(data: bytes, *, what: str, min_body: int, exact_body: int | None) -> str:
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
    if data[0] != HEADER_VERSION:
        raise MalformedEnvelopeError(
            f"the stored {what} has format version {data[0]}; this version of authmodels reads "
            f"version {HEADER_VERSION} only"
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


class KeyedPrimitive:
    """A primitive keyed by a ring: the validated keys, the current key id, stored headers.

    A subclass names its ring and the body that follows a stored value's header (the class
    attributes below); it gets the constructor, :meth:`from_ring`, :attr:`current`,
    :attr:`key_ids` and :meth:`key_id_of`.

    Args:
        keys: key id -> key, oldest first.
        current: the key id for new values; the last key of ``keys`` when None.

    Raises:
        MissingKeyError: ``keys`` is empty.
        InvalidKeyError: a key has the wrong size or a key id is malformed.
        UnknownKeyError: ``current`` is not one of the key ids.
    """

    #: The ring's name in messages ("hash", "encryption").
    ring_name: ClassVar[str]
    #: The stored value's name in messages ("digest", "envelope").
    stored_name: ClassVar[str]
    #: Key sizes accepted: at least ``min_key_bytes``, or exactly ``exact_key_bytes``.
    min_key_bytes: ClassVar[int | None] = None
    exact_key_bytes: ClassVar[int | None] = None
    #: Bytes after a stored value's header: at least ``min_body``, exactly ``exact_body`` if set.
    min_body: ClassVar[int]
    exact_body: ClassVar[int | None] = None

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        self._keys, self._current = load_ring(
            keys,
            current,
            what=self.ring_name,
            min_bytes=self.min_key_bytes,
            exact_bytes=self.exact_key_bytes,
        )
        self._headers = {kid: header(kid) for kid in self._keys}

    @classmethod
    def from_ring(cls, ring: KeyRing) -> Self:
        """Build it from a configured :class:`~authmodels.config.KeyRing`."""
        return cls(ring.keys, ring.current)

    @property
    def current(self) -> str:
        """The key id used for new values."""
        return self._current

    @property
    def key_ids(self) -> list[str]:
        """Every key id of the ring, current first."""
        return [self._current, *(kid for kid in self._keys if kid != self._current)]

    def key_id_of(self, stored: bytes) -> str:
        """The key id a stored value was made with (which may not be in the ring).

        Raises:
            MalformedEnvelopeError: ``stored`` is truncated, has another format version or is
                not a value of this primitive's format.
        """
        return parse_header(
            bytes(stored), what=self.stored_name, min_body=self.min_body, exact_body=self.exact_body
        )

    def _made_with_old_key(self, stored: bytes) -> bool:
        return self.key_id_of(stored) != self._current

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_ids={list(self._keys)!r}, current={self._current!r})"
