"""What the session validations share: the statement that looks a session up and touches it,
the checks of its row, and the part of :class:`~authmodels.services.sessions.SessionValidator`
that is the same in its async twin (:class:`authmodels.aio.sessions.SessionValidator`): its
arguments, its parameters, the checks and the typed errors of the database's refusals.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import psycopg
from sqlalchemy.orm import Session

from authmodels.errors import (
    AuthModelsError,
    ConfigurationError,
    DPoPBindingMismatch,
    InvalidTokenError,
    NotAuthorizedError,
    ReplicaWriteError,
    SessionExpiredError,
    SessionIdleTimeoutError,
    SessionRevokedError,
)
from authmodels.models.sessions import Session as SessionModel
from authmodels.models.tokens import token_lookup_params, token_lookup_sql
from authmodels.services import _inputs
from authmodels.services._fastpath import Statement, columns_of
from authmodels.services.settings import FlowSettings, default_settings
from authmodels.services.tokens import refuse_dpop_binding

__all__ = [
    "NO_SUCH_SESSION",
    "SESSION_COLUMNS",
    "VALIDATE_FOR_REQUEST",
    "ValidSession",
    "ValidatorCore",
    "bound_elsewhere",
    "lookup_params",
    "refuse_dpop",
    "refuse_unless_open",
    "validate_and_touch",
]

#: The session's columns, in table order.
SESSION_COLUMNS = columns_of(SessionModel)
NO_SUCH_SESSION = "the session token is not valid: sign in again"


def refuse_unless_open(
    settings: FlowSettings,
    revoked_at: datetime | None,
    is_active: bool,
    expired: bool,
    idle: bool | None,
) -> None:
    """Raise the error of a session that is revoked, expired or idle (its state as the
    database's clock computed it), in that order of precedence."""
    if revoked_at is not None or (not is_active and not expired):
        raise SessionRevokedError("the session was revoked: sign in again")
    if expired:
        raise SessionExpiredError("the session expired: sign in again")
    if idle:
        raise SessionIdleTimeoutError(
            f"the session was idle for longer than {settings.session_idle_timeout}: sign in again"
        )


def refuse_dpop(
    db: Session,
    user_id: uuid.UUID,
    details: dict[str, Any],
    presented: str | None,
    *,
    session_id: uuid.UUID,
) -> NoReturn:
    """Record a token presented without the DPoP key it is bound to, then refuse it."""
    refuse_dpop_binding(db, user_id, details, presented, session_id=session_id)
    raise DPoPBindingMismatch(
        "this token is bound to a DPoP key: send a DPoP proof made with that key"
        if presented is None
        else "the DPoP proof was made with another key than the one this token is bound to"
    )


def validate_and_touch(select: str) -> Statement:
    """The lookup of a presented session token and its touch in one statement, returning
    ``select`` (columns of ``found``: the session's columns, ``expired``, ``idle``,
    ``touch_due``) and, last, the touched ``last_activity_at`` (NULL when not touched).

    The touch happens only when every check of a validation passes (live, not idle, the
    request's DPoP key when the session has one), so a refused validation writes nothing.
    """
    return Statement(
        f"""
        WITH found AS (
            SELECT {", ".join(SESSION_COLUMNS)},
                   expires_at <= now() AS expired,
                   last_activity_at <= now() - CAST(:idle AS interval) AS idle,
                   last_activity_at <= now() - CAST(:touch AS interval) AS touch_due
              FROM auth.sessions
             WHERE {token_lookup_sql("sessions")}
        ), touched AS (
            UPDATE auth.sessions AS s SET last_activity_at = now()
              FROM found
             WHERE s.id = found.id AND found.touch_due
               -- the checks: live, not idle, and the request's DPoP key when it has one
               AND found.revoked_at IS NULL AND found.is_active AND NOT found.expired
               AND found.idle IS NOT TRUE
               AND (found.dpop_jkt IS NULL OR found.dpop_jkt = CAST(:dpop_jkt AS text))
               AND s.last_activity_at <= now() - CAST(:touch AS interval)
            RETURNING s.last_activity_at
        )
        SELECT {select}, (SELECT last_activity_at FROM touched) FROM found
        """  # noqa: S608 (constant fragments, no input)
    )


def lookup_params(settings: FlowSettings, token: str, dpop_jkt: str | None) -> dict[str, Any]:
    """The parameters of :func:`validate_and_touch`'s statement for a checked ``token``."""
    params: dict[str, Any] = token_lookup_params(settings.hasher, token)
    params["idle"] = settings.session_idle_timeout
    params["touch"] = settings.session_touch_interval
    params["dpop_jkt"] = dpop_jkt
    return params


@dataclass(frozen=True, slots=True)
class ValidSession:
    """A live session, as a :class:`~authmodels.services.sessions.SessionValidator` found it
    (not an ORM object).

    Attributes:
        id: the session's id.
        user_id: its user.
        created_at: when it was created.
        expires_at: the end of its lifetime.
        last_activity_at: its last activity, after this validation's touch if it made one.
        device_id: its trusted device (``auth.user_devices``), if any.
        dpop_jkt: the thumbprint of the DPoP key it is bound to, if any.
    """

    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    last_activity_at: datetime
    device_id: uuid.UUID | None
    dpop_jkt: str | None


_RETURNED = [field.name for field in dataclasses.fields(ValidSession)]
#: The validators' statement: what they return, then what their checks need.
VALIDATE_FOR_REQUEST = validate_and_touch(
    ", ".join(f"found.{name}" for name in (*_RETURNED, "revoked_at", "is_active"))
    + ", found.expired, found.idle"
).psycopg_sql
_V = len(_RETURNED)
_LAST_ACTIVITY = _RETURNED.index("last_activity_at")


class ValidatorCore:
    """The arguments, parameters, checks and refusals of both validators (the sync one and its
    async twin differ only in how they reach the database)."""

    def __init__(
        self, name: str, settings: FlowSettings | None, max_connections: int, timeout: float
    ) -> None:
        if settings is not None and not isinstance(settings, FlowSettings):
            raise ConfigurationError(
                f"settings must be a FlowSettings, not {type(settings).__name__}"
            )
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ConfigurationError(
                f"max_connections must be a whole number of at least 1, not {max_connections!r}"
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError(
                f"timeout must be a number of seconds above 0, not {timeout!r}"
            )
        self.name = name
        self.settings = settings if settings is not None else default_settings()

    def params(self, token: str, dpop_jkt: str | None) -> dict[str, Any]:
        """The statement's parameters, after the checks of the arguments (before any query).

        Raises:
            InvalidTokenError: ``token`` cannot be a session token.
            InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
        """
        _inputs.presented(token, "session token", hint=": sign in again")
        _inputs.jkt(dpop_jkt)
        return lookup_params(self.settings, token, dpop_jkt)

    def refusal(self, exc: psycopg.Error) -> AuthModelsError | None:
        """The typed error of a refusal by the database that the engine's role or server
        causes, or None for another error."""
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return NotAuthorizedError(
                f"{self.name}.validate was refused by the database: the engine's role may not "
                "read sessions before the user is known; give the validator an engine whose "
                "role is registered with auth.grant_service_role"
            )
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return ReplicaWriteError(
                f"{self.name}.validate touches sessions, and its engine is connected to a read "
                "replica, which refuses writes: give the validator the primary's engine"
            )
        return None

    def session(self, row: Any) -> ValidSession:
        """The session of the statement's row, or the refusal of its state (the caller checks
        the DPoP binding: :meth:`ValidSession.dpop_jkt`)."""
        if row is None:
            raise InvalidTokenError(NO_SUCH_SESSION)
        refuse_unless_open(self.settings, row[_V], row[_V + 1], row[_V + 2], row[_V + 3])
        values = list(row[:_V])
        if row[-1] is not None:  # touched
            values[_LAST_ACTIVITY] = row[-1]
        return ValidSession(*values)


def bound_elsewhere(found: ValidSession, dpop_jkt: str | None) -> bool:
    """Whether ``found`` is bound to a DPoP key the request's proof was not made with."""
    return found.dpop_jkt is not None and found.dpop_jkt != dpop_jkt
