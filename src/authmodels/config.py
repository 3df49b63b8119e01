"""Settings read from the environment: database URL, key rings, the embedded server's folder.

Key rings are written as comma-separated ``key_id:base64key`` pairs, oldest first::

    AUTHMODELS_HASH_KEYS="2025-01:3q2+7w...==,2026-06:q83v...=="

The last pair is the *current* key (used for new digests and ciphertexts) unless
``AUTHMODELS_HASH_KEY_CURRENT`` / ``AUTHMODELS_ENCRYPTION_KEY_CURRENT`` names another one; every
listed key is still accepted when reading, so a key can be rotated without logging anyone out.
Key ids are 1 to 32 characters from ``A-Z a-z 0-9 _ - .``. Keys are standard or URL-safe base64.

================================  ===========================================================
variable                          meaning
================================  ===========================================================
AUTHMODELS_DATABASE_URL           database URL (``DATABASE_URL`` is read when it is unset)
AUTHMODELS_HASH_KEYS              HMAC-SHA256 key ring for token and code digests (>= 32 bytes)
AUTHMODELS_HASH_KEY_CURRENT       key id of the hash key for new digests (default: last)
AUTHMODELS_ENCRYPTION_KEYS        AES-256-GCM key ring for reversible secrets (32-byte keys)
AUTHMODELS_ENCRYPTION_KEY_CURRENT key id of the encryption key for new values (default: last)
AUTHMODELS_PRIVACY_KEYS           HMAC key ring for IP / user-agent hashing (default: hash keys)
AUTHMODELS_KEY_PROVIDER           where the rings come from: ``env`` (default), ``file:PATH``,
                                  ``pkcs11:...`` (:mod:`authmodels.security.keys`)
AUTHMODELS_WRAPPED_KEYS           the wrapped-key store of the ``file`` and ``pkcs11`` providers
AUTHMODELS_PKCS11_PIN             the token's user PIN (unless the URI has ``pin-source=``)
AUTHMODELS_HOME                   folder of the embedded PostgreSQL (default: found upward)
================================  ===========================================================

With ``AUTHMODELS_KEY_PROVIDER`` set to ``file:...`` or ``pkcs11:...``, the rings are not in the
environment: :meth:`Settings.from_env` unwraps them from the store once per process
(:func:`authmodels.security.keys.load_key_rings`), and refuses ring variables set beside it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from authmodels.errors import ConfigurationError, MissingKeyError

HASH_KEYS_VAR = "AUTHMODELS_HASH_KEYS"
HASH_KEY_CURRENT_VAR = "AUTHMODELS_HASH_KEY_CURRENT"
ENCRYPTION_KEYS_VAR = "AUTHMODELS_ENCRYPTION_KEYS"
ENCRYPTION_KEY_CURRENT_VAR = "AUTHMODELS_ENCRYPTION_KEY_CURRENT"
PRIVACY_KEYS_VAR = "AUTHMODELS_PRIVACY_KEYS"
DATABASE_URL_VARS = ("AUTHMODELS_DATABASE_URL", "DATABASE_URL")
HOME_VAR = "AUTHMODELS_HOME"
KEY_PROVIDER_VAR = "AUTHMODELS_KEY_PROVIDER"
WRAPPED_KEYS_VAR = "AUTHMODELS_WRAPPED_KEYS"
PKCS11_PIN_VAR = "AUTHMODELS_PKCS11_PIN"
#: The variables of the ``env`` provider, refused beside another provider.
RING_VARS = (
    HASH_KEYS_VAR, HASH_KEY_CURRENT_VAR, ENCRYPTION_KEYS_VAR, ENCRYPTION_KEY_CURRENT_VAR,
    PRIVACY_KEYS_VAR,
)  # fmt: skip

KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


@dataclass(frozen=True, repr=False)
class KeyRing:
    """An ordered set of secret keys, each named by a key id.

    Its ``repr`` names the key ids, never the keys.

    Attributes:
        keys: key id -> key bytes, oldest first.
        current: the key id used for new values.
        source: where the ring was read from (an environment variable, a wrapped-key store), for
            error messages.
    """

    keys: Mapping[str, bytes]
    current: str
    source: str = ""

    def __post_init__(self) -> None:
        if not self.keys:
            raise MissingKeyError(f"{self.source or 'key ring'} holds no key")
        if self.current not in self.keys:
            raise ConfigurationError(
                f"current key id {self.current!r} is not in {self.source or 'the key ring'} "
                f"(it has {', '.join(self.keys)})"
            )

    @property
    def current_key(self) -> bytes:
        """The bytes of the current key."""
        return self.keys[self.current]

    def __repr__(self) -> str:
        ids, current, source = list(self.keys), self.current, self.source
        return f"KeyRing(key_ids={ids!r}, current={current!r}, source={source!r})"


def parse_key_ring(
    value: str,
    *,
    source: str,
    current: str | None = None,
    min_bytes: int = 32,
    exact_bytes: int | None = None,
) -> KeyRing:
    """Parse ``"kid:base64,kid:base64"`` into a :class:`KeyRing`.

    Args:
        value: the variable's text.
        source: the variable name, quoted in error messages.
        current: key id for new values; the last listed key when None.
        min_bytes: smallest accepted key size.
        exact_bytes: required key size, when the algorithm fixes one (AES-256: 32).

    Raises:
        ConfigurationError: a pair is malformed, a key id repeats, or a key has the wrong size.
        MissingKeyError: the value holds no pair.
    """
    keys: dict[str, bytes] = {}
    for number, raw_pair in enumerate(value.split(","), start=1):
        pair = raw_pair.strip()
        if not pair:
            continue
        kid, sep, encoded = pair.partition(":")
        if not sep or not KEY_ID_PATTERN.fullmatch(kid):
            # the entry is not quoted: without its colon, it may be a key
            raise ConfigurationError(
                f"{source}: entry {number} is not 'key_id:base64key' with a key id of 1-32 "
                "characters from A-Z a-z 0-9 _ - ."
            )
        if kid in keys:
            raise ConfigurationError(f"{source}: key id {kid!r} appears twice")
        try:
            padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
            key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(f"{source}: the key of {kid!r} is not valid base64") from exc
        if exact_bytes is not None and len(key) != exact_bytes:
            raise ConfigurationError(
                f"{source}: the key of {kid!r} is {len(key)} bytes; it must be {exact_bytes}"
            )
        if len(key) < min_bytes:
            raise ConfigurationError(
                f"{source}: the key of {kid!r} is {len(key)} bytes; it must be at least {min_bytes}"
            )
        keys[kid] = key
    if not keys:
        raise MissingKeyError(f"{source} is empty: set it to 'key_id:base64key'")
    return KeyRing(keys=keys, current=current or list(keys)[-1], source=source)


def format_key_ring(keys: Mapping[str, bytes]) -> str:
    """The inverse of :func:`parse_key_ring` (tests, ``authmodels keys generate``)."""
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys.items())


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    return value if value and value.strip() else None


def _provider_rings(
    environ: Mapping[str, str],
) -> tuple[KeyRing | None, KeyRing | None, KeyRing | None]:
    """The (hash, encryption, privacy) rings of a ``file`` or ``pkcs11`` provider."""
    beside = [name for name in RING_VARS if _env(name, environ)]
    if beside:
        raise ConfigurationError(
            f"{', '.join(beside)} {'is' if len(beside) == 1 else 'are'} set while "
            f"{KEY_PROVIDER_VAR} names another provider: the keys would still be in the "
            "environment. Remove them (`authmodels keys import` wraps them into the store first)."
        )
    # security.keys builds on KeyRing and parse_key_ring above: imported here, not at the top
    from authmodels.security.keys import load_key_rings

    rings = load_key_rings(environ)
    return rings.hash, rings.encryption, rings.privacy


@dataclass(frozen=True)
class Settings:
    """The library's settings, usually built by :meth:`Settings.from_env`.

    Key rings are optional here: reading a ring that is not configured raises
    :class:`~authmodels.errors.MissingKeyError` naming the variable, at the point of use.
    """

    database_url: str | None = None
    hash_keys: KeyRing | None = None
    encryption_keys: KeyRing | None = None
    privacy_keys: KeyRing | None = None
    home: Path | None = None
    """``AUTHMODELS_HOME``; None: the embedded server's folder is found upward
    (:func:`authmodels.db.embedded_home`)."""
    key_provider: str = "env"
    """``AUTHMODELS_KEY_PROVIDER``: where the rings came from (it holds no secret: a PIN in the
    URI is refused)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        url = next((v for v in (_env(n, env) for n in DATABASE_URL_VARS) if v), None)
        home = Path(home_value) if (home_value := _env(HOME_VAR, env)) else None
        provider = _env(KEY_PROVIDER_VAR, env)
        if provider is not None and provider.strip() != "env":
            hash_keys, encryption_keys, privacy_keys = _provider_rings(env)
            return cls(
                database_url=url,
                hash_keys=hash_keys,
                encryption_keys=encryption_keys,
                privacy_keys=privacy_keys or hash_keys,
                home=home,
                key_provider=provider.strip(),
            )
        hash_value = _env(HASH_KEYS_VAR, env)
        enc_value = _env(ENCRYPTION_KEYS_VAR, env)
        priv_value = _env(PRIVACY_KEYS_VAR, env)
        hash_keys = (
            parse_key_ring(
                hash_value, source=HASH_KEYS_VAR, current=_env(HASH_KEY_CURRENT_VAR, env)
            )
            if hash_value
            else None
        )
        return cls(
            database_url=url,
            hash_keys=hash_keys,
            encryption_keys=(
                parse_key_ring(
                    enc_value,
                    source=ENCRYPTION_KEYS_VAR,
                    current=_env(ENCRYPTION_KEY_CURRENT_VAR, env),
                    exact_bytes=32,
                )
                if enc_value
                else None
            ),
            privacy_keys=(
                parse_key_ring(priv_value, source=PRIVACY_KEYS_VAR) if priv_value else hash_keys
            ),
            home=home,
        )

    def require_hash_keys(self) -> KeyRing:
        """The hash key ring, or a :class:`MissingKeyError` that names the variable to set."""
        if self.hash_keys is None:
            self._refuse_missing_wrapped("hash")
            raise MissingKeyError(
                f"{HASH_KEYS_VAR} is not set: token and code digests need an HMAC key. Set it to "
                "'key_id:base64key' with a key of at least 32 random bytes "
                "(`authmodels keys generate` prints one)."
            )
        return self.hash_keys

    def require_encryption_keys(self) -> KeyRing:
        """The encryption key ring, or a :class:`MissingKeyError` that names the variable."""
        if self.encryption_keys is None:
            self._refuse_missing_wrapped("encryption")
            raise MissingKeyError(
                f"{ENCRYPTION_KEYS_VAR} is not set: encrypted columns need an AES-256 key. Set it "
                "to 'key_id:base64key' with a 32-byte key (`authmodels keys generate` prints one)."
            )
        return self.encryption_keys

    def require_privacy_keys(self) -> KeyRing:
        """The IP / user-agent hashing key ring (falls back to the hash key ring)."""
        if self.privacy_keys is None:
            self._refuse_missing_wrapped("hash")
            raise MissingKeyError(
                f"{PRIVACY_KEYS_VAR} (or {HASH_KEYS_VAR}) is not set: IP addresses and user "
                "agents are stored only as keyed hashes. Set one of them to 'key_id:base64key'."
            )
        return self.privacy_keys

    def _refuse_missing_wrapped(self, ring: str) -> None:
        if self.key_provider != "env":
            raise MissingKeyError(
                f"the wrapped-key store ({WRAPPED_KEYS_VAR}) of {KEY_PROVIDER_VAR} has no {ring} "
                f"key: `authmodels keys create {ring}` makes one"
            )
