"""The async twin of :mod:`authmodels.services.reencryption` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import reencryption as _sync
from authmodels.services.reencryption import ENCRYPTED_COLUMNS, MAX_BATCH_SIZE, ReencryptReport

__all__ = [
    "ENCRYPTED_COLUMNS",
    "MAX_BATCH_SIZE",
    "ReencryptReport",
    "reencrypt",
]

reencrypt = mirror(_sync.reencrypt)
