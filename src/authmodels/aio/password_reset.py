"""The async twin of :mod:`authmodels.services.password_reset` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import password_reset as _sync
from authmodels.services.password_reset import ResetCompleted, ResetRequest

__all__ = [
    "ResetCompleted",
    "ResetRequest",
    "complete",
    "request",
]

complete = mirror(_sync.complete)
request = mirror(_sync.request)
