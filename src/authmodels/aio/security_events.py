"""The async twin of :mod:`authmodels.services.security_events` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import security_events as _sync
from authmodels.services.security_events import ALERT_SEVERITIES, SecurityEventAlert

__all__ = [
    "ALERT_SEVERITIES",
    "SecurityEventAlert",
    "record",
    "report",
]

record = mirror(_sync.record)
report = mirror(_sync.report)
