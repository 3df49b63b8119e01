"""Key providers: where the data keys of the rings come from, and envelope encryption.

``AUTHMODELS_KEY_PROVIDER`` chooses the provider:

======================================  ==========================================================
value                                   the data keys
======================================  ==========================================================
``env`` (default, or unset)             in the environment (``AUTHMODELS_HASH_KEYS``, ...), in
                                        clear, as before providers existed
``file:/etc/authmodels/kek``            wrapped (RFC 5649) in the store ``AUTHMODELS_WRAPPED_KEYS``
                                        under a key-encryption key (KEK) of an owner-only key file
``pkcs11:token=T;object=O?module-path=  wrapped in that store under a KEK that never leaves a
/usr/lib/.../libvendor.so``             PKCS#11 token; wrap and unwrap run inside the token
                                        (``CKM_AES_KEY_WRAP_PAD``); PIN from
                                        ``AUTHMODELS_PKCS11_PIN`` or ``pin-source=FILE``
======================================  ==========================================================

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
``provider``       the interface: :class:`KeyProvider`, :class:`KeyEncryptionKey`, :class:`KeyRings`
``env``            the ``env`` provider
``file``           the ``file`` provider's KEKs (:class:`FileKek`)
``pkcs11``         the ``pkcs11`` provider's KEKs (:class:`Pkcs11Kek`, :class:`Pkcs11Uri`)
``store``          the wrapped-key store (a JSON file)
``envelope``       unwrapping at start-up, and the key-management operations
                   (:class:`WrappingKeyProvider`)
``files``          reading secret files only when their owner and mode are safe
=================  ===========================================================================

:func:`load_key_rings` is what :meth:`authmodels.config.Settings.from_env` calls for a ``file``
or ``pkcs11`` provider: the rings are unwrapped once per process (and again only when the store
file is replaced), then served from memory.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from authmodels.config import KEY_PROVIDER_VAR, WRAPPED_KEYS_VAR
from authmodels.errors import KeyProviderError
from authmodels.security.keys.env import EnvKeyProvider
from authmodels.security.keys.envelope import WrappingKeyProvider
from authmodels.security.keys.file import FileKek
from authmodels.security.keys.pkcs11 import Pkcs11Kek, Pkcs11Uri
from authmodels.security.keys.provider import (
    RING_SIZES,
    KeyEncryptionKey,
    KeyProvider,
    KeyRings,
    WrappedKey,
)
from authmodels.security.keys.store import StoredKey, WrappedKeyStore

__all__ = [
    "RING_SIZES",
    "EnvKeyProvider",
    "FileKek",
    "KeyEncryptionKey",
    "KeyProvider",
    "KeyRings",
    "Pkcs11Kek",
    "Pkcs11Uri",
    "StoredKey",
    "WrappedKey",
    "WrappedKeyStore",
    "WrappingKeyProvider",
    "forget_loaded_keys",
    "kek_from_uri",
    "load_key_rings",
    "provider_from_env",
]


def kek_from_uri(uri: str, environ: Mapping[str, str]) -> KeyEncryptionKey:
    """The KEK source a ``file:`` or ``pkcs11:`` URI names.

    Raises:
        KeyProviderError: the URI is neither, or malformed (the message never repeats a PIN).
    """
    if uri.startswith("pkcs11:"):
        return Pkcs11Kek(Pkcs11Uri.parse(uri), environ)
    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost") or not parsed.path:
            raise KeyProviderError(
                f"{KEY_PROVIDER_VAR}: a file provider is file:/path/to/kek (or file:///path)"
            )
        return FileKek(Path(urllib.parse.unquote(parsed.path)))
    raise KeyProviderError(
        f"{KEY_PROVIDER_VAR} must be 'env', 'file:/path/to/kek' or a 'pkcs11:' URI "
        f"(it starts with {uri.partition(':')[0][:20]!r})"
    )


def provider_from_env(environ: Mapping[str, str] | None = None) -> KeyProvider:
    """The provider ``AUTHMODELS_KEY_PROVIDER`` chooses (``env`` when it is unset).

    Raises:
        KeyProviderError: the value is not a provider, or ``AUTHMODELS_WRAPPED_KEYS`` is not set
            for a ``file`` or ``pkcs11`` provider.
    """
    env = os.environ if environ is None else environ
    uri = (env.get(KEY_PROVIDER_VAR) or "").strip() or "env"
    if uri == "env":
        return EnvKeyProvider(env)
    kek = kek_from_uri(uri, env)
    store = (env.get(WRAPPED_KEYS_VAR) or "").strip()
    if not store:
        raise KeyProviderError(
            f"{WRAPPED_KEYS_VAR} is not set: the {kek.kind} provider keeps the wrapped data "
            "keys in a file it names (e.g. /etc/authmodels/wrapped-keys.json)"
        )
    return WrappingKeyProvider(kek, Path(store))


_loaded: dict[tuple[object, ...], KeyRings] = {}
_loading = threading.Lock()


def load_key_rings(environ: Mapping[str, str] | None = None) -> KeyRings:
    """The rings of the configured provider, unwrapped once per process.

    The unwrapped rings are kept in memory, keyed by the KEK source and the SHA-256 of the store
    file: a store changed by a key-management command is unwrapped again on the next call, an
    unchanged one never is.

    Raises:
        KeyProviderError: the provider cannot give the rings (a subclass says why).
    """
    env = os.environ if environ is None else environ
    provider = provider_from_env(env)
    if not isinstance(provider, WrappingKeyProvider):
        return provider.load()
    identity = (provider.kek.describe(), hashlib.sha256(provider.store_bytes()).digest())
    with _loading:
        if identity not in _loaded:
            _loaded[identity] = provider.load()
        return _loaded[identity]


def forget_loaded_keys() -> None:
    """Drop every unwrapped ring this process holds (the next use unwraps again)."""
    with _loading:
        _loaded.clear()
