"""The async twin of :mod:`authmodels.services.audit` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import audit as _sync

__all__ = [
    "record",
]

record = mirror(_sync.record)
