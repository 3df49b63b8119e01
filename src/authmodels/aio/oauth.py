"""The async twin of :mod:`authmodels.services.oauth` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import oauth as _sync
from authmodels.services.oauth import ProviderTokens

__all__ = [
    "ProviderTokens",
    "read_tokens",
    "record_refresh",
    "refresh_due",
    "store_tokens",
]

read_tokens = mirror(_sync.read_tokens)
record_refresh = mirror(_sync.record_refresh)
refresh_due = mirror(_sync.refresh_due)
store_tokens = mirror(_sync.store_tokens)
