"""Connections in autocommit for statements that are a transaction on their own.

:class:`authmodels.services.sessions.SessionValidator` runs one statement per request, in
autocommit. Borrowing a connection of the engine's own pool for it costs a request more than the
statement's client side: the pool's checkout and check-in (its reset-on-return), and switching
the connection into autocommit and back, each a trip through psycopg's wait loop (in one
process, 144 µs per validation through the engine's pool against 112 µs for the same statement
on a connection of its own). So the validator keeps a few connections
of its own, in autocommit for good: made by the engine (its URL, ``connect_args`` and pool
events apply, as for any of its connections: the connection is checked out of the engine's pool
and detached from it), handed out last-in first-out, at most ``max_connections`` at a time.

:class:`AsyncAutocommitConnections` is the same on an async engine (psycopg's asyncio
connections), for :class:`authmodels.aio.sessions.SessionValidator`: a request waiting for a
connection is an ``await``.

A connection whose statement fails is kept unless psycopg reports it broken. A broken connection
that had been idle in the stack (the server restarted, a pooler closed it) is replaced and the
statement run again once on the new one; the statements run here must allow that (a lookup and
a conditional touch do). After ``os.fork`` the child drops the connections it inherited (without
closing them: they are the parent's) and makes its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from authmodels.errors import DatabaseUnavailableError
from authmodels.services._fastpath import prepare_for

__all__ = ["AsyncAutocommitConnections", "AutocommitConnections"]


class AutocommitConnections:
    """At most ``max_connections`` connections of ``engine``, in autocommit (see the module
    docstring). Thread-safe."""

    def __init__(self, engine: Engine, *, max_connections: int, timeout: float) -> None:
        self._engine = engine
        self._max = max_connections
        self._timeout = timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: deque[psycopg.Connection[Any]] = deque()
        self._slots = threading.BoundedSemaphore(self._max)

    def first(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The first row of ``sql`` (psycopg placeholders), run in autocommit, or None.

        Raises:
            DatabaseUnavailableError: every connection stayed busy for ``timeout`` seconds.
        """
        if self._pid != os.getpid():
            self._reset()
        if not self._slots.acquire(timeout=self._timeout):
            raise _all_busy(self._max, self._timeout)
        try:
            try:
                conn, fresh = self._idle.pop(), False
            except IndexError:
                conn, fresh = self._connect(), True
            try:
                return self._execute(conn, sql, params)
            except psycopg.OperationalError:
                if not conn.broken or fresh:
                    raise
            # the connection died while idle in the stack: once more, on a new one
            return self._execute(self._connect(), sql, params)
        finally:
            self._slots.release()

    def _execute(self, conn: psycopg.Connection[Any], sql: str, params: Mapping[str, Any]) -> Any:
        """Run ``sql`` on ``conn``, then put ``conn`` back unless it broke (then close it)."""
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params, prepare=prepare_for(conn))
                return cursor.fetchone()
        finally:
            if conn.broken:
                conn.close()
            else:  # after a statement's own error (refused, canceled) the connection is fine
                self._idle.append(conn)

    def _connect(self) -> psycopg.Connection[Any]:
        pooled = self._engine.raw_connection()
        conn: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        pooled.detach()  # ours now; the engine's pool makes a new one in its place when needed
        conn.autocommit = True
        return conn

    def close(self) -> None:
        """Close the idle connections (the validator makes new ones if it is used again)."""
        if self._pid != os.getpid():
            self._reset()
            return
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return


def _all_busy(most: int, timeout: float) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"all {most} connections of the session validator stayed busy for {timeout:g} s: give "
        "it more (max_connections=) or find what holds them"
    )


class AsyncAutocommitConnections:
    """:class:`AutocommitConnections` on an async engine: use it from one event loop."""

    def __init__(self, engine: AsyncEngine, *, max_connections: int, timeout: float) -> None:
        self._engine = engine
        self._max = max_connections
        self._timeout = timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: deque[psycopg.AsyncConnection[Any]] = deque()
        self._slots = asyncio.Semaphore(self._max)

    async def first(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The first row of ``sql`` (psycopg placeholders), run in autocommit, or None.

        Raises:
            DatabaseUnavailableError: every connection stayed busy for ``timeout`` seconds.
        """
        if self._pid != os.getpid():
            self._reset()
        if self._slots.locked():  # wait_for costs a task: only when there is a wait
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout)
            except TimeoutError:
                raise _all_busy(self._max, self._timeout) from None
        else:
            await self._slots.acquire()
        try:
            try:
                conn, fresh = self._idle.pop(), False
            except IndexError:
                conn, fresh = await self._connect(), True
            try:
                return await self._execute(conn, sql, params)
            except psycopg.OperationalError:
                if not conn.broken or fresh:
                    raise
            # the connection died while idle in the stack: once more, on a new one
            return await self._execute(await self._connect(), sql, params)
        finally:
            self._slots.release()

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], sql: str, params: Mapping[str, Any]
    ) -> Any:
        """Run ``sql`` on ``conn``, then put ``conn`` back unless it broke (then close it)."""
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params, prepare=prepare_for(conn))
                return await cursor.fetchone()
        finally:
            if conn.broken:
                await conn.close()
            else:  # after a statement's own error (refused, canceled) the connection is fine
                self._idle.append(conn)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        pooled = await self._engine.raw_connection()
        conn: psycopg.AsyncConnection[Any] = pooled.driver_connection  # type: ignore[assignment]
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        pooled.detach()  # ours now; the engine's pool makes a new one in its place when needed
        await conn.set_autocommit(True)
        return conn

    async def close(self) -> None:
        """Close the idle connections (the validator makes new ones if it is used again)."""
        if self._pid != os.getpid():
            self._reset()
            return
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            await conn.close()
