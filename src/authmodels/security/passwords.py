"""Password hashing with Argon2id (argon2-cffi), with upgrade and timing-safe helpers.

The defaults are OWASP's minimum Argon2id configuration (19 MiB of memory, 2 iterations,
1 lane); lower parameters are refused unless ``allow_weak=True`` is passed, which is meant for
test suites only.

Accounts without a password (passkey-only, or created by an administrator) store
:data:`UNUSABLE_PASSWORD`, which starts with ``"!"`` and so can never be an Argon2 hash;
:meth:`PasswordHasher.verify` of it returns False after spending the time of a real
verification, so the response time does not reveal which accounts have a password.

**Legacy hashes.** Accounts brought from another system keep the hash they had until their next
successful login, when :meth:`PasswordHasher.verify_and_update` returns an Argon2id hash to store
in its place (:func:`authmodels.services.passwords.authenticate` does it in the login's own
UPDATE). The formats read (:data:`LEGACY_SCHEMES`), the ones Python services' databases hold:

- ``bcrypt``: ``$2a$``, ``$2b$``, ``$2y$`` (seed 004's, and most Node.js and Ruby systems), checked
  with the ``bcrypt`` package. bcrypt reads at most 72 bytes of a password, and the systems that
  made these hashes silently ignored the rest: so does the check (the Argon2id hash that replaces
  it takes the whole password);
- ``django_pbkdf2_sha256``: Django's default, ``pbkdf2_sha256$<iterations>$<salt>$<base64>``;
- ``passlib_pbkdf2_sha256``: passlib's ``$pbkdf2-sha256$<rounds>$<ab64 salt>$<ab64 hash>``;
- ``django_argon2``: Django's Argon2 hasher, ``argon2$argon2id$...`` (an Argon2 PHC string behind
  Django's prefix).

PBKDF2 is computed with :func:`hashlib.pbkdf2_hmac` and compared in constant time. A hasher made
with ``legacy_schemes=()`` reads Argon2 only (for a deployment whose legacy hashes are gone:
:func:`authmodels.services.passwords.password_hash_schemes` counts them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authmodels.errors import InsecureParametersError, MalformedHashError

__all__ = [
    "LEGACY_SCHEMES",
    "OWASP_MEMORY_COST",
    "OWASP_PARALLELISM",
    "OWASP_TIME_COST",
    "SCHEME_PREFIXES",
    "UNUSABLE_PASSWORD",
    "UNUSABLE_PREFIX",
    "PasswordHasher",
    "hash_scheme",
    "is_usable",
    "make_unusable",
]

#: OWASP's minimum Argon2id memory cost, in KiB (19 MiB).
OWASP_MEMORY_COST = 19456
#: OWASP's minimum Argon2id iteration count at that memory cost.
OWASP_TIME_COST = 2
#: OWASP's Argon2id degree of parallelism.
OWASP_PARALLELISM = 1
#: Smallest salt and hash lengths accepted without ``allow_weak`` (RFC 9106 recommends 16).
MIN_SALT_LEN = 16
MIN_HASH_LEN = 16

#: First character of every unusable password value; never the start of an Argon2 hash.
UNUSABLE_PREFIX = "!"
#: The value stored for accounts that cannot log in with a password.
UNUSABLE_PASSWORD = "!unusable"  # noqa: S105 - a marker, not a password


#: Most PBKDF2 iterations a stored legacy hash may ask for (Django 5.2 uses 1,000,000): a value
#: beyond it is a damaged row, not a hash to spend minutes on.
MAX_PBKDF2_ITERATIONS = 10_000_000
#: The bytes of a password bcrypt reads.
BCRYPT_MAX_BYTES = 72


#: A whole bcrypt hash: version, cost, 22 characters of salt and 31 of hash.
_BCRYPT_FORM = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


def _bcrypt(stored: str, password: str) -> bool:
    if not _BCRYPT_FORM.fullmatch(stored):
        raise ValueError("not a whole bcrypt hash")
    # the systems that made these hashes ignored what follows byte 72; bcrypt >= 5 refuses it
    return bcrypt.checkpw(password.encode("utf-8")[:BCRYPT_MAX_BYTES], stored.encode("ascii"))


def _pbkdf2_sha256(password: str, salt: bytes, iterations: str, expected: bytes) -> bool:
    if not iterations.isdigit() or not 0 < int(iterations) <= MAX_PBKDF2_ITERATIONS:
        raise ValueError(f"PBKDF2 iterations {iterations[:12]!r} out of range")
    derived = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, int(iterations),
                                  dklen=len(expected))  # fmt: skip
    return hmac.compare_digest(derived, expected)


def _django_pbkdf2_sha256(stored: str, password: str) -> bool:
    _, iterations, salt, encoded = stored.split("$")
    return _pbkdf2_sha256(password, salt.encode("utf-8"), iterations, base64.b64decode(encoded))


def _ab64(value: str) -> bytes:
    """passlib's "adapted base64": ``.`` for ``+``, no padding."""
    value = value.replace(".", "+")
    return base64.b64decode(value + "=" * (-len(value) % 4))


