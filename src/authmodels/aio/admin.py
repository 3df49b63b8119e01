"""The async twin of :mod:`authmodels.services.admin` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import admin as _sync
from authmodels.services.admin import ADMIN_LOCK_KEY, ROLE_CHANGE_ACTION

__all__ = [
    "ADMIN_LOCK_KEY",
    "ROLE_CHANGE_ACTION",
    "change_role",
]

change_role = mirror(_sync.change_role)
