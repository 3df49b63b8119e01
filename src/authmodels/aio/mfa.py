"""The async twin of :mod:`authmodels.services.mfa` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import mfa as _sync
from authmodels.services.mfa import BACKUP_CODE_COUNT, TOTP_DIGITS, TotpEnrollment

__all__ = [
    "BACKUP_CODE_COUNT",
    "TOTP_DIGITS",
    "TotpEnrollment",
    "confirm",
    "disable",
    "enroll",
    "regenerate_backup_codes",
    "use_backup_code",
    "verify",
]

confirm = mirror(_sync.confirm)
disable = mirror(_sync.disable)
enroll = mirror(_sync.enroll)
regenerate_backup_codes = mirror(_sync.regenerate_backup_codes)
use_backup_code = mirror(_sync.use_backup_code)
verify = mirror(_sync.verify)
