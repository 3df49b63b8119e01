"""The async twin of :mod:`authmodels.services.sessions` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import sessions as _sync
from authmodels.services.sessions import IssuedSession

__all__ = [
    "IssuedSession",
    "create_session",
    "revoke_all_sessions",
    "revoke_session",
    "rotate_refresh_token",
    "touch",
    "validate_session",
    "validate_session_alone",
]

create_session = mirror(_sync.create_session)
revoke_all_sessions = mirror(_sync.revoke_all_sessions)
revoke_session = mirror(_sync.revoke_session)
rotate_refresh_token = mirror(_sync.rotate_refresh_token)
touch = mirror(_sync.touch)
validate_session = mirror(_sync.validate_session)
validate_session_alone = mirror(_sync.validate_session_alone)
