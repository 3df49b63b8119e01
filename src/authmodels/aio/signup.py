"""The async twin of :mod:`authmodels.services.signup` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import signup as _sync
from authmodels.services.signup import ADDRESS_TAKEN_TEMPLATE, SignUp

__all__ = [
    "ADDRESS_TAKEN_TEMPLATE",
    "SignUp",
    "register",
]

register = mirror(_sync.register)
