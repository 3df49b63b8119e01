"""The async twin of :mod:`authmodels.services.magic_links` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import magic_links as _sync
from authmodels.services.magic_links import MAX_CLIENT_LENGTH, MagicLinkRequest

__all__ = [
    "MAX_CLIENT_LENGTH",
    "MagicLinkRequest",
    "redeem",
    "request",
]

redeem = mirror(_sync.redeem)
request = mirror(_sync.request)