def _passlib_pbkdf2_sha256(stored: str, password: str) -> bool:
    _, _, iterations, salt, encoded = stored.split("$")
    return _pbkdf2_sha256(password, _ab64(salt), iterations, _ab64(encoded))


#: Legacy formats :class:`PasswordHasher` reads: scheme -> (prefixes, check).
_LEGACY: dict[str, tuple[tuple[str, ...], Callable[[str, str], bool]]] = {
    "bcrypt": (("$2a$", "$2b$", "$2y$"), _bcrypt),
    "django_pbkdf2_sha256": (("pbkdf2_sha256$",), _django_pbkdf2_sha256),
    "passlib_pbkdf2_sha256": (("$pbkdf2-sha256$",), _passlib_pbkdf2_sha256),
    "django_argon2": (("argon2$argon2",), lambda stored, password: False),  # see verify
}
#: The legacy schemes read by default (all of them).
LEGACY_SCHEMES = tuple(_LEGACY)
#: Every scheme a stored value may be of, by the prefixes that tell it (``unknown`` otherwise):
#: :func:`hash_scheme` in Python, ``password_hash_schemes`` in SQL.
SCHEME_PREFIXES: dict[str, tuple[str, ...]] = {
    "unusable": (UNUSABLE_PREFIX,),
    "argon2": ("$argon2",),
    **{scheme: prefixes for scheme, (prefixes, _) in _LEGACY.items()},
}


def hash_scheme(stored: str | None) -> str:
    """The scheme of a stored value: ``argon2``, a name of :data:`LEGACY_SCHEMES`,
    ``unusable`` (None or :data:`UNUSABLE_PASSWORD`), or ``unknown``."""
    if stored is None:
        return "unusable"
    for scheme, prefixes in SCHEME_PREFIXES.items():
        if stored.startswith(prefixes):
            return scheme
    return "unknown"


def make_unusable() -> str:
    """The value to store for an account that has no password (:data:`UNUSABLE_PASSWORD`)."""
    return UNUSABLE_PASSWORD


def is_usable(stored: str | None) -> bool:
    """Whether a stored value can match a password (False for None and unusable values).

    This looks at the value's form only: a malformed hash counts as usable here and makes
    :meth:`PasswordHasher.verify` raise :class:`~authmodels.errors.MalformedHashError`.
    """
    return stored is not None and not stored.startswith(UNUSABLE_PREFIX)


