"""The ``env`` provider (the default): the rings are the environment's ``key_id:base64key``
lists, exactly as before key providers existed (:mod:`authmodels.config`)."""

from __future__ import annotations

from collections.abc import Mapping

from authmodels import config
from authmodels.security.keys.provider import KeyProvider, KeyRings

__all__ = ["EnvKeyProvider"]


class EnvKeyProvider(KeyProvider):
    """The rings of ``AUTHMODELS_HASH_KEYS``, ``AUTHMODELS_ENCRYPTION_KEYS`` and
    ``AUTHMODELS_PRIVACY_KEYS`` (and their ``_CURRENT`` variables).

    It protects against nothing the environment does not: whoever reads the process environment
    (``/proc/<pid>/environ``, a crash dump, a CI log) has every key.
    """

    kind = "env"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {name: environ[name] for name in config.RING_VARS if name in environ}

    def load(self) -> KeyRings:
        """The environment's rings (see :meth:`authmodels.config.Settings.from_env`)."""
        settings = config.Settings.from_env(self._environ)
        own_privacy = (self._environ.get(config.PRIVACY_KEYS_VAR) or "").strip()
        return KeyRings(
            settings.hash_keys,
            settings.encryption_keys,
            settings.privacy_keys if own_privacy else None,
        )

    def describe(self) -> str:
        """``env``."""
        return "env"
