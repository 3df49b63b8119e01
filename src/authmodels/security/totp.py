"""One-time passwords: HOTP (RFC 4226), TOTP (RFC 6238), provisioning URIs and backup codes.

TOTP seeds are secrets the server must read back: store them encrypted with
:class:`~authmodels.security.encryption.FieldCipher`. Store the last accepted time step with
the seed and pass it as ``last_used_step`` to :func:`verify`, which then refuses that step and
every earlier one, so a code cannot be replayed (RFC 6238 section 5.2).

Backup codes are shown once and stored only as digests, made by the caller with
:class:`~authmodels.security.hashing.TokenHasher` over the *normalized* code::

    codes = new_backup_codes()                       # show these to the user, once
    digests = [hasher.digest(normalize_backup_code(c)) for c in codes]   # store these
    ...
    hasher.candidates(normalize_backup_code(typed))  # look a typed code up

so that dashes, spaces and letter case do not matter when the code is typed back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote

from authmodels.errors import InsecureParametersError

__all__ = [
    "BACKUP_CODE_ALPHABET",
    "code_at",
    "hotp",
    "new_backup_codes",
    "new_secret",
    "normalize_backup_code",
    "provisioning_uri",
    "time_step",
    "verify",
]

_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
#: Smallest accepted seed, in bytes (RFC 4226 section 4, R6: at least 128 bits).
MIN_SECRET_BYTES = 16
#: Largest window accepted by :func:`verify` (each side of the current step).
MAX_WINDOW = 10

#: 32 symbols without 0/O and 1/I, so a code read aloud or copied by hand is unambiguous.
BACKUP_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#: Symbols per backup code: 10 x 5 bits = 50 bits.
BACKUP_CODE_LENGTH = 10


def _hash_for(algorithm: str) -> str:
    name = algorithm.lower().replace("-", "")
    if name not in _ALGORITHMS:
        raise ValueError(
            f"unsupported OTP algorithm {algorithm!r}: use 'sha1', 'sha256' or 'sha512'"
        )
    return name


def _check_digits(digits: int) -> None:
    if digits < 6:
        raise InsecureParametersError(
            f"one-time passwords need at least 6 digits (RFC 4226), not {digits}"
        )
    if digits > 10:
        raise ValueError(f"one-time passwords have at most 10 digits, not {digits}")


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"the TOTP period must be a positive number of seconds, not {period}")


def hotp(secret: bytes, counter: int, *, digits: int = 6, algorithm: str = "sha1") -> str:
    """The HOTP value of a counter (RFC 4226 section 5.3, dynamic truncation).

    Args:
        secret: the shared seed.
        counter: the moving factor, 0 to 2**64 - 1.
        digits: number of decimal digits, 6 to 10.
        algorithm: the HMAC hash, ``"sha1"`` (the RFC's and authenticator apps' default),
            ``"sha256"`` or ``"sha512"``.

    Returns:
        The code as a string of exactly ``digits`` digits (leading zeros kept).

    Raises:
        InsecureParametersError: ``digits`` is below 6.
        ValueError: an unsupported algorithm, more than 10 digits, or a counter out of range.
    """
    _check_digits(digits)
    if not 0 <= counter < 2**64:
        raise ValueError(f"the HOTP counter must be between 0 and 2**64 - 1, not {counter}")
    mac = hmac.new(secret, struct.pack(">Q", counter), _ALGORITHMS[_hash_for(algorithm)]).digest()
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def _timestamp(now: int | float | datetime) -> int:
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime (e.g. datetime.now(UTC))")
        return int(now.timestamp())
    return int(now)


def time_step(timestamp: int | float | datetime, *, period: int = 30) -> int:
    """The TOTP time step (RFC 6238's T) of a Unix time: ``floor(timestamp / period)``.

    Raises:
        ValueError: ``period`` is not positive, or a naive datetime.
    """
    _check_period(period)
    return _timestamp(timestamp) // period


def code_at(
    secret: bytes,
    timestamp: int,
    *,
    digits: int = 6,
    algorithm: str = "sha1",
    period: int = 30,
) -> str:
    """The TOTP code at a Unix time (RFC 6238 section 4, T0 = 0).

    Args:
        secret: the shared seed.
        timestamp: seconds since the Unix epoch.
        digits: number of digits, 6 to 10.
        algorithm: ``"sha1"``, ``"sha256"`` or ``"sha512"``.
        period: the time step X in seconds.

    Raises:
        InsecureParametersError: ``digits`` is below 6.
        ValueError: an unsupported algorithm, too many digits, or a bad period.
    """
    return hotp(secret, time_step(timestamp, period=period), digits=digits, algorithm=algorithm)


def new_secret(nbytes: int = 20) -> bytes:
    """A random TOTP seed (20 bytes = 160 bits, RFC 4226's recommendation, by default).

    Raises:
        InsecureParametersError: ``nbytes`` is below 16 (128 bits, RFC 4226's minimum).
    """
    if nbytes < MIN_SECRET_BYTES:
        raise InsecureParametersError(
            f"a TOTP seed needs at least {MIN_SECRET_BYTES} bytes (RFC 4226), not {nbytes}"
        )
    return secrets.token_bytes(nbytes)


def verify(
    secret: bytes,
    code: str,
    *,
    now: int | datetime,
    window: int = 1,
    last_used_step: int | None = None,
    digits: int = 6,
    algorithm: str = "sha1",
    period: int = 30,
) -> int | None:
    """Check a TOTP code, allowing for clock drift and refusing replays.

    Every step of ``[step(now) - window, step(now) + window]`` later than ``last_used_step`` is
    compared in constant time, all of them each time.

    Args:
        secret: the shared seed.
        code: the code as typed (spaces are ignored).
        now: the current time: Unix seconds or an aware datetime.
        window: number of steps accepted on each side of the current one (0 to 10).
        last_used_step: the step returned by the last successful verification for this seed;
            it and every earlier step are refused (RFC 6238 section 5.2).
        digits: number of digits, 6 to 10.
        algorithm: ``"sha1"``, ``"sha256"`` or ``"sha512"``.
        period: the time step in seconds.

    Returns:
        The matched time step (store it as the next ``last_used_step``), or None.

    Raises:
        InsecureParametersError: ``digits`` is below 6.
        ValueError: bad ``window``, algorithm, period, digits, or a naive datetime.
    """
    _check_digits(digits)
    hash_name = _hash_for(algorithm)
    if not 0 <= window <= MAX_WINDOW:
        raise ValueError(f"the TOTP window must be between 0 and {MAX_WINDOW}, not {window}")
    current = time_step(now, period=period)
    typed = "".join(code.split())
    well_formed = len(typed) == digits and typed.isascii() and typed.isdigit()
    candidate = typed.encode("ascii") if well_formed else b"\x00" * digits
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if step < 0 or (last_used_step is not None and step <= last_used_step):
            continue
        expected = hotp(secret, step, digits=digits, algorithm=hash_name).encode("ascii")
        if hmac.compare_digest(expected, candidate) and well_formed:
            matched = step
    return matched


def provisioning_uri(
    secret: bytes,
    *,
    account_name: str,
    issuer: str,
    digits: int = 6,
    algorithm: str = "sha1",
    period: int = 30,
) -> str:
    """The ``otpauth://`` URI that authenticator apps read from a QR code.

    Format (Google Authenticator's Key URI format)::

        otpauth://totp/Issuer:account?secret=BASE32&issuer=Issuer&algorithm=SHA1&digits=6&period=30

    The label parts and parameters are percent-encoded (spaces as ``%20``); the secret is
    unpadded base32.

    Args:
        secret: the shared seed.
        account_name: the user's name as shown in the app (e.g. the e-mail address).
        issuer: the service name.
        digits: number of digits, 6 to 10.
        algorithm: ``"sha1"``, ``"sha256"`` or ``"sha512"``.
        period: the time step in seconds.

    Raises:
        ValueError: ``issuer`` or ``account_name`` is empty or contains ``":"``, or a bad
            algorithm, digits or period.
    """
    _check_digits(digits)
    _check_period(period)
    hash_name = _hash_for(algorithm)
    for name, value in (("issuer", issuer), ("account_name", account_name)):
        if not value or ":" in value:
            raise ValueError(f"the TOTP {name} must be non-empty and must not contain ':'")
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    encoded_secret = base64.b32encode(secret).decode("ascii").rstrip("=")
    query = "&".join(
        (
            f"secret={encoded_secret}",
            f"issuer={quote(issuer, safe='')}",
            f"algorithm={hash_name.upper()}",
            f"digits={digits}",
            f"period={period}",
        )
    )
    return f"otpauth://totp/{label}?{query}"


def new_backup_codes(count: int = 10) -> list[str]:
    """Random single-use backup codes, shown as ``XXXXX-XXXXX``.

    Each code has 10 symbols from :data:`BACKUP_CODE_ALPHABET` (32 symbols, no 0/O/1/I):
    50 random bits. Store ``TokenHasher.digest(normalize_backup_code(code))`` for each, never
    the code.

    Args:
        count: number of codes (1 to 100).

    Raises:
        ValueError: ``count`` is out of range.
    """
    if not 1 <= count <= 100:
        raise ValueError(f"new_backup_codes: count must be between 1 and 100, not {count}")
    codes: list[str] = []
    while len(codes) < count:
        symbols = "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        code = f"{symbols[:5]}-{symbols[5:]}"
        if code not in codes:
            codes.append(code)
    return codes


def normalize_backup_code(code: str) -> str:
    """The canonical form of a typed backup code: no dashes or whitespace, upper case.

    ``"abcde-fghjk"``, ``"ABCDE FGHJK"`` and ``"ABCDEFGHJK"`` all give ``"ABCDEFGHJK"``.
    """
    return "".join(code.replace("-", "").split()).upper()
