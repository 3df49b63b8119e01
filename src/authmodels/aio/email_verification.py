"""The async twin of :mod:`authmodels.services.email_verification` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import email_verification as _sync
from authmodels.services.email_verification import VerificationLink, Verified

__all__ = [
    "VerificationLink",
    "Verified",
    "request_email_change",
    "request_verification",
    "verify",
]

request_email_change = mirror(_sync.request_email_change)
request_verification = mirror(_sync.request_verification)
verify = mirror(_sync.verify)
