"""The async twin of :mod:`authmodels.services.e2ee` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import e2ee as _sync

__all__ = [
    "private_key",
    "record_failed_exchange",
    "record_key_exchange",
    "register_device_key",
]

private_key = mirror(_sync.private_key)
record_failed_exchange = mirror(_sync.record_failed_exchange)
record_key_exchange = mirror(_sync.record_key_exchange)
register_device_key = mirror(_sync.register_device_key)
