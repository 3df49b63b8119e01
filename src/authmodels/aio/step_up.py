"""The async twin of :mod:`authmodels.services.step_up` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import step_up as _sync
from authmodels.services.step_up import DEFAULT_PURPOSE, MAX_TTL

__all__ = [
    "DEFAULT_PURPOSE",
    "MAX_TTL",
    "consume",
    "issue",
]

consume = mirror(_sync.consume)
issue = mirror(_sync.issue)
