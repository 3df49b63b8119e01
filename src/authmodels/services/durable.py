"""Writes that must outlive the caller's transaction: refusals, counters, security events.

A flow that refuses a request sometimes has to keep a trace the next request depends on -- a
counted failed login, a revoked token family, a replayed proof's security event -- even when
the caller rolls back on the error, as a web framework does. Committing the caller's session
would also commit whatever the caller had done before, end its ``SET LOCAL ROLE`` (the service
path of row-level security) and break ``Session.begin()`` blocks. So these writes go through
:func:`durable`, an autonomous transaction: a second connection of the same engine, from a pool
of its own (a pool shared with the caller's could be exhausted by requests that each hold one
connection and wait for a second; behind a transaction-mode pooler, a pool of its own there
too: :func:`authmodels.db.set_durable_url`), running as the caller runs -- the same
``current_user`` (so the service path stays the service path) and the same ``auth.uid()`` --
and committed when the block ends.

Rules for the flows that use it:

- The block must not need a lock the caller's transaction holds (the two would wait on each
  other until ``lock_timeout``): a flow writes there only rows its own transaction has not locked.
- The autonomous transaction sees what is committed, not the caller's uncommitted rows.
- The flows expect READ COMMITTED (PostgreSQL's default): the caller's next statement sees what
  the block committed.

Under :mod:`authmodels.aio` (an async engine, the flow inside ``AsyncSession.run_sync``) the
second engine is made the same way from the async engine's: the same ``psycopg_async`` URL and
a recreated asyncio pool, used from the flow's greenlet. Waiting for one of its connections, or
for a row lock, is then an ``await``: the event loop serves other requests meanwhile
(``tests/aio/test_event_loop.py`` holds the row lock from a coroutine of the same loop).

When a session's whole transaction is thrown away anyway (the pytest plugin's sessions, whose
outer transaction is rolled back at teardown, and ``authmodels demo``), set
``db.info[DURABLE_WRITES_KEY] = CALLER_TRANSACTION``: the block is then a SAVEPOINT of the
caller's transaction, which sees the caller's uncommitted rows.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from authmodels.db import create_db_engine, durable_target, replica_primary

__all__ = ["CALLER_TRANSACTION", "DURABLE_WRITES_KEY", "OWN_TRANSACTION", "after_commit", "durable"]

_log = logging.getLogger("authmodels.services")

#: Key of :attr:`sqlalchemy.orm.Session.info` choosing where :func:`durable` writes.
DURABLE_WRITES_KEY = "authmodels.services.durable_writes"
#: A transaction of its own, on a second connection (the default).
OWN_TRANSACTION = "own_transaction"
#: A SAVEPOINT of the caller's transaction (sessions whose transaction is rolled back anyway).
CALLER_TRANSACTION = "caller_transaction"

#: How long an autonomous write waits for a row lock before it gives up.
LOCK_TIMEOUT = "5s"

_CALLBACKS = "authmodels.services.after_durable_commit"

# the caller's identity, copied onto the autonomous transaction
_IDENTITY = text(
    "SELECT current_user <> session_user AS switched, current_user AS role, "
    "current_setting('authmodels.user_id', true) AS uid"
)
_ASSUME = text(
    "SELECT set_config('role', CASE WHEN :switched THEN :role ELSE 'none' END, true), "
    "set_config('authmodels.user_id', coalesce(:uid, ''), true), "
    "set_config('lock_timeout', :lock_timeout, true)"
)

_engines: weakref.WeakKeyDictionary[Pool, Engine] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def _autonomous_engine(engine: Engine) -> Engine:
    """An Engine on a pool of its own, with the connection settings of ``engine``'s pool."""
    with _engines_lock:
        found = _engines.get(engine.pool)
        if found is None:
            target = durable_target(engine)
            if target is None:
                found = create_engine(engine.url, pool=engine.pool.recreate())
            else:  # a pool of its own at the pooler too (authmodels.db.set_durable_url)
                found = create_db_engine(target.url, pooler=target.pooler)
            _engines[engine.pool] = found

            @event.listens_for(engine, "engine_disposed")
            def _dispose(_: Engine) -> None:  # the caller's engine goes: so do these connections
                with _engines_lock:
                    autonomous = _engines.pop(engine.pool, None)
                if autonomous is not None:
                    autonomous.dispose()

        return found


@contextmanager
def durable(db: Session) -> Iterator[Session]:
    """A session whose writes are committed at the end of the block, whatever ``db`` does next.

    The session shares ``db``'s ``info`` (its flow settings). Callbacks registered in the block
    with :func:`after_commit` run once the writes are committed; an exception in the block
    rolls them back and none runs.
    """
    if db.info.get(DURABLE_WRITES_KEY) == CALLER_TRANSACTION:
        with db.begin_nested():
            callbacks: list[Callable[[], None]] = []
            db.info[_CALLBACKS] = callbacks
            try:
                yield db
            finally:
                del db.info[_CALLBACKS]
        _run(callbacks)
        return

    identity = db.execute(_IDENTITY).one()
    # a replica session's writes go to its primary (authmodels.db.ReplicatedDatabase)
    engine = _autonomous_engine(replica_primary(db) or db.connection().engine)
    info: dict[Any, Any] = {**db.info, _CALLBACKS: []}
    with Session(engine, info=info, expire_on_commit=False) as side, side.begin():
        side.execute(
            _ASSUME,
            {
                "switched": identity.switched,
                "role": identity.role,
                "uid": identity.uid or None,
                "lock_timeout": LOCK_TIMEOUT,
            },
        )
        yield side
    _run(info[_CALLBACKS])


def after_commit(db: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the :func:`durable` block ``db`` belongs to has committed.

    Outside such a block (``db`` is the caller's own session) it runs at once.
    """
    callbacks = db.info.get(_CALLBACKS)
    if callbacks is None:
        _run([callback])
    else:
        callbacks.append(callback)


def _run(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failing notification must never turn into the flow's error
            _log.exception("a callback after a durable write failed")
