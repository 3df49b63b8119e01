"""The async twin of :mod:`authmodels.services.devices` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import devices as _sync
from authmodels.services.devices import TRUST_PURPOSE, SeenDevice, TrustedDevice

__all__ = [
    "TRUST_PURPOSE",
    "SeenDevice",
    "TrustedDevice",
    "is_trusted",
    "list_devices",
    "record_login",
    "revoke",
    "trust",
]

is_trusted = mirror(_sync.is_trusted)
list_devices = mirror(_sync.list_devices)
record_login = mirror(_sync.record_login)
revoke = mirror(_sync.revoke)
trust = mirror(_sync.trust)
