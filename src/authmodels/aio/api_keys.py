"""The async twin of :mod:`authmodels.services.api_keys` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import api_keys as _sync
from authmodels.services.api_keys import CreatedApiKey, require_scopes

__all__ = [
    "CreatedApiKey",
    "authenticate",
    "create",
    "require_scopes",
    "revoke",
]

authenticate = mirror(_sync.authenticate)
create = mirror(_sync.create)
revoke = mirror(_sync.revoke)
