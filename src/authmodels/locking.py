"""Optimistic locking for rows with a ``version`` column (:class:`~authmodels.models.Versioned`).

Two ways to update a versioned row, both ending in the same
:class:`~authmodels.errors.ConcurrentUpdateError` when another transaction got there first:

- stateless, for API clients that read a row, show it, and send its version back with the change::

      update_versioned(db, Lending, lending_id, expected_version=3, token_count=10)

  one ``UPDATE ... SET version = version + 1 WHERE id = :id AND version = :expected RETURNING``;
  no row read first, so no window between check and write.

- through the ORM: change attributes of a loaded ``Versioned`` object and flush inside
  :func:`optimistic_update` (SQLAlchemy adds ``WHERE version = :loaded`` to the UPDATE and raises
  ``StaleDataError`` when it matches no row; this translates it).

Every conflict either way is counted for the process (:func:`conflicts_seen`), which the
Prometheus collector exports as ``authmodels_optimistic_lock_conflicts_total`` (seed 001's
"monitor optimistic lock failures").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from authmodels.errors import ConcurrentUpdateError, InvalidTokenError
from authmodels.models.base import Versioned

M = TypeVar("M", bound=Versioned)


class RowNotFoundError(InvalidTokenError):
    """The row to update does not exist (or is not visible to this transaction)."""


_conflicts = 0
_conflicts_lock = threading.Lock()


def conflicts_seen() -> int:
    """How many :class:`~authmodels.errors.ConcurrentUpdateError` this process has raised."""
    return _conflicts


def _conflict(message: str) -> ConcurrentUpdateError:
    global _conflicts
    with _conflicts_lock:
        _conflicts += 1
    return ConcurrentUpdateError(message)


def update_versioned(
    db: Session, model: type[M], row_id: Any, expected_version: int, **values: Any
) -> M:
    """Update one row if, and only if, it is still at ``expected_version``.

    Args:
        db: the session; the UPDATE runs in its transaction (nothing is committed here).
        model: a mapped class with the :class:`Versioned` mixin.
        row_id: the primary key value.
        expected_version: the version the caller read.
        **values: the columns to set.

    Returns:
        The updated object, with its new version.

    Raises:
        ConcurrentUpdateError: the row exists at another version (someone else changed it).
        RowNotFoundError: no row has this primary key.
    """
    if "version" in values:
        raise ValueError("the version is set by update_versioned itself; do not pass it")
    (pk,) = inspect(model).primary_key
    version_col = model.__table__.c.version  # type: ignore[attr-defined]
    stmt = (
        update(model)
        .where(pk == row_id, version_col == expected_version)
        .values(**values, version=version_col + 1)
        .returning(model)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    updated = db.execute(stmt).scalar_one_or_none()
    if updated is not None:
        return updated
    current = db.execute(select(version_col).where(pk == row_id)).scalar_one_or_none()
    if current is None:
        raise RowNotFoundError(f"{model.__name__} {row_id} does not exist")
    raise _conflict(
        f"{model.__name__} {row_id} was modified by another transaction "
        f"(you sent version {expected_version}; it is now at version {current}): "
        "reload it and apply the change again"
    )


_TABLE_IN_MESSAGE = re.compile(r"on table '([^']+)'")


@contextmanager
def optimistic_update(db: Session) -> Iterator[Session]:
    """Flush the session's changes to ``Versioned`` objects at the end of the block.

    Raises:
        ConcurrentUpdateError: an object was changed by another transaction since it was loaded
            (SQLAlchemy's ``StaleDataError``, with the model and id named). The session's
            transaction is then unusable: roll it back, reload and retry.
    """
    pending = [obj for obj in (*db.dirty, *db.deleted) if isinstance(obj, Versioned)]
    try:
        yield db
        db.flush()
    except StaleDataError as exc:
        raise _translate(exc, pending or list(db.identity_map.values())) from exc


def _translate(exc: StaleDataError, candidates: list[Any]) -> ConcurrentUpdateError:
    match = _TABLE_IN_MESSAGE.search(str(exc))
    table = match.group(1) if match else None
    for obj in candidates:
        if isinstance(obj, Versioned) and (
            table is None or getattr(obj, "__tablename__", None) == table.split(".")[-1]
        ):
            identity = inspect(obj).identity
            row_id = identity[0] if identity and len(identity) == 1 else identity
            return _conflict(
                f"{type(obj).__name__} {row_id} was modified by another transaction: "
                "roll back, reload it and apply the change again"
            )
    return _conflict(f"a versioned row was modified by another transaction ({exc})")
