"""The async twin of :mod:`authmodels.retention`'s entry points (see :mod:`authmodels.aio`): the
purge a web process may start (an admin endpoint, a scheduled task on the event loop) on an
``AsyncEngine``, and the stored policies read on an ``AsyncConnection``.

The purge runs on the async engine's ``sync_engine`` in a greenlet of SQLAlchemy's: every batch
is awaited on the asyncio driver, so the loop serves requests between and during batches. The
engine's role must own schema ``auth``, as for the sync purge.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from authmodels import retention as _sync
from authmodels.aio._mirror import describe, mirror_engine
from authmodels.retention import Policy, PolicyReport, PurgeReport, select_policies

__all__ = [
    "Policy",
    "PolicyReport",
    "PurgeReport",
    "load_policies",
    "purge",
    "select_policies",
]

purge = mirror_engine(_sync.purge)


async def load_policies(conn: AsyncConnection) -> list[Policy]:
    return await conn.run_sync(_sync.load_policies)


describe(load_policies, _sync.load_policies, "conn", AsyncConnection)
