"""Every flow of :mod:`authmodels.services` has its async twin in :mod:`authmodels.aio`, under
the same module and function name, with the same signature and docstring.

The list is derived, not written down: every module of ``authmodels.services`` (but the
plumbing in :data:`NOT_MIRRORED`), every name of its ``__all__``. A function whose first
parameter is the session (``db``) must be a coroutine function of the same name in
``authmodels.aio.<module>`` that wraps the original (``__wrapped__``), with the original's
parameters (``db`` annotated ``AsyncSession``) and docstring; every other name must be the very
same object. So a flow added to a service module fails here until ``aio`` has it. The same
holds for :mod:`authmodels.rls` and the entry points of :mod:`authmodels.locking` and
:mod:`authmodels.retention` a web process calls.
"""

from __future__ import annotations

import inspect
import pkgutil
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import authmodels.services

#: Service modules without an async twin, and why.
NOT_MIRRORED = {
    "durable": "the flows' own plumbing (a transaction of its own), used inside them; under "
    "authmodels.aio it runs inside run_sync with the flow",
}
#: Functions of a session that stay plain functions in aio (no database: the session's info).
PLAIN = {"settings.settings_for", "settings.use_settings"}
#: What each mirrored first parameter becomes.
ASYNC_FIRST = {
    "db": AsyncSession,
    "bind": AsyncSession | AsyncConnection,
    "engine": AsyncEngine,
    "conn": AsyncConnection,
}

SERVICE_MODULES = sorted(
    info.name
    for info in pkgutil.iter_modules(authmodels.services.__path__)
    if not info.name.startswith("_") and info.name not in NOT_MIRRORED
)
#: Beyond the services: (sync module, aio module, the names a web process calls).
OTHERS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("authmodels.rls", "authmodels.aio.rls", None),
    ("authmodels.locking", "authmodels.aio.locking", ("update_versioned", "optimistic_update")),
    ("authmodels.retention", "authmodels.aio.retention", ("purge", "load_policies")),
]


def pairs() -> list[tuple[str, ModuleType, ModuleType, str]]:
    """(id, sync module, aio module, name) for every name to check."""
    found = []
    for name in SERVICE_MODULES:
        sync = import_module(f"authmodels.services.{name}")
        twin = import_module(f"authmodels.aio.{name}")
        found += [(f"{name}.{attr}", sync, twin, attr) for attr in sync.__all__]
    for sync_name, aio_name, names in OTHERS:
        sync, twin = import_module(sync_name), import_module(aio_name)
        found += [
            (f"{sync_name.rsplit('.', 1)[-1]}.{attr}", sync, twin, attr)
            for attr in (names or sync.__all__)
        ]
    return found


PAIRS = pairs()


def made_on_an_engine(value: Any) -> bool:
    """A class whose instances hold an engine (their methods reach the database)."""
    return inspect.isclass(value) and "engine" in inspect.signature(value.__init__).parameters


def _check_async_class(flow: str, original: type, mirrored: Any) -> None:
    """The twin of a class made on an engine: a class of its own, made on an ``AsyncEngine``
    with the same other arguments, whose public methods are coroutine functions with the
    original's parameters."""
    assert inspect.isclass(mirrored) and mirrored is not original, flow
    sync_init = inspect.signature(original.__init__).parameters
    async_init = inspect.signature(mirrored.__init__).parameters
    assert list(async_init) == list(sync_init), flow
    assert async_init["engine"].annotation in ("AsyncEngine", AsyncEngine), flow
    methods = {
        name for name, _ in inspect.getmembers(original, inspect.isfunction)
        if not name.startswith("_")
    }  # fmt: skip
    for method in methods:
        twin_method = getattr(mirrored, method, None)
        assert inspect.iscoroutinefunction(twin_method), f"{flow}.{method} must be awaitable"
        assert list(inspect.signature(twin_method).parameters) == list(
            inspect.signature(getattr(original, method)).parameters
        ), f"{flow}.{method}"


def takes_a_connection(function: Any) -> bool:
    if not inspect.isfunction(function):
        return False
    first = next(iter(inspect.signature(function).parameters), None)
    return first in ASYNC_FIRST


def test_every_service_module_has_its_twin_with_the_same_names() -> None:
    for name in SERVICE_MODULES:
        sync = import_module(f"authmodels.services.{name}")
        twin = import_module(f"authmodels.aio.{name}")
        assert twin.__all__ == sync.__all__, name


@pytest.mark.parametrize(("flow", "sync", "twin", "name"), PAIRS, ids=[p[0] for p in PAIRS])
def test_each_name_has_its_async_twin(
    flow: str, sync: ModuleType, twin: ModuleType, name: str
) -> None:
    original, mirrored = getattr(sync, name), getattr(twin, name, None)
    assert mirrored is not None, f"authmodels.aio has no {flow}"
    if made_on_an_engine(original):
        _check_async_class(flow, original, mirrored)
        return
    if not takes_a_connection(original):
        assert mirrored is original, f"aio's {flow} should be the sync module's own object"
        return
    assert mirrored.__doc__ == original.__doc__
    assert mirrored.__name__ == original.__name__
    if flow in PLAIN:
        assert not inspect.iscoroutinefunction(mirrored)
    elif is_context_manager(original):
        assert hasattr(mirrored(None), "__aenter__"), f"{flow} is an async context manager"
        assert "AsyncIterator" in str(inspect.signature(mirrored).return_annotation), flow
    else:
        assert inspect.iscoroutinefunction(mirrored), f"{flow} must be awaitable"
        assert mirrored.__wrapped__ is original, f"{flow} must run the sync original"
    assert_same_signature(flow, original, mirrored)


def is_context_manager(function: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(inspect.unwrap(function))


def assert_same_signature(flow: str, original: Any, mirrored: Any) -> None:
    sync_sig, async_sig = inspect.signature(original), inspect.signature(mirrored)
    (first, *rest), (async_first, *async_rest) = (
        list(sync_sig.parameters.values()),
        list(async_sig.parameters.values()),
    )
    assert (async_first.name, async_first.kind) == (first.name, first.kind), flow
    assert resolve(async_first.annotation, mirrored) == ASYNC_FIRST[first.name], flow
    assert async_rest == rest, f"{flow}: the parameters after the session differ"
    if flow not in PLAIN and not is_context_manager(original):
        assert async_sig.return_annotation == sync_sig.return_annotation, flow


def resolve(annotation: Any, function: Any) -> Any:
    """An annotation, evaluated in the function's module when it is a string."""
    if isinstance(annotation, str):
        return eval(annotation, vars(import_module(function.__module__)))  # noqa: S307
    return annotation


def test_the_derivation_finds_the_flows() -> None:
    """The parametrisation above is not empty or partial: the flows everyone calls are in it."""
    ids = {p[0] for p in PAIRS}
    assert {
        "sessions.validate_session",
        "sessions.rotate_refresh_token",
        "passwords.authenticate",
        "signup.register",
        "tokens.check_dpop_proof",
        "admin.change_role",
        "rls.service_role",
        "rls.set_current_user",
        "locking.update_versioned",
        "retention.purge",
    } <= ids
    assert sum(takes_a_connection(getattr(s, n)) for _, s, _, n in PAIRS) >= 80
