"""The async twin of :mod:`authmodels.services.settings` (see :mod:`authmodels.aio`).

Reading and choosing a session's settings touches no database, so these two stay plain
functions; they take the ``AsyncSession`` and act on the sync session underneath it, whose
``info`` the flows read (``AsyncSession.info`` is that same dictionary).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from authmodels.services import settings as _sync
from authmodels.services.settings import SETTINGS_KEY, FlowSettings, configure, default_settings

__all__ = [
    "SETTINGS_KEY",
    "FlowSettings",
    "configure",
    "default_settings",
    "settings_for",
    "use_settings",
]


def settings_for(db: AsyncSession) -> FlowSettings:
    return _sync.settings_for(db.sync_session)


def use_settings(db: AsyncSession, settings: FlowSettings) -> AsyncSession:
    _sync.use_settings(db.sync_session, settings)
    return db


settings_for.__doc__ = _sync.settings_for.__doc__
use_settings.__doc__ = _sync.use_settings.__doc__
