"""The async twin of :mod:`authmodels.services.recovery` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import recovery as _sync
from authmodels.services.recovery import Recovered, RecoveryStarted

__all__ = [
    "Recovered",
    "RecoveryStarted",
    "cancel",
    "complete",
    "start",
    "start_with_code",
]

cancel = mirror(_sync.cancel)
complete = mirror(_sync.complete)
start = mirror(_sync.start)
start_with_code = mirror(_sync.start_with_code)
