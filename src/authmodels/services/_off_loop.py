"""CPU-heavy steps of the flows, kept off the event loop under :mod:`authmodels.aio`.

The async API runs each flow inside ``AsyncSession.run_sync``: the flow's code runs in a greenlet
on the event loop's thread, and its queries are awaited on the asyncio driver, so the loop serves
other requests while the database answers. Python work in between runs on the loop, though, and
one step is long: an Argon2id hash or verification (OWASP's minimum, m=19 MiB and t=2, is tens of
milliseconds of CPU; a password change verifies the new password against up to six stored
hashes). :func:`off_loop` runs such a step in a worker thread when it is called from that
greenlet -- argon2-cffi releases the GIL while it hashes, so the loop keeps serving meanwhile --
and directly otherwise (a sync caller pays nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.util.concurrency import await_only, in_greenlet

P = ParamSpec("P")
T = TypeVar("T")


def off_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: in a worker thread when called from an ``AsyncSession.run_sync``
    greenlet (the event loop waits for it without blocking), else directly."""
    if in_greenlet():
        return await_only(asyncio.to_thread(fn, *args, **kwargs))
    return fn(*args, **kwargs)
