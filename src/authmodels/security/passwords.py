"""Password hashing with Argon2id (argon2-cffi), with upgrade and timing-safe helpers.

The defaults are OWASP's minimum Argon2id configuration (19 MiB of memory, 2 iterations,
1 lane); lower parameters are refused unless ``allow_weak=True`` is passed, which is meant for
test suites only.

Accounts without a password (passkey-only, or created by an administrator) store
:data:`UNUSABLE_PASSWORD`, which starts with ``"!"`` and so can never be an Argon2 hash;
:meth:`PasswordHasher.verify` of it returns False after spending the time of a real
verification, so the response time does not reveal which accounts have a password.
"""

from __future__ import annotations

import contextlib
import secrets
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authmodels.errors import InsecureParametersError, MalformedHashError

__all__ = [
    "OWASP_MEMORY_COST",
    "OWASP_PARALLELISM",
    "OWASP_TIME_COST",
    "UNUSABLE_PASSWORD",
    "UNUSABLE_PREFIX",
    "PasswordHasher",
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
            stored: the stored value: an Argon2 hash, or an unusable value or None (which never
                match and cost the same time as :meth:`verify_dummy`).
            password: the password as typed.

        Returns:
            True when the password matches; False otherwise (never an exception for a wrong
            password).

        Raises:
            MalformedHashError: ``stored`` is neither an Argon2 hash nor an unusable value.
        """
        if stored is None or not is_usable(stored):
            return self.verify_dummy(password)
        try:
            return self._hasher.verify(stored, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as exc:
            raise MalformedHashError(
                f"the stored password hash cannot be read ({str(exc) or 'not an Argon2 hash'}): "
                f"it starts with {stored[:12]!r}; reset the account's password"
            ) from None

    def needs_rehash(self, stored: str | None) -> bool:
        """Whether a stored hash was made with other parameters than this hasher's.

        Unusable values never need a rehash.

        Raises:
            MalformedHashError: ``stored`` is neither an Argon2 hash nor an unusable value.
        """
        if stored is None or not is_usable(stored):
            return False
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
            ``(ok, new_hash)``: ``new_hash`` is the hash to store in place of ``stored``, or
            None when nothing needs storing (wrong password, or parameters unchanged).

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
