"""HOTP/TOTP against RFC 4226 and RFC 6238 vectors; replay refusal, windows, URIs, backup codes."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from authmodels.errors import InsecureParametersError
from authmodels.security import totp

RFC4226_SECRET = b"12345678901234567890"
# RFC 4226 Appendix D: HOTP values for counters 0..9.
RFC4226_HOTP = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]  # fmt: skip

# RFC 6238 Appendix B: the seed of each mode (20, 32 and 64 ASCII bytes), 8 digits, X = 30.
RFC6238_SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238_TABLE = [
    (59, "sha1", "94287082"), (59, "sha256", "46119246"), (59, "sha512", "90693936"),
    (1111111109, "sha1", "07081804"), (1111111109, "sha256", "68084774"),
    (1111111109, "sha512", "25091201"),
    (1111111111, "sha1", "14050471"), (1111111111, "sha256", "67062674"),
    (1111111111, "sha512", "99943326"),
    (1234567890, "sha1", "89005924"), (1234567890, "sha256", "91819424"),
    (1234567890, "sha512", "93441116"),
    (2000000000, "sha1", "69279037"), (2000000000, "sha256", "90698825"),
    (2000000000, "sha512", "38618901"),
    (20000000000, "sha1", "65353130"), (20000000000, "sha256", "77737706"),
    (20000000000, "sha512", "47863826"),
]  # fmt: skip


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226_HOTP)))
def test_rfc4226_appendix_d(counter: int, expected: str) -> None:
    assert totp.hotp(RFC4226_SECRET, counter) == expected


@pytest.mark.parametrize(("timestamp", "algorithm", "expected"), RFC6238_TABLE)
def test_rfc6238_appendix_b(timestamp: int, algorithm: str, expected: str) -> None:
    secret = RFC6238_SEEDS[algorithm]
    assert totp.code_at(secret, timestamp, digits=8, algorithm=algorithm) == expected
    step = timestamp // 30
    assert (
        totp.verify(secret, expected, now=timestamp, window=0, digits=8, algorithm=algorithm)
        == step
    )


def test_six_digit_codes_keep_leading_zeros() -> None:
    assert totp.code_at(RFC6238_SEEDS["sha1"], 1111111109) == "081804"
    assert totp.code_at(RFC6238_SEEDS["sha1"], 1234567890) == "005924"


def test_replay_of_the_same_step_is_refused() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000
    code = totp.code_at(secret, now)
    step = totp.verify(secret, code, now=now)
    assert step == now // 30
    assert totp.verify(secret, code, now=now, last_used_step=step) is None
    assert totp.verify(secret, code, now=now + 5, last_used_step=step) is None
    # The next code is accepted and moves the high-water mark forward.
    later = now + 30
    assert totp.verify(secret, totp.code_at(secret, later), now=later, last_used_step=step) == (
        step + 1
    )
    # An older, still-in-window code after a newer one was used is refused too (5.2).
    assert totp.verify(secret, totp.code_at(secret, now - 30), now=now, last_used_step=step) is None


def test_window_behaviour() -> None:
    secret = totp.new_secret()
    now = 1_700_000_010
    step = now // 30
    previous, following = totp.code_at(secret, now - 30), totp.code_at(secret, now + 30)
    two_back = totp.code_at(secret, now - 60)
    assert totp.verify(secret, previous, now=now) == step - 1
    assert totp.verify(secret, following, now=now) == step + 1
    assert totp.verify(secret, two_back, now=now) is None
    assert totp.verify(secret, two_back, now=now, window=2) == step - 2
    assert totp.verify(secret, previous, now=now, window=0) is None
    with pytest.raises(ValueError, match="window"):
        totp.verify(secret, previous, now=now, window=11)


def test_verify_accepts_datetimes_and_spaces_and_refuses_junk() -> None:
    secret = totp.new_secret()
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    code = totp.code_at(secret, int(moment.timestamp()))
    assert totp.verify(secret, f"{code[:3]} {code[3:]}", now=moment) is not None
    for junk in ("", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"):
        assert totp.verify(secret, junk, now=moment) is None
    with pytest.raises(ValueError, match="timezone"):
        totp.verify(secret, code, now=datetime(2030, 1, 2))


def test_parameter_floors() -> None:
    with pytest.raises(InsecureParametersError):
        totp.hotp(RFC4226_SECRET, 0, digits=5)
    with pytest.raises(InsecureParametersError):
        totp.new_secret(10)
    with pytest.raises(ValueError, match="algorithm"):
        totp.hotp(RFC4226_SECRET, 0, algorithm="md5")
    assert len(totp.new_secret()) == 20


def test_provisioning_uri_format() -> None:
    secret = b"12345678901234567890"
    uri = totp.provisioning_uri(secret, account_name="alice@example.com", issuer="Acme Co")
    assert uri == (
        "otpauth://totp/Acme%20Co:alice%40example.com"
        "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Co"
        "&algorithm=SHA1&digits=6&period=30"
    )
    parts = urlsplit(totp.provisioning_uri(
        secret, account_name="bob&co", issuer="A/B?", algorithm="sha256", digits=8, period=60
    ))  # fmt: skip
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == "/A/B?:bob&co"
    query = parse_qs(parts.query)
    assert query["issuer"] == ["A/B?"]
    assert query["algorithm"] == ["SHA256"]
    assert (query["digits"], query["period"]) == (["8"], ["60"])
    encoded = query["secret"][0]
    assert "=" not in encoded
    assert base64.b32decode(encoded + "=" * (-len(encoded) % 8)) == secret
    with pytest.raises(ValueError, match="':'"):
        totp.provisioning_uri(secret, account_name="a:b", issuer="Acme")


def test_backup_codes() -> None:
    codes = totp.new_backup_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    alphabet = set(totp.BACKUP_CODE_ALPHABET)
    assert len(alphabet) == 32 and not alphabet & set("01OI")
    for code in codes:
        assert len(code) == 11 and code[5] == "-"
        assert set(code.replace("-", "")) <= alphabet
    assert totp.BACKUP_CODE_LENGTH * math.log2(len(alphabet)) >= 50
    assert totp.normalize_backup_code(" abcde-fghjk ") == "ABCDEFGHJK"
    assert totp.normalize_backup_code("ABCDE FGHJK") == "ABCDEFGHJK"
    assert totp.normalize_backup_code(codes[0]) == codes[0].replace("-", "")
    assert len(totp.new_backup_codes(3)) == 3
