"""Tokens and keyed digests: the fixed digest format, key rotation, and refusal of bad input."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authmodels.config import KeyRing
from authmodels.errors import (
    InsecureParametersError,
    InvalidKeyError,
    MalformedEnvelopeError,
    MissingKeyError,
    UnknownKeyError,
)
from authmodels.security import TokenHasher, mac, new_token

OLD = os.urandom(32)
NEW = os.urandom(32)
key_ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True)


def test_new_token_is_urlsafe_and_long_enough() -> None:
    token = new_token()
    assert len(token) == 43  # 32 bytes, unpadded base64
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(new_token(48)) == 64
    assert new_token() != new_token()


def test_new_token_refuses_short_tokens() -> None:
    with pytest.raises(InsecureParametersError, match="at least 32"):
        new_token(16)


def test_digest_has_the_documented_layout() -> None:
    """The format the database depends on: 0x01, len(kid), kid, HMAC-SHA256(key, utf8(raw))."""
    hasher = TokenHasher({"k2025": NEW})
    raw = "tökén"
    expected_mac = hmac.new(NEW, raw.encode("utf-8"), hashlib.sha256).digest()
    assert hasher.digest(raw) == b"\x01" + bytes([5]) + b"k2025" + expected_mac
    assert mac(NEW, raw) == expected_mac
    assert len(hasher.digest(raw)) == 2 + 5 + 32


def test_rfc4231_case_2_through_mac() -> None:
    """RFC 4231 test case 2 (key "Jefe"), proving ``mac`` is plain HMAC-SHA256."""
    assert mac(b"Jefe", "what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_candidates_current_first_and_lookup_after_rotation() -> None:
    before = TokenHasher({"old": OLD})
    stored = before.digest("tok")
    after = TokenHasher({"old": OLD, "new": NEW})
    assert after.current == "new"
    candidates = after.candidates("tok")
    assert [after.key_id_of(c) for c in candidates] == ["new", "old"]
    assert stored in candidates
    assert after.matches("tok", stored)
    assert after.needs_rehash(stored)
    assert not after.needs_rehash(after.digest("tok"))


def test_explicit_current_and_from_ring() -> None:
    ring = KeyRing(keys={"a": OLD, "b": NEW}, current="a", source="TEST")
    hasher = TokenHasher.from_ring(ring)
    assert hasher.current == "a"
    assert hasher.key_id_of(hasher.digest("x")) == "a"
    assert TokenHasher({"a": OLD, "b": NEW}, current="a").digest("x") == hasher.digest("x")


def test_unknown_key_and_malformed_digests() -> None:
    stored = TokenHasher({"gone": OLD}).digest("tok")
    hasher = TokenHasher({"new": NEW})
    with pytest.raises(UnknownKeyError, match="gone"):
        hasher.matches("tok", stored)
    assert hasher.key_id_of(stored) == "gone"
    assert hasher.needs_rehash(stored)
    good = hasher.digest("tok")
    for bad in (
        b"",
        b"\x01",
        good[:-1],
        good + b"\x00",
        b"\x02" + good[1:],
        b"\x01\x00" + good[2:],
    ):
        with pytest.raises(MalformedEnvelopeError):
            hasher.matches("tok", bad)
    with pytest.raises(MalformedEnvelopeError):
        hasher.key_id_of(b"\x01\x03\xff\xfe\xfd" + bytes(32))


def test_key_ring_validation() -> None:
    with pytest.raises(InvalidKeyError, match="at least 32"):
        TokenHasher({"short": os.urandom(31)})
    with pytest.raises(MissingKeyError):
        TokenHasher({})
    with pytest.raises(UnknownKeyError, match="'c'"):
        TokenHasher({"a": OLD}, current="c")
    with pytest.raises(InvalidKeyError, match="key id"):
        TokenHasher({"bad id": OLD})
    with pytest.raises(InvalidKeyError, match="key id"):
        TokenHasher({"x" * 33: OLD})


@given(raw=st.text(), other=st.text())
def test_digest_matches_round_trip(raw: str, other: str) -> None:
    hasher = TokenHasher({"k1": OLD})
    stored = hasher.digest(raw)
    assert hasher.matches(raw, stored)
    assert hasher.matches(other, stored) == (other == raw)


@given(raw=st.text(), old_id=key_ids, new_id=key_ids)
def test_old_digest_still_matches_after_rotation(raw: str, old_id: str, new_id: str) -> None:
    if old_id == new_id:
        return
    stored = TokenHasher({old_id: OLD}).digest(raw)
    rotated = TokenHasher({old_id: OLD, new_id: NEW})
    assert rotated.current == new_id
    assert rotated.matches(raw, stored)
    assert rotated.needs_rehash(stored)
    assert stored in rotated.candidates(raw)
    assert not rotated.needs_rehash(rotated.digest(raw))
