"""How a function of :mod:`authmodels.aio` is made from its sync original: one implementation.

:func:`mirror` turns ``f(db: Session, ...)`` into ``async f(db: AsyncSession, ...)`` that runs
``f`` through :meth:`AsyncSession.run_sync <sqlalchemy.ext.asyncio.AsyncSession.run_sync>`: the
sync flow runs in a greenlet of SQLAlchemy's, its statements are awaited on the asyncio driver,
and what it returns or raises is what the coroutine returns or raises. The mirror keeps the
original's name, docstring and signature (``db`` annotated ``AsyncSession``, the return
annotation the awaited value's), and ``__wrapped__`` names the original.

:func:`mirror_bind` does the same for functions that take a ``Session`` or a ``Connection``
(:mod:`authmodels.rls`), :func:`mirror_context` for their context managers (``rls.as_user``,
``rls.service_role``), entered and left through ``run_sync`` too (:func:`driven`), and
:func:`mirror_engine` for jobs that take an ``Engine`` (the retention purge), run on the async
engine's ``sync_engine`` with ``greenlet_spawn``, which is what ``run_sync`` does underneath.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import greenlet_spawn

P = ParamSpec("P")
T = TypeVar("T")

#: What :mod:`authmodels.rls` functions take, async: a session or a connection.
AsyncBind = AsyncSession | AsyncConnection


def mirror(
    fn: Callable[Concatenate[Session, P], T],
) -> Callable[Concatenate[AsyncSession, P], Coroutine[Any, Any, T]]:
    """The async twin of ``fn(db: Session, ...)``: ``await twin(async_db, ...)``."""

    async def twin(*args: Any, **kwargs: Any) -> T:
        db: AsyncSession = args[0] if args else kwargs.pop("db")
        return await db.run_sync(fn, *args[1:], **kwargs)

    describe(twin, fn, "db", AsyncSession)
    return twin


def mirror_bind(
    fn: Callable[Concatenate[Session | Connection, P], T],
) -> Callable[Concatenate[AsyncBind, P], Coroutine[Any, Any, T]]:
    """The async twin of ``fn(bind: Session | Connection, ...)``, for an ``AsyncSession`` or an
    ``AsyncConnection``."""

    async def twin(*args: Any, **kwargs: Any) -> T:
        bind: AsyncBind = args[0] if args else kwargs.pop("bind")
        return await bind.run_sync(fn, *args[1:], **kwargs)

    describe(twin, fn, "bind", AsyncBind)
    return twin


def mirror_context(
    fn: Callable[Concatenate[Session | Connection, P], AbstractContextManager[None]],
) -> Callable[Concatenate[AsyncBind, P], AbstractAsyncContextManager[None]]:
    """The async twin of a context manager ``fn(bind, ...)``: ``async with twin(bind, ...)``.

    The sync manager is entered, and left (with the block's exception, if any), through
    ``run_sync``: its code, and the SQL it runs, stay the one implementation.
    """

    @asynccontextmanager
    async def twin(bind: AsyncBind, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[None]:
        async with driven(bind, fn(_sync_bind(bind), *args, **kwargs)):
            yield

    describe(twin, fn, "bind", AsyncBind, returns=AsyncIterator[None])
    return twin


def mirror_engine(
    fn: Callable[Concatenate[Engine, P], T],
) -> Callable[Concatenate[AsyncEngine, P], Coroutine[Any, Any, T]]:
    """The async twin of ``fn(engine: Engine, ...)`` (a job that opens its own connections, such
    as the retention purge): ``fn`` runs on the async engine's ``sync_engine`` in a greenlet of
    SQLAlchemy's, each of its statements awaited on the asyncio driver."""

    async def twin(*args: Any, **kwargs: Any) -> T:
        engine: AsyncEngine = args[0] if args else kwargs.pop("engine")
        return await greenlet_spawn(fn, engine.sync_engine, *args[1:], **kwargs)

    describe(twin, fn, "engine", AsyncEngine)
    return twin


@asynccontextmanager
async def driven(bind: AsyncBind, manager: AbstractContextManager[Any]) -> AsyncIterator[None]:
    """Enter the sync context manager ``manager`` of ``bind``'s sync session or connection
    through ``run_sync``, and leave it the same way, with the block's exception if any."""
    await bind.run_sync(lambda _: manager.__enter__())
    try:
        yield
    except BaseException:
        raised = sys.exc_info()
        if not await bind.run_sync(lambda _: manager.__exit__(*raised)):
            raise
    else:
        await bind.run_sync(lambda _: manager.__exit__(None, None, None))


def _sync_bind(bind: AsyncBind) -> Session | Connection:
    if isinstance(bind, AsyncSession):
        return bind.sync_session
    return bind.sync_connection  # type: ignore[return-value]  # None only before connecting


def describe(
    twin: Any,
    fn: Callable[..., Any],
    first: str,
    annotation: object,
    *,
    returns: object = inspect.Signature.empty,
) -> None:
    """Give ``twin`` ``fn``'s name, docstring and signature, its first parameter annotated
    ``annotation`` (and its return annotation ``returns``, when given)."""
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].name != first:
        raise TypeError(f"{fn.__qualname__} does not take {first!r} first: it cannot be mirrored")
    parameters[0] = parameters[0].replace(annotation=annotation)
    annotations = {**getattr(fn, "__annotations__", {}), first: annotation}
    if returns is not inspect.Signature.empty:
        signature = signature.replace(return_annotation=returns)
        annotations["return"] = returns
    twin.__signature__ = signature.replace(parameters=parameters)
    twin.__annotations__ = annotations
    twin.__name__ = fn.__name__
    twin.__qualname__ = fn.__qualname__
    twin.__doc__ = fn.__doc__
    twin.__module__ = f"authmodels.aio.{fn.__module__.rsplit('.', 1)[-1]}"
    twin.__wrapped__ = fn
