"""Envelope encryption of the data keys: the ``file`` and ``pkcs11`` providers.

The data keys of the rings (hash, encryption, privacy) are kept only wrapped, in the
wrapped-key store (:mod:`authmodels.security.keys.store`), each under a key-encryption key
(KEK) of a :class:`~authmodels.security.keys.provider.KeyEncryptionKey`. :meth:`load` unwraps
them once at start-up; they then live in this process's memory only.

The operations of ``authmodels keys`` are here too; none of them returns, logs or prints a key:

- :meth:`WrappingKeyProvider.create`: a new random data key, wrapped, added to a ring (current
  when it is the ring's first key, else staged until :meth:`rotate` makes it current);
- :meth:`rotate`: make a staged key current; :meth:`retire`: remove a key that is not current;
- :meth:`import_rings`: wrap rings that were in the environment (moving off the ``env`` provider);
- :meth:`rewrap`: unwrap every data key and wrap it under the current KEK (a KEK rotation: no row
  of the database changes, since the data keys do not).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from authmodels.config import KEY_ID_PATTERN, KeyRing
from authmodels.errors import KeyFileError, KeyManagementError
from authmodels.security.keys.files import file_lock
from authmodels.security.keys.provider import (
    RING_SIZES,
    KeyEncryptionKey,
    KeyProvider,
    KeyRings,
)
from authmodels.security.keys.store import StoredKey, WrappedKeyStore

__all__ = ["WrappingKeyProvider"]

log = logging.getLogger(__name__)


def _check_ring(ring: str) -> None:
    if ring not in RING_SIZES:
        raise KeyManagementError(f"{ring!r} is not a ring: use one of {', '.join(RING_SIZES)}")


def _check_id(kid: str) -> None:
    if not KEY_ID_PATTERN.fullmatch(kid):
        raise KeyManagementError(
            f"key id {kid!r} is invalid: use 1-32 characters from A-Z a-z 0-9 _ - ."
        )


class WrappingKeyProvider(KeyProvider):
    """Data keys unwrapped from a store by a KEK.

    Args:
        kek: the key-encryption keys (a key file, a PKCS#11 token).
        store: the wrapped-key store's file.
    """

    def __init__(self, kek: KeyEncryptionKey, store: Path) -> None:
        self.kek = kek
        self.store_path = store
        self.kind = kek.kind

    def describe(self) -> str:
        """The KEK source and the store."""
        return f"{self.kek.describe()}, wrapped keys in {self.store_path}"

    def store(self, *, missing_ok: bool = False) -> WrappedKeyStore:
        """The store as it is on disk (no key is unwrapped)."""
        return WrappedKeyStore.read(self.store_path, missing_ok=missing_ok)

    def store_bytes(self) -> bytes:
        """The store file's bytes, read as :meth:`store` reads them (its mode checked)."""
        return WrappedKeyStore.read_bytes(self.store_path)

    def load(self) -> KeyRings:
        """Unwrap every data key of the store; check each ring's sizes.

        Raises:
            KeyFileError: the store is missing or malformed, or a key has the wrong size.
            KeyObjectNotFoundError: a KEK named by the store does not exist.
            KeyUnwrapError: a key does not unwrap.
            KeyProviderError: the KEK source cannot be reached.
        """
        store = self.store()
        clear = self.kek.unwrap([key.wrapped for key in store.keys])
        rings: dict[str, KeyRing] = {}
        for name, size in RING_SIZES.items():
            members = {k.id: v for k, v in zip(store.keys, clear, strict=True) if k.ring == name}
            if not members:
                continue
            for kid, value in members.items():
                if len(value) < size or (name == "encryption" and len(value) != size):
                    raise KeyFileError(
                        f"key {kid!r} of the {name} ring in {self.store_path} unwraps to "
                        f"{len(value)} bytes; the {name} ring needs "
                        f"{'exactly' if name == 'encryption' else 'at least'} {size}"
                    )
            rings[name] = KeyRing(
                members, store.current[name], source=f"the {name} ring of {self.store_path}"
            )
        log.info(
            "unwrapped %d data key(s) (%s) with %s",
            len(clear),
            "; ".join(f"{name}: {', '.join(ring.keys)}" for name, ring in rings.items()),
            self.describe(),
        )
        return KeyRings(rings.get("hash"), rings.get("encryption"), rings.get("privacy"))

    def create(self, ring: str, kid: str, *, now: datetime | None = None) -> StoredKey:
        """Add a new random data key to ``ring``, wrapped under the current KEK.

        It is the ring's current key when the ring had none; otherwise it is staged:
        every instance restarted from now on can read what it will make, and :meth:`rotate`
        makes it current.

        Raises:
            KeyManagementError: the ring or id is invalid, or the ring has that id.
        """
        _check_ring(ring)
        _check_id(kid)
        with file_lock(self.store_path):
            store = self.store(missing_ok=True)
            if store.find(ring, kid) is not None:
                raise KeyManagementError(
                    f"the {ring} ring already has a key {kid!r}: choose another id (--id)"
                )
            (wrapped,) = self.kek.wrap([secrets.token_bytes(RING_SIZES[ring])])
            key = StoredKey(ring, kid, now or datetime.now(UTC), wrapped)
            store.keys.append(key)
            store.current.setdefault(ring, kid)
            store.write()
        log.info("created %s key %r, wrapped under KEK %r", ring, kid, wrapped.kek)
        return key

    def rotate(self, ring: str, kid: str | None = None) -> str:
        """Make ``kid`` (default: the newest key) the current key of ``ring``; returns it.

        Raises:
            KeyManagementError: the ring has no such key, or it is already current.
        """
        _check_ring(ring)
        with file_lock(self.store_path):
            store = self.store()
            keys = store.ring(ring)
            chosen = kid or (keys[-1].id if keys else None)
            if chosen is None or store.find(ring, chosen) is None:
                raise KeyManagementError(
                    f"the {ring} ring has no key {chosen!r}: `authmodels keys create {ring}` "
                    "makes one"
                    if chosen
                    else f"the {ring} ring is empty: `authmodels keys create {ring}` makes a key"
                )
            if store.current[ring] == chosen:
                raise KeyManagementError(
                    f"{chosen!r} is already the current {ring} key: `authmodels keys create "
                    f"{ring}` makes a new one, then restart every instance before rotating"
                )
            store.current[ring] = chosen
            store.write()
        log.info("the current %s key is now %r", ring, chosen)
        return chosen

    def retire(self, ring: str, kid: str) -> None:
        """Remove the key ``kid`` from ``ring``: what was made with it no longer matches or
        decrypts (re-encrypt first; wait for digests made with it to expire).

        Raises:
            KeyManagementError: the ring has no such key, or it is the current key.
        """
        _check_ring(ring)
        with file_lock(self.store_path):
            store = self.store()
            if store.find(ring, kid) is None:
                raise KeyManagementError(f"the {ring} ring has no key {kid!r}")
            if store.current[ring] == kid:
                raise KeyManagementError(
                    f"{kid!r} is the current {ring} key: rotate to another key first"
                )
            store.keys = [k for k in store.keys if not (k.ring == ring and k.id == kid)]
            store.write()
        log.info("retired %s key %r", ring, kid)

    def import_rings(self, rings: KeyRings, *, now: datetime | None = None) -> list[StoredKey]:
        """Wrap the keys of ``rings`` (the environment's) into the store, current keys kept.

        Raises:
            KeyManagementError: a ring of ``rings`` already has keys in the store, or there is
                nothing to import.
        """
        when = now or datetime.now(UTC)
        given = {name: ring for name in RING_SIZES if (ring := rings.ring(name)) is not None}
        if not given:
            raise KeyManagementError(
                "there is no ring to import: set AUTHMODELS_HASH_KEYS (and "
                "AUTHMODELS_ENCRYPTION_KEYS, AUTHMODELS_PRIVACY_KEYS) for this command"
            )
        with file_lock(self.store_path):
            store = self.store(missing_ok=True)
            taken = [name for name in given if store.ring(name)]
            if taken:
                raise KeyManagementError(
                    f"the store {self.store_path} already has keys in the {', '.join(taken)} "
                    "ring(s): nothing was imported"
                )
            order = [(name, kid) for name, ring in given.items() for kid in ring.keys]
            wrapped = self.kek.wrap([given[name].keys[kid] for name, kid in order])
            added = [
                StoredKey(name, kid, when, item)
                for (name, kid), item in zip(order, wrapped, strict=True)
            ]
            store.keys.extend(added)
            for name, ring in given.items():
                store.current[name] = ring.current
            store.write()
        log.info("imported %d data key(s) into %s", len(added), self.store_path)
        return added

    def rewrap(self, source: KeyEncryptionKey | None = None) -> Counter[str]:
        """Unwrap every data key (with ``source``, default this provider's KEK source) and wrap
        it under the current KEK. Keys already under it are left as they are.

        Returns:
            Data keys rewrapped, per KEK they were under.

        Raises:
            KeyObjectNotFoundError, KeyUnwrapError, KeyProviderError: as for :meth:`load`;
                nothing is written then.
        """
        target = self.kek.current
        with file_lock(self.store_path):
            store = self.store()
            moving = [i for i, key in enumerate(store.keys) if source or key.wrapped.kek != target]
            moved: Counter[str] = Counter(store.keys[i].wrapped.kek for i in moving)
            if moving:
                clear = (source or self.kek).unwrap([store.keys[i].wrapped for i in moving])
                rewrapped = self.kek.wrap(clear)
                for i, item in zip(moving, rewrapped, strict=True):
                    old = store.keys[i]
                    store.keys[i] = StoredKey(old.ring, old.id, old.created_at, item)
                store.write()
        log.info("rewrapped %d data key(s) under KEK %r", sum(moved.values()), target)
        return moved

    def retire_kek(self, kek_id: str) -> None:
        """Destroy the KEK ``kek_id`` once no data key of the store is wrapped under it.

        Raises:
            KeyManagementError: a data key is still wrapped under it, or it is the current KEK.
        """
        with file_lock(self.store_path):
            in_use = sum(key.wrapped.kek == kek_id for key in self.store().keys)
            if in_use:
                raise KeyManagementError(
                    f"{in_use} data key(s) of {self.store_path} are wrapped under KEK "
                    f"{kek_id!r}: `authmodels keys rewrap` first"
                )
            if kek_id == self.kek.current:
                raise KeyManagementError(
                    f"KEK {kek_id!r} is the current KEK of {self.kek.describe()}: point the "
                    "provider at the new KEK first"
                )
            self.kek.destroy(kek_id)
