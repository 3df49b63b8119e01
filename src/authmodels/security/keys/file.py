"""The ``file`` provider's key-encryption keys: AES-256 keys in a file only its owner can read.

``AUTHMODELS_KEY_PROVIDER=file:/etc/authmodels/kek`` names the file. It holds one or more
``kek_id:base64key`` entries (32-byte keys, oldest first, the format of the environment's rings);
the last is the current KEK, which wraps new data keys. Wrapping is RFC 5649 (AES key wrap with
padding) in this process, by ``cryptography``. The file is read only when it is a regular file
owned by the process user with no permission for group or others, and the KEK bytes are kept
only for the duration of a wrap or unwrap.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from authmodels.config import KeyRing, parse_key_ring
from authmodels.errors import (
    ConfigurationError,
    KeyFileError,
    KeyManagementError,
    KeyObjectNotFoundError,
    KeyUnwrapError,
)
from authmodels.security.keys.files import file_lock, read_private_file, write_private_file
from authmodels.security.keys.provider import KeyEncryptionKey, WrappedKey

__all__ = ["FileKek"]


class FileKek(KeyEncryptionKey):
    """The key-encryption keys of a key file.

    Args:
        path: the key file.
    """

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _ring(self) -> KeyRing:
        data = read_private_file(
            self.path,
            what="the key file",
            fix="`authmodels keys kek create` makes it (AUTHMODELS_KEY_PROVIDER names it)",
        )
        try:
            return parse_key_ring(
                data.decode("ascii"), source=f"the key file {self.path}", exact_bytes=32
            )
        except (UnicodeDecodeError, ConfigurationError) as exc:
            detail = str(exc) if isinstance(exc, ConfigurationError) else "it is not ASCII text"
            raise KeyFileError(
                f"{detail} (the key file holds 'kek_id:base64key' entries, 32-byte keys)"
            ) from None

    @property
    def current(self) -> str:
        """The last key id of the file."""
        return self._ring().current

    def describe(self) -> str:
        """``file:<path>``."""
        return f"file:{self.path}"

    def wrap(self, keys: Sequence[bytes]) -> list[WrappedKey]:
        """Wrap each key under the file's current KEK (RFC 5649)."""
        ring = self._ring()
        kek = ring.current_key
        return [WrappedKey(ring.current, aes_key_wrap_with_padding(kek, key)) for key in keys]

    def unwrap(self, wrapped: Sequence[WrappedKey]) -> list[bytes]:
        """Unwrap each key under the KEK of the file it names."""
        ring = self._ring()
        keys = []
        for item in wrapped:
            if item.kek not in ring.keys:
                raise KeyObjectNotFoundError(
                    f"a data key is wrapped under KEK {item.kek!r}, which the key file "
                    f"{self.path} does not hold (it has {', '.join(ring.keys)}): put that KEK "
                    "back, or restore the store it was rewrapped from"
                )
            try:
                keys.append(aes_key_unwrap_with_padding(ring.keys[item.kek], item.wrapped))
            except InvalidUnwrap:
                raise KeyUnwrapError(
                    f"a data key does not unwrap under KEK {item.kek!r} of {self.path}: the "
                    "store was altered, or this KEK is not the one that wrapped it"
                ) from None
        return keys

    def create(self, kek_id: str) -> None:
        """Append a new random 32-byte KEK to the file (created owner-only if missing); it
        becomes the current KEK."""
        with file_lock(self.path):
            existing = self._ring().keys if self.path.exists() else {}
            if kek_id in existing:
                raise KeyManagementError(
                    f"the key file {self.path} already has KEK {kek_id!r}: choose another id (--id)"
                )
            self._write({**existing, kek_id: secrets.token_bytes(32)})

    def destroy(self, kek_id: str) -> None:
        """Remove the KEK ``kek_id`` from the file.

        Raises:
            KeyManagementError: it is the current (last) KEK.
        """
        with file_lock(self.path):
            ring = self._ring()
            if kek_id not in ring.keys:
                raise KeyObjectNotFoundError(f"the key file {self.path} has no KEK {kek_id!r}")
            if kek_id == ring.current:
                raise KeyManagementError(
                    f"KEK {kek_id!r} is the current KEK of {self.path} (the last entry): "
                    "create another first"
                )
            self._write({kid: key for kid, key in ring.keys.items() if kid != kek_id})

    def _write(self, keys: dict[str, bytes]) -> None:
        entries = (f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys.items())
        write_private_file(self.path, (",\n".join(entries) + "\n").encode("ascii"))
