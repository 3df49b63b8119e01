"""The async twin of :mod:`authmodels.services.alerts` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.services.alerts import SecurityEventAlert

__all__ = [
    "SecurityEventAlert",
]
