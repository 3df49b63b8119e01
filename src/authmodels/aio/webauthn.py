"""The async twin of :mod:`authmodels.services.webauthn` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import webauthn as _sync
from authmodels.services.webauthn import SIGN_COUNT_REGRESSION_EVENT

__all__ = [
    "SIGN_COUNT_REGRESSION_EVENT",
    "record_authentication",
    "store_registration",
    "verify_authentication",
]

record_authentication = mirror(_sync.record_authentication)
store_registration = mirror(_sync.store_registration)
verify_authentication = mirror(_sync.verify_authentication)
