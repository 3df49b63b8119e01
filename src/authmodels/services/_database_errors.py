"""The database's refusals a flow's arguments can cause, as typed errors.

The flows check their arguments before any query (:mod:`._inputs`), but two refusals depend on
the rows and the role, which only the database knows:

- SQLSTATE ``42501`` (insufficient privilege): row-level security refused a row (a request
  acting as one user wrote a row of another), a guard trigger refused a change (a user raising
  their own privileges, revisions 0017 and 0024), or the role lacks a privilege (the application
  role running the owner's maintenance). Raised as
  :class:`~authmodels.errors.NotAuthorizedError`.
- SQLSTATE ``23503`` (foreign key violation): an id names no row (or a row the role may not
  see). Raised as :class:`~authmodels.locking.RowNotFoundError`.
- SQLSTATE ``25006`` (read-only SQL transaction): a flow that writes ran on a read replica
  (:meth:`authmodels.db.ReplicatedDatabase.replica_session`). Raised as
  :class:`~authmodels.errors.ReplicaWriteError`.

Either way the statement failed: the caller's transaction is aborted (roll it back, as after any
error), and nothing of the call was written. Every public flow is wrapped in
:func:`database_errors`; any other database error is raised unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

from authmodels.errors import NotAuthorizedError, ReplicaWriteError
from authmodels.locking import RowNotFoundError

P = ParamSpec("P")
R = TypeVar("R")

INSUFFICIENT_PRIVILEGE = "42501"
FOREIGN_KEY_VIOLATION = "23503"
READ_ONLY_SQL_TRANSACTION = "25006"


def database_errors(flow: Callable[P, R]) -> Callable[P, R]:
    """Wrap a public flow: the refusals above become typed errors (see the module docstring)."""

    @functools.wraps(flow)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return flow(*args, **kwargs)
        except (DBAPIError, psycopg.Error) as exc:
            # the fast path's statements raise psycopg's errors unwrapped (services._fastpath)
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            sqlstate = getattr(orig, "sqlstate", None)
            name = f"{flow.__module__.rsplit('.', 1)[-1]}.{flow.__name__}"
            if sqlstate == READ_ONLY_SQL_TRANSACTION:
                raise ReplicaWriteError(
                    f"{name} writes, and ran on a read replica, which refuses writes: run it on "
                    "the primary (ReplicatedDatabase.session()); only "
                    "authmodels.db.REPLICA_FLOWS may run on a replica session"
                ) from None
            if sqlstate not in (INSUFFICIENT_PRIVILEGE, FOREIGN_KEY_VIOLATION):
                raise
            diag = getattr(orig, "diag", None)
            primary = getattr(diag, "message_primary", None) or str(orig)
            detail = getattr(diag, "message_detail", None)
            message = f"{primary} ({detail})" if detail else primary
            if sqlstate == FOREIGN_KEY_VIOLATION:
                raise RowNotFoundError(
                    f"{flow.__module__.rsplit('.', 1)[-1]}.{flow.__name__}: a row it refers to "
                    f"does not exist, or is not visible to this role: {message}"
                ) from None
            raise NotAuthorizedError(
                f"{flow.__module__.rsplit('.', 1)[-1]}.{flow.__name__} was refused by the "
                f"database: {message}. Run it as the signed-in user the rows belong to "
                "(authmodels.rls.set_current_user), or on the service path where its docstring "
                "says so (authmodels.rls.service_role)"
            ) from None

    return run
