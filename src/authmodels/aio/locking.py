"""The async twin of :mod:`authmodels.locking` (see :mod:`authmodels.aio`): optimistic locking
of ``Versioned`` rows with an ``AsyncSession``, the same
:class:`~authmodels.errors.ConcurrentUpdateError` when another transaction got there first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from authmodels import locking as _sync
from authmodels.aio._mirror import describe, driven
from authmodels.locking import RowNotFoundError, conflicts_seen
from authmodels.models.base import Versioned

__all__ = ["RowNotFoundError", "conflicts_seen", "optimistic_update", "update_versioned"]

M = TypeVar("M", bound=Versioned)


# written out rather than mirror()ed: mypy keeps the model's type through it
async def update_versioned(
    db: AsyncSession, model: type[M], row_id: Any, expected_version: int, **values: Any
) -> M:
    return await db.run_sync(
        lambda sync: _sync.update_versioned(sync, model, row_id, expected_version, **values)
    )


describe(update_versioned, _sync.update_versioned, "db", AsyncSession)


@asynccontextmanager
async def optimistic_update(db: AsyncSession) -> AsyncIterator[AsyncSession]:
    async with driven(db, _sync.optimistic_update(db.sync_session)):
        yield db


optimistic_update.__doc__ = _sync.optimistic_update.__doc__
