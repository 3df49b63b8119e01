"""The async twin of :mod:`authmodels.services.passwords` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import passwords as _sync
from authmodels.services.passwords import DEFAULT_HISTORY, normalize_email

__all__ = [
    "DEFAULT_HISTORY",
    "authenticate",
    "normalize_email",
    "password_hash_schemes",
    "set_password",
]

authenticate = mirror(_sync.authenticate)
password_hash_schemes = mirror(_sync.password_hash_schemes)
set_password = mirror(_sync.set_password)
