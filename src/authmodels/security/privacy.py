"""Keyed hashes of IP addresses and user agents, so they are stored without being readable.

The hashes use the :class:`~authmodels.security.hashing.TokenHasher` digest format
(``b"\\x01" || len(kid) || kid || HMAC-SHA256``), with domain separation: the MAC input is
``b"ip\\x00" + normalized_ip`` or ``b"ua\\x00" + user_agent`` (UTF-8). An IP hash therefore never
equals a user-agent hash, nor the digest of a token made by :func:`~authmodels.security.new_token`
(URL-safe base64 text, which never contains NUL), even when the same key ring serves both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from authmodels.errors import InvalidIPAddressError
from authmodels.security.hashing import TokenHasher
from authmodels.security.keyring import KeyedPrimitive

__all__ = ["PrivacyHasher", "normalize_ip"]

_IP_DOMAIN = "ip\x00"
_UA_DOMAIN = "ua\x00"


def normalize_ip(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The canonical text of an IP address, so one address always hashes the same way.

    Surrounding whitespace and square brackets are removed, and so is an IPv6 zone id
    (``fe80::1%eth0`` -> ``fe80::1``); an IPv4-mapped IPv6 address becomes the IPv4 address
    (``::ffff:1.2.3.4`` -> ``1.2.3.4``); IPv6 is written in compressed lowercase form.

    Args:
        ip: the address as text, or an :mod:`ipaddress` object.

    Raises:
        InvalidIPAddressError: the value is not an IPv4 or IPv6 address.
    """
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        text = str(ip)
    elif isinstance(ip, str):
        text = ip.strip()
    else:
        raise InvalidIPAddressError(
            f"an IP address must be a str or an ipaddress object, not {type(ip).__name__}"
        )
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidIPAddressError(
            f"{str(ip)[:64]!r} is not an IPv4 or IPv6 address (give the client address "
            "without a port)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class PrivacyHasher(KeyedPrimitive):
    """Keyed, domain-separated hashes of client IP addresses and user agents.

    The ring (``from_ring``, ``current``, ``key_ids``, ``key_id_of``) is
    :class:`~authmodels.security.keyring.KeyedPrimitive`'s, with the rules and the format of
    :class:`~authmodels.security.hashing.TokenHasher`'s.

    Args:
        keys: key id -> key (at least 32 bytes), oldest first.
        current: the key id for new hashes; the last key of ``keys`` when None.

    Raises:
        MissingKeyError: ``keys`` is empty.
        InvalidKeyError: a key is shorter than 32 bytes or a key id is malformed.
        UnknownKeyError: ``current`` is not one of the key ids.
    """

    ring_name = TokenHasher.ring_name
    stored_name = TokenHasher.stored_name
    min_key_bytes = TokenHasher.min_key_bytes
    min_body = TokenHasher.min_body
    exact_body = TokenHasher.exact_body

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        super().__init__(keys, current)
        self._hasher = TokenHasher(self._keys, self._current)

    def ip_hash(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
        """The hash of an IP address under the current key (see :func:`normalize_ip`).

        Raises:
            InvalidIPAddressError: the value is not an IPv4 or IPv6 address.
        """
        return self._hasher.digest(_IP_DOMAIN + normalize_ip(ip))

    def ip_candidates(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[bytes]:
        """The hash of an IP address under every key, current first (for lookups).

        Raises:
            InvalidIPAddressError: the value is not an IPv4 or IPv6 address.
        """
        return self._hasher.candidates(_IP_DOMAIN + normalize_ip(ip))

    def ua_hash(self, user_agent: str) -> bytes:
        """The hash of a ``User-Agent`` header value (as received) under the current key."""
        return self._hasher.digest(_UA_DOMAIN + user_agent)

    def ua_candidates(self, user_agent: str) -> list[bytes]:
        """The hash of a ``User-Agent`` value under every key, current first (for lookups)."""
        return self._hasher.candidates(_UA_DOMAIN + user_agent)

    def needs_rehash(self, stored: bytes) -> bool:
        """Whether a stored hash was made with a key other than the current one.

        Raises:
            MalformedEnvelopeError: ``stored`` is not a hash of this format.
        """
        return self._made_with_old_key(stored)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(current={self.current!r})"
