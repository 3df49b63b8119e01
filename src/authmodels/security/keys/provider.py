"""The provider interface: where the data keys of the three rings come from.

A :class:`KeyProvider` gives the rings (:class:`KeyRings`) once, at start-up. The ``env``
provider reads them from the environment; the ``file`` and ``pkcs11`` providers unwrap them from
the wrapped-key store with a :class:`KeyEncryptionKey` that never leaves its file or its token.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from authmodels.config import KeyRing

__all__ = ["RING_SIZES", "KeyEncryptionKey", "KeyProvider", "KeyRings", "WrappedKey"]

#: The rings, and the size of the data keys made for each (AES-256 for encryption; HMAC-SHA256
#: keys of one block's worth of entropy for the others).
RING_SIZES: dict[str, int] = {"hash": 32, "encryption": 32, "privacy": 32}


@dataclass(frozen=True)
class KeyRings:
    """The data-key rings a provider gives; a ring that is not configured is None.

    Attributes:
        hash: HMAC ring of token and code digests.
        encryption: AES-256-GCM ring of encrypted columns.
        privacy: HMAC ring of IP / user-agent hashes (the hash ring is used when None).
    """

    hash: KeyRing | None
    encryption: KeyRing | None
    privacy: KeyRing | None

    def ring(self, name: str) -> KeyRing | None:
        """The ring called ``name`` (one of :data:`RING_SIZES`)."""
        ring: KeyRing | None = getattr(self, name)
        return ring


@dataclass(frozen=True, repr=False)
class WrappedKey:
    """A data key as the store keeps it: wrapped (RFC 5649) under a key-encryption key.

    Attributes:
        kek: the id of the key-encryption key that wrapped it (a token object's label, or a key
            id of the key file).
        wrapped: the RFC 5649 ciphertext (8 bytes longer than the key, rounded up to 8).
    """

    kek: str
    wrapped: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(kek={self.kek!r}, {len(self.wrapped)} bytes)"


class KeyProvider(ABC):
    """Where the key rings come from (``AUTHMODELS_KEY_PROVIDER``)."""

    #: ``"env"``, ``"file"`` or ``"pkcs11"``.
    kind: str

    @abstractmethod
    def load(self) -> KeyRings:
        """Every ring, with the data keys in clear (in memory only).

        Raises:
            KeyProviderError: the keys cannot be had (a subclass says why).
            ConfigurationError: a ring is malformed.
        """

    @abstractmethod
    def describe(self) -> str:
        """The provider for messages and logs: what it is and where, never a secret."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class KeyEncryptionKey(ABC):
    """A key-encryption key (KEK): wraps data keys, unwraps them, never gives itself out.

    A KEK source may hold several KEKs by id (a key file's entries, a token's objects): data
    keys are wrapped under :attr:`current`, and each is unwrapped under the KEK its store entry
    names, so that a KEK rotation never stops a running deployment.
    """

    #: ``"file"`` or ``"pkcs11"``.
    kind: ClassVar[str]

    @property
    @abstractmethod
    def current(self) -> str:
        """The id of the KEK new data keys are wrapped under."""

    @abstractmethod
    def describe(self) -> str:
        """The KEK source for messages and logs (a path, a token and object label)."""

    @abstractmethod
    def wrap(self, keys: Sequence[bytes]) -> list[WrappedKey]:
        """Wrap each data key under :attr:`current` (RFC 5649).

        Raises:
            KeyProviderError: the KEK cannot be reached or used.
        """

    @abstractmethod
    def unwrap(self, wrapped: Sequence[WrappedKey]) -> list[bytes]:
        """Unwrap each data key under the KEK it names.

        Raises:
            KeyObjectNotFoundError: a named KEK does not exist.
            KeyUnwrapError: a wrapped key does not unwrap under its KEK.
            KeyProviderError: the KEK source cannot be reached.
        """

    @abstractmethod
    def create(self, kek_id: str) -> None:
        """Make a new KEK called ``kek_id`` (in the token, or in the key file).

        Raises:
            KeyManagementError: a KEK of that id exists.
        """

    @abstractmethod
    def destroy(self, kek_id: str) -> None:
        """Destroy the KEK ``kek_id`` (callers check first that nothing is wrapped under it).

        Raises:
            KeyObjectNotFoundError: there is no such KEK.
        """
