"""The hot paths' statements, run on the session's own psycopg connection.

Validating a session and rotating a refresh token run on every request and every refresh. Their
SQL is a single statement whose cost at the server is a few index probes; SQLAlchemy's execution
pipeline (compilation cache lookup, parameter processing, result metadata, ORM loading) would cost
about as much again in Python. So these statements are executed directly on the psycopg
connection underneath the session's ``Connection`` -- the same connection and the same
transaction, whatever isolation or SAVEPOINT the caller set up -- as server-side prepared
statements (unless the connection disables prepared statements, ``prepare_threshold=None``, as
behind a transaction-mode pooler). SQLAlchemy's ``before_cursor_execute``-style events and echo
do not see them. With another driver than psycopg 3 the statements go through SQLAlchemy.

On an async engine (``postgresql+psycopg_async``, :mod:`authmodels.aio`) the flows run inside
``AsyncSession.run_sync``, in a greenlet of SQLAlchemy's; the connection underneath is then a
``psycopg.AsyncConnection``, and the statement is awaited on it with SQLAlchemy's
``await_only`` -- the same prepared statement, the event loop free while the server answers.

The ORM object a lookup returns is built from the row without a second query
(:func:`load_instance`).

Why the module exists, in figures: ``benchmarks/bench_fastpath.py`` measures the session lookup
this way, through SQLAlchemy Core and through the ORM, and the flows with the module switched off
(``docs/benchmarks.md``, "The fast path"); the decision to keep it rests on those figures. The
SQLAlchemy behaviour it relies on -- the driver connection under a session's, ``text()`` compiled
to psycopg's placeholders, an instance made by the class manager, its ``__dict__`` filled and its
identity key set, then ``Session.add`` making it persistent and unmodified -- is pinned by
``tests/services/test_fastpath.py``, which also runs the flows on the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import TextClause, inspect, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.util.concurrency import await_only

from authmodels.models.base import Base

M = TypeVar("M", bound=Base)

_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


class Statement:
    """One SQL statement with ``:name`` parameters, ready for both execution paths.

    Args:
        sql: the statement, with ``:name`` bind parameters.
    """

    def __init__(self, sql: str) -> None:
        self.clause: TextClause = text(sql)
        self.psycopg_sql: str = str(self.clause.compile(dialect=_DIALECT))

    def first(
        self, db: Session, params: Mapping[str, Any], *, savepoint: str | None = None
    ) -> Sequence[Any] | None:
        """Execute in the session's transaction; the first row, or None.

        The statement must return rows (a SELECT, or a write with ``RETURNING``).

        Args:
            db: the session.
            params: the bind parameters.
            savepoint: a SAVEPOINT to set first, in the same round trip (psycopg's pipeline
                mode), so that the caller can roll the statement back -- and release the row
                locks it took -- with ``ROLLBACK TO SAVEPOINT``. It is not released here: it
                ends with the transaction (or an enclosing savepoint).
        """
        driver = _driver(db)
        if isinstance(driver, psycopg.Connection):
            with driver.cursor() as cursor:
                if savepoint is None:
                    cursor.execute(self.psycopg_sql, params, prepare=prepare_for(driver))
                else:
                    with driver.pipeline():
                        cursor.execute(f"SAVEPOINT {savepoint}")
                        cursor.execute(self.psycopg_sql, params, prepare=prepare_for(driver))
                return cursor.fetchone()
        if isinstance(driver, psycopg.AsyncConnection):
            return await_only(self._first_async(driver, params, savepoint))
        if savepoint is not None:
            db.execute(text(f"SAVEPOINT {savepoint}"))
        row = db.execute(self.clause, params).first()
        return None if row is None else tuple(row)

    async def _first_async(
        self,
        driver: psycopg.AsyncConnection[Any],
        params: Mapping[str, Any],
        savepoint: str | None,
    ) -> Sequence[Any] | None:
        """:meth:`first` on psycopg's asyncio connection (awaited from a ``run_sync`` greenlet)."""
        prepare = prepare_for(driver)
        async with driver.cursor() as cursor:
            if savepoint is None:
                await cursor.execute(self.psycopg_sql, params, prepare=prepare)
            else:
                async with driver.pipeline():
                    await cursor.execute(f"SAVEPOINT {savepoint}")
                    await cursor.execute(self.psycopg_sql, params, prepare=prepare)
            return await cursor.fetchone()

    def first_alone(self, db: Session, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """Execute as a transaction of its own when the session has none open: one round trip.

        When the session's connection has no transaction in progress (its first statement, or
        after a commit), the statement runs in autocommit -- no ``BEGIN``, no ``COMMIT``: what it
        writes is committed when it returns, whatever the caller does afterwards -- and the
        connection is left as it was (psycopg switches autocommit without a round trip; the
        session's later statements start a transaction as usual). Inside an open transaction
        it runs in that transaction, like :meth:`first`. On psycopg's synchronous and asyncio
        connections alike; on another driver, like :meth:`first`.

        Args:
            db: the session.
            params: the bind parameters.
        """
        driver = _driver(db)
        if (
            not isinstance(driver, psycopg.Connection | psycopg.AsyncConnection)
            or driver.autocommit
            or driver.info.transaction_status != TransactionStatus.IDLE
        ):
            return self.first(db, params)
        if isinstance(driver, psycopg.AsyncConnection):
            return await_only(self._first_alone_async(driver, params))
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                cursor.execute(self.psycopg_sql, params, prepare=prepare_for(driver))
                return cursor.fetchone()
        finally:
            driver.autocommit = False

    async def _first_alone_async(
        self, driver: psycopg.AsyncConnection[Any], params: Mapping[str, Any]
    ) -> Sequence[Any] | None:
        """:meth:`first_alone` on psycopg's asyncio connection (awaited from a ``run_sync``
        greenlet)."""
        await driver.set_autocommit(True)
        try:
            async with driver.cursor() as cursor:
                await cursor.execute(self.psycopg_sql, params, prepare=prepare_for(driver))
                return await cursor.fetchone()
        finally:
            await driver.set_autocommit(False)


def _driver(db: Session) -> Any:
    """The DBAPI driver's own connection under the session's (psycopg's, on our engines)."""
    return db.connection().connection.driver_connection


def prepare_for(driver: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool | None:
    """``prepare=`` for the hot statements: server-side prepared, unless the connection turns
    prepared statements off (``prepare_threshold=None``, behind a transaction pooler)."""
    return None if driver.prepare_threshold is None else True


def psycopg_connection(db: Session) -> psycopg.Connection[Any] | None:
    """The psycopg 3 connection under the session's, or None with another driver (the statements
    then go through SQLAlchemy: :meth:`Statement.first`'s fallback)."""
    driver = _driver(db)
    return driver if isinstance(driver, psycopg.Connection) else None


def psycopg_async_connection(db: Session) -> psycopg.AsyncConnection[Any] | None:
    """The psycopg 3 asyncio connection under the session's (an async engine's session, inside
    ``AsyncSession.run_sync``), or None."""
    driver = _driver(db)
    return driver if isinstance(driver, psycopg.AsyncConnection) else None


def columns_of(model: type[Base]) -> list[str]:
    """The column names of ``model``'s table, in table order (the attribute names here)."""
    return [column.key for column in model.__table__.columns]


def load_instance(db: Session, model: type[M], names: Sequence[str], values: Sequence[Any]) -> M:
    """The persistent ``model`` object of a row, attached to ``db`` without a query.

    An object already in the session's identity map is refreshed with the row's values (a
    revocation committed since it was loaded must show); otherwise a new object is attached as
    if the ORM had loaded it: a new instance (no ``__init__``) whose attribute dict holds the row,
    with the row's identity key, added to the session. No attribute history is recorded, so the
    object is persistent and unmodified (what :func:`sqlalchemy.orm.make_transient_to_detached`
    followed by ``Session.add`` gives, without their bookkeeping for attributes not loaded: here
    every column is).

    Args:
        db: the session.
        model: the mapped class.
        names: the column attribute names, in the order of ``values`` (primary key ``id`` first).
        values: the row.
    """
    mapper = inspect(model)
    if not mapper.configured:  # an ORM query would have configured the mappers first
        configure_mappers()
    key = mapper.identity_key_from_primary_key((values[0],))
    existing = db.identity_map.get(key)
    if existing is not None:
        for name, value in zip(names, values, strict=True):
            set_committed_value(existing, name, value)
        return cast(M, existing)
    instance = cast(M, mapper.class_manager.new_instance())
    instance.__dict__.update(zip(names, values, strict=True))
    instance_state(instance).key = key  # type: ignore[assignment]  # Base vs M
    db.add(instance)
    return instance
