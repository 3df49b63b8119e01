"""The async twin of :mod:`authmodels.services.device_flow` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import device_flow as _sync
from authmodels.services.device_flow import (
    USER_CODE_ALPHABET,
    USER_CODE_LENGTH,
    DeviceAuthorization,
    format_user_code,
    new_user_code,
)

__all__ = [
    "USER_CODE_ALPHABET",
    "USER_CODE_LENGTH",
    "DeviceAuthorization",
    "approve",
    "deny",
    "format_user_code",
    "new_user_code",
    "poll",
    "start",
]

approve = mirror(_sync.approve)
deny = mirror(_sync.deny)
poll = mirror(_sync.poll)
start = mirror(_sync.start)
