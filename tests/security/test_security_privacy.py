"""IP and user-agent hashing: normalization, key separation and domain separation."""

from __future__ import annotations

import ipaddress
import os

import pytest

from authmodels.errors import InvalidIPAddressError
from authmodels.security import PrivacyHasher, TokenHasher, normalize_ip

KEY = os.urandom(32)
HASHER = PrivacyHasher({"p1": KEY})


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::FFFF:102:304", "1.2.3.4"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        (ipaddress.ip_address("::ffff:9.8.7.6"), "9.8.7.6"),
    ],
)
def test_normalize_ip(given: str, canonical: str) -> None:
    assert normalize_ip(given) == canonical


@pytest.mark.parametrize("bad", ["", "localhost", "1.2.3", "1.2.3.4:80", "01.2.3.4", "::g", "[::1"])
def test_invalid_ip_raises(bad: str) -> None:
    with pytest.raises(InvalidIPAddressError):
        HASHER.ip_hash(bad)


def test_mapped_and_plain_ipv4_hash_alike() -> None:
    assert HASHER.ip_hash("::ffff:1.2.3.4") == HASHER.ip_hash("1.2.3.4")
    assert HASHER.ip_hash("2001:DB8::1") == HASHER.ip_hash("[2001:db8:0::1]")
    assert HASHER.ip_hash("1.2.3.4") != HASHER.ip_hash("1.2.3.5")


def test_different_keys_hash_differently() -> None:
    other = PrivacyHasher({"p1": os.urandom(32)})
    assert other.ip_hash("1.2.3.4") != HASHER.ip_hash("1.2.3.4")
    assert other.ua_hash("Mozilla/5.0") != HASHER.ua_hash("Mozilla/5.0")


def test_domain_separation_between_ip_ua_and_tokens() -> None:
    """The same text hashed as an IP, a user agent and a token gives three different values."""
    tokens = TokenHasher({"p1": KEY})
    ip_hash = HASHER.ip_hash("1.2.3.4")
    assert ip_hash != HASHER.ua_hash("1.2.3.4")
    assert ip_hash != tokens.digest("1.2.3.4")
    assert HASHER.ua_hash("1.2.3.4") != tokens.digest("1.2.3.4")
    # ...and the separation is exactly the documented prefix.
    assert ip_hash == tokens.digest("ip\x001.2.3.4")
    assert HASHER.ua_hash("curl/8") == tokens.digest("ua\x00curl/8")


def test_format_rotation_and_candidates() -> None:
    rotated = PrivacyHasher({"p1": KEY, "p2": os.urandom(32)})
    old = HASHER.ip_hash("1.2.3.4")
    assert old[:4] == b"\x01\x02p1" and len(old) == 4 + 32
    assert rotated.needs_rehash(old)
    assert rotated.key_id_of(rotated.ip_hash("1.2.3.4")) == "p2"
    assert old in rotated.ip_candidates("::ffff:1.2.3.4")
    assert HASHER.ua_hash("x") in rotated.ua_candidates("x")
