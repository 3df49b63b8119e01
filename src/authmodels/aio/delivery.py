"""The async twin of :mod:`authmodels.services.delivery` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import delivery as _sync
from authmodels.services.delivery import CHANNELS, FINAL_STATUSES, Delivery

__all__ = [
    "CHANNELS",
    "FINAL_STATUSES",
    "Delivery",
    "log_email",
    "log_sms",
    "mark_failed",
    "mark_sent",
    "record_callback",
]

log_email = mirror(_sync.log_email)
log_sms = mirror(_sync.log_sms)
mark_failed = mirror(_sync.mark_failed)
mark_sent = mirror(_sync.mark_sent)
record_callback = mirror(_sync.record_callback)