class PasswordHasher:
    """Argon2id password hashing with OWASP's minimum as the floor.

    Args:
        time_cost: iterations (at least 2).
        memory_cost: memory in KiB (at least 19456, i.e. 19 MiB).
        parallelism: lanes (at least 1).
        hash_len: length of the hash in bytes (at least 16).
        salt_len: length of the random salt in bytes (at least 16).
        allow_weak: accept parameters below those floors (for tests, never in production).
        legacy_schemes: the legacy formats :meth:`verify` reads (see the module docstring);
            ``()`` for Argon2 only.

    Raises:
        InsecureParametersError: a parameter is below its floor and ``allow_weak`` is False, or
            is not a positive number at all.
    """

    def __init__(
        self,
        time_cost: int = OWASP_TIME_COST,
        memory_cost: int = OWASP_MEMORY_COST,
        parallelism: int = OWASP_PARALLELISM,
        hash_len: int = 32,
        salt_len: int = 16,
        *,
        allow_weak: bool = False,
        legacy_schemes: Iterable[str] = LEGACY_SCHEMES,
    ) -> None:
        floors = {
            "time_cost": (time_cost, OWASP_TIME_COST),
            "memory_cost": (memory_cost, OWASP_MEMORY_COST),
            "parallelism": (parallelism, OWASP_PARALLELISM),
            "hash_len": (hash_len, MIN_HASH_LEN),
            "salt_len": (salt_len, MIN_SALT_LEN),
        }
        for name, (value, floor) in floors.items():
            if value < 1:
                raise InsecureParametersError(f"PasswordHasher: {name}={value} must be positive")
            if value < floor and not allow_weak:
                raise InsecureParametersError(
                    f"PasswordHasher: {name}={value} is below the minimum of {floor} (OWASP "
                    "Argon2id: m=19456 KiB, t=2, p=1); raise it, or pass allow_weak=True in tests"
                )
        if memory_cost < 8 * parallelism:
            raise InsecureParametersError(
                f"PasswordHasher: memory_cost={memory_cost} KiB must be at least 8 x parallelism"
            )
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )
        self.legacy_schemes = tuple(legacy_schemes)
        unknown = set(self.legacy_schemes) - set(_LEGACY)
        if unknown:
            raise InsecureParametersError(
                f"PasswordHasher: unknown legacy scheme(s) {sorted(unknown)}; known: "
                f"{', '.join(LEGACY_SCHEMES)}"
            )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    @property
    def parameters(self) -> argon2.Parameters:
        """The Argon2 parameters of new hashes."""
        h = self._hasher
        return argon2.Parameters(
            type=argon2.Type.ID,
            version=argon2.low_level.ARGON2_VERSION,
            salt_len=h.salt_len,
            hash_len=h.hash_len,
            time_cost=h.time_cost,
            memory_cost=h.memory_cost,
            parallelism=h.parallelism,
        )

    @staticmethod
    def make_unusable() -> str:
        """Same as the module function :func:`make_unusable`."""
        return make_unusable()

    @staticmethod
    def is_usable(stored: str | None) -> bool:
        """Same as the module function :func:`is_usable`."""
        return is_usable(stored)

    def hash(self, password: str) -> str:
        """Hash a password with a fresh random salt.

        Returns:
            The PHC string, e.g. ``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``.
        """
        return self._hasher.hash(password)

    def _dummy(self) -> str:
        """A hash of a random password made with this hasher's parameters (computed once)."""
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    def verify_dummy(self, password: str) -> bool:
        """Spend the time of a real verification, then return False.

        Call it when no account matches the login name, so that "no such user" and "wrong
        password" take the same time. It verifies ``password`` against a hash of a random
        password made with the same parameters (computed on first use).

        Returns:
            Always False.
        """
        with contextlib.suppress(VerificationError):
            self._hasher.verify(self._dummy(), password)
        return False

    def verify(self, stored: str | None, password: str) -> bool:
        """Check a password against a stored hash.

        Args:
            stored: the stored value: an Argon2 hash, a hash of one of :attr:`legacy_schemes`,
                or an unusable value or None (which never match and cost the same time as
                :meth:`verify_dummy`).
            password: the password as typed.

        Returns:
            True when the password matches; False otherwise (never an exception for a wrong
            password).

        Raises:
            MalformedHashError: ``stored`` is none of those (or a damaged one of them).
        """
        if stored is None or not is_usable(stored):
            return self.verify_dummy(password)
        scheme = hash_scheme(stored)
        if scheme == "django_argon2" and scheme in self.legacy_schemes:
            stored, scheme = stored[len("argon2") :], "argon2"
        try:
            if scheme == "argon2":
                return self._hasher.verify(stored, password)
            if scheme in self.legacy_schemes:
                return _LEGACY[scheme][1](stored, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError, ValueError, binascii.Error) as exc:
            raise MalformedHashError(
                f"the stored password hash cannot be read ({str(exc) or scheme}): it starts "
                f"with {stored[:12]!r}; reset the account's password"
            ) from None
        raise MalformedHashError(
            f"the stored password hash is of a scheme this hasher does not read ({scheme}): it "
            f"starts with {stored[:12]!r}; reset the account's password"
        )

    def needs_rehash(self, stored: str | None) -> bool:
        """Whether a stored hash should be replaced: a legacy one always, an Argon2 one made
        with other parameters than this hasher's.

        Unusable values never need a rehash.

        Raises:
            MalformedHashError: ``stored`` is neither a hash this hasher reads nor an unusable
                value.
        """
        if stored is None or not is_usable(stored):
            return False
        if hash_scheme(stored) in self.legacy_schemes:
            return True
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, VerificationError, ValueError) as exc:
            raise MalformedHashError(
                f"the stored password hash cannot be read ({str(exc) or 'not an Argon2 hash'}): "
                f"it starts with {stored[:12]!r}"
            ) from None

    def verify_and_update(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """Check a password and, when it is right and the parameters changed, rehash it.

        Returns:
            ``(ok, new_hash)``: ``new_hash`` is the hash to store in place of ``stored`` (an
            Argon2id hash of the password: always for a legacy hash), or None when nothing needs
            storing (wrong password, or parameters unchanged).

        Raises:
            MalformedHashError: ``stored`` is neither an Argon2 hash nor an unusable value.
        """
        if not self.verify(stored, password):
            return False, None
        if self.needs_rehash(stored):
            return True, self.hash(password)
        return True, None

    def __repr__(self) -> str:
        h = self._hasher
        return (
            f"{type(self).__name__}(time_cost={h.time_cost}, memory_cost={h.memory_cost}, "
            f"parallelism={h.parallelism}, hash_len={h.hash_len}, salt_len={h.salt_len})"
        )
