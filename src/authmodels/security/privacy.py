"""Keyed hashes of personal identifiers, so they are stored without being readable.

What is hashed: client IP addresses and user agents, the recipients of e-mails and text
messages (revision 0032), and the identifiers a client gives of itself (a device fingerprint,
the value a magic link is bound to: revision 0033). The hashes use the
:class:`~authmodels.security.hashing.TokenHasher` digest format (``b"\\x01" || len(kid) || kid
|| HMAC-SHA256``), with domain separation: the MAC input is ``<domain> || b"\\x00" || value``
(UTF-8), the domain being ``ip``, ``ua``, ``email``, ``phone`` or ``client``. A hash of one kind
therefore never equals a hash of another, nor the digest of a token made by
:func:`~authmodels.security.new_token` (URL-safe base64 text, which never contains NUL), even
when the same key ring serves both.

A recipient is kept beside its hash in a masked form a person can recognise
(:func:`mask_email`, :func:`mask_phone`): enough to tell "the reset mail went to a***@gmail.com",
not enough to write to the person.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from authmodels.errors import InvalidInputError, InvalidIPAddressError
from authmodels.security.hashing import TokenHasher
from authmodels.security.keyring import KeyedPrimitive

__all__ = [
    "PHONE_PATTERN",
    "PrivacyHasher",
    "mask_email",
    "mask_phone",
    "normalize_ip",
    "normalize_phone",
]

_IP_DOMAIN = "ip\x00"
_UA_DOMAIN = "ua\x00"
_EMAIL_DOMAIN = "email\x00"
_PHONE_DOMAIN = "phone\x00"
_CLIENT_DOMAIN = "client\x00"

#: An E.164 telephone number: ``+``, a country code that does not start with 0, 7 to 15 digits.
PHONE_PATTERN = r"\+[1-9][0-9]{6,14}"
_PHONE = re.compile(PHONE_PATTERN)


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


def normalize_phone(phone: str) -> str:
    """An E.164 number as it is hashed: spaces, dots, dashes and parentheses removed.

    Raises:
        InvalidInputError: the result is not ``+`` and 7 to 15 digits (E.164).
    """
    if not isinstance(phone, str) or len(phone) > 64:
        raise InvalidInputError("a phone number is text in E.164 form (+4420...)", field="phone")
    compact = re.sub(r"[\s.()-]", "", phone)
    if _PHONE.fullmatch(compact) is None:
        raise InvalidInputError(
            f"{phone[:32]!r} is not a phone number in E.164 form: + and the country code, "
            "7 to 15 digits (+442071838750)",
            field="phone",
        )
    return compact


def mask_email(email: str) -> str:
    """The form of an address kept beside its hash: the first character of the local part,
    ``***``, and the domain (``ada@example.com`` -> ``a***@example.com``).

    A one-character local part is masked whole (``***@example.com``). The domain is kept: it
    tells a support agent which provider refused or delayed a mail.

    Raises:
        InvalidInputError: ``email`` has no ``@`` with text on both sides.
    """
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in local + domain):
        raise InvalidInputError(f"{email[:64]!r} is not an e-mail address", field="email")
    return f"{local[0] if len(local) > 1 else ''}***@{domain.lower()}"


def mask_phone(phone: str) -> str:
    """The form of a number kept beside its hash: ``+``, its first two digits, a ``*`` for each
    digit hidden and its last two (``+442071838750`` -> ``+44********50``).

    Raises:
        InvalidInputError: not an E.164 number (see :func:`normalize_phone`).
    """
    digits = normalize_phone(phone)[1:]
    return f"+{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"


class PrivacyHasher(KeyedPrimitive):
    """Keyed, domain-separated hashes of client IP addresses, user agents, recipients and client
    identifiers.

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

    def email_hash(self, email: str) -> bytes:
        """The hash of an e-mail recipient under the current key (trimmed, lower case: the
        identity of the address, :func:`authmodels.email_identity.normalize_email`)."""
        return self._hasher.digest(_EMAIL_DOMAIN + email.strip().lower())

    def email_candidates(self, email: str) -> list[bytes]:
        """The hash of an e-mail recipient under every key, current first (for lookups)."""
        return self._hasher.candidates(_EMAIL_DOMAIN + email.strip().lower())

    def phone_hash(self, phone: str) -> bytes:
        """The hash of a text-message recipient under the current key.

        Raises:
            InvalidInputError: not an E.164 number (see :func:`normalize_phone`).
        """
        return self._hasher.digest(_PHONE_DOMAIN + normalize_phone(phone))

    def phone_candidates(self, phone: str) -> list[bytes]:
        """The hash of a text-message recipient under every key, current first (for lookups).

        Raises:
            InvalidInputError: not an E.164 number (see :func:`normalize_phone`).
        """
        return self._hasher.candidates(_PHONE_DOMAIN + normalize_phone(phone))

    def client_hash(self, identifier: str) -> bytes:
        """The hash of an identifier a client gives of itself (a device fingerprint, the value
        a magic link is bound to) under the current key, as given."""
        return self._hasher.digest(_CLIENT_DOMAIN + identifier)

    def client_candidates(self, identifier: str) -> list[bytes]:
        """The hash of a client identifier under every key, current first (for lookups)."""
        return self._hasher.candidates(_CLIENT_DOMAIN + identifier)

    def needs_rehash(self, stored: bytes) -> bool:
        """Whether a stored hash was made with a key other than the current one.

        Raises:
            MalformedEnvelopeError: ``stored`` is not a hash of this format.
        """
        return self._made_with_old_key(stored)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(current={self.current!r})"
