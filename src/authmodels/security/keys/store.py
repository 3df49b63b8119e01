"""The wrapped-key store: the data keys of every ring, each wrapped under a key-encryption key.

A JSON file (``AUTHMODELS_WRAPPED_KEYS``) beside the service's other configuration::

    {"format": "authmodels-wrapped-keys", "version": 1,
     "rings": {"hash": {"current": "2026-07",
                        "keys": [{"id": "2026-07", "created_at": "2026-07-01T09:00:00+00:00",
                                  "kek": "kek", "wrapped": "<base64 of the RFC 5649 output>"}]},
               "encryption": {...}, "privacy": {...}}}

It holds no key in clear: a copy of it, of a backup or of the configuration repository is
useless without the KEK. It must not be writable by others (an entry changed by someone else
fails to unwrap, but a whole store could be replaced by an older one): it is read only when its
group and others cannot write it, and written whole, atomically, with the owner's permissions.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from authmodels.config import KEY_ID_PATTERN, WRAPPED_KEYS_VAR
from authmodels.errors import KeyFileError
from authmodels.security.keys.files import read_store_file, write_private_file
from authmodels.security.keys.provider import RING_SIZES, WrappedKey

__all__ = ["FORMAT", "StoredKey", "WrappedKeyStore"]

FORMAT = "authmodels-wrapped-keys"


@dataclass(frozen=True, repr=False)
class StoredKey:
    """One data key of the store (wrapped).

    Attributes:
        ring: ``"hash"``, ``"encryption"`` or ``"privacy"``.
        id: its key id (named in every digest and envelope made with it).
        created_at: when it was created (or imported).
        wrapped: the key, wrapped, and the KEK that wrapped it.
    """

    ring: str
    id: str
    created_at: datetime
    wrapped: WrappedKey

    def __repr__(self) -> str:
        created, kek = f"{self.created_at:%Y-%m-%d}", self.wrapped.kek
        return f"StoredKey({self.ring}/{self.id}, created {created}, kek={kek!r})"


@dataclass
class WrappedKeyStore:
    """The contents of a store file.

    Attributes:
        path: the file.
        keys: every data key, per ring in order of creation.
        current: the current key id of each ring that has keys.
    """

    path: Path
    keys: list[StoredKey] = field(default_factory=list)
    current: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, *, missing_ok: bool = False) -> WrappedKeyStore:
        """Read and check the store at ``path``.

        Args:
            path: the file.
            missing_ok: an absent file is an empty store (commands that create keys).

        Raises:
            KeyFileError: the file is absent (unless ``missing_ok``), writable by others, or
                not a store of this format.
        """
        if missing_ok and not path.exists():
            return cls(path)
        data = cls.read_bytes(path)
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT or document.get("version") != 1:
                raise ValueError(f"it is not an {FORMAT} document of version 1")
            store = cls(path)
            for ring, content in document["rings"].items():
                store._read_ring(ring, content)
            return store
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise KeyFileError(f"the wrapped-key store {path} cannot be read: {exc}") from None

    @staticmethod
    def read_bytes(path: Path) -> bytes:
        """The file's bytes, once its mode is checked.

        Raises:
            KeyFileError: the file is absent, unreadable, or writable by group or others.
        """
        return read_store_file(
            path,
            what=f"the wrapped-key store ({WRAPPED_KEYS_VAR})",
            fix="`authmodels keys create hash` (and encryption, privacy) makes it, "
            "`authmodels keys import` fills it from the environment's rings",
        )

    def _read_ring(self, ring: str, content: dict[str, Any]) -> None:
        if ring not in RING_SIZES:
            raise ValueError(f"{ring!r} is not a ring ({', '.join(RING_SIZES)})")
        seen = set()
        for entry in content["keys"]:
            kid, kek = entry["id"], entry["kek"]
            if not (isinstance(kid, str) and KEY_ID_PATTERN.fullmatch(kid)) or kid in seen:
                raise ValueError(f"the {ring} ring has a repeated or invalid key id")
            if not (isinstance(kek, str) and KEY_ID_PATTERN.fullmatch(kek)):
                raise ValueError(f"key {kid!r} of the {ring} ring names an invalid KEK id")
            seen.add(kid)
            created = datetime.fromisoformat(entry["created_at"])
            wrapped = base64.b64decode(entry["wrapped"], validate=True)
            self.keys.append(StoredKey(ring, kid, created, WrappedKey(kek, wrapped)))
        if seen:
            if content.get("current") not in seen:
                raise ValueError(f"the current key of the {ring} ring is not one of its keys")
            self.current[ring] = content["current"]

    def write(self) -> None:
        """Replace the file with this store, at once (the mode of the old file is kept, less
        any write permission for group and others; a new file is ``0600``)."""
        rings: dict[str, Any] = {}
        for key in self.keys:
            ring = rings.setdefault(key.ring, {"current": self.current[key.ring], "keys": []})
            ring["keys"].append(
                {
                    "id": key.id,
                    "created_at": key.created_at.isoformat(),
                    "kek": key.wrapped.kek,
                    "wrapped": base64.b64encode(key.wrapped.wrapped).decode(),
                }
            )
        document = {"format": FORMAT, "version": 1, "rings": rings}
        mode = 0o600
        if self.path.exists():
            mode = stat.S_IMODE(os.stat(self.path).st_mode) & ~0o022
        write_private_file(self.path, (json.dumps(document, indent=2) + "\n").encode(), mode=mode)

    def ring(self, name: str) -> list[StoredKey]:
        """The keys of one ring, oldest first."""
        return [key for key in self.keys if key.ring == name]

    def find(self, ring: str, kid: str) -> StoredKey | None:
        """The key ``kid`` of ``ring``, if the store has it."""
        return next((k for k in self.keys if k.ring == ring and k.id == kid), None)

    def keks(self) -> set[str]:
        """The ids of the KEKs some data key is wrapped under."""
        return {key.wrapped.kek for key in self.keys}
