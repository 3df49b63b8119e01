"""The async twin of :mod:`authmodels.services.sessions` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from authmodels.aio._mirror import mirror
from authmodels.errors import ConfigurationError
from authmodels.services import sessions as _sync
from authmodels.services._autocommit_pool import AsyncAutocommitConnections
from authmodels.services._session_validation import (
    VALIDATE_FOR_REQUEST,
    ValidatorCore,
    ValidSession,
    bound_elsewhere,
    refuse_dpop,
)
from authmodels.services.sessions import IssuedSession
from authmodels.services.settings import FlowSettings

__all__ = [
    "IssuedSession",
    "SessionValidator",
    "ValidSession",
    "create_session",
    "revoke_all_sessions",
    "revoke_session",
    "rotate_refresh_token",
    "touch",
    "validate_session",
    "validate_session_alone",
]

create_session = mirror(_sync.create_session)
revoke_all_sessions = mirror(_sync.revoke_all_sessions)
revoke_session = mirror(_sync.revoke_session)
rotate_refresh_token = mirror(_sync.rotate_refresh_token)
touch = mirror(_sync.touch)
validate_session = mirror(_sync.validate_session)
validate_session_alone = mirror(_sync.validate_session_alone)


class SessionValidator:
    """:class:`authmodels.services.sessions.SessionValidator` on an async engine: ``await
    validator.validate(token)`` in an async web request's dependency, one round trip.

    The same statement, checks, errors and touch; its own connections (psycopg's asyncio
    connections made by ``engine``, kept in autocommit), at most ``max_connections`` at a time,
    a request awaiting one for up to ``timeout`` seconds. Use it from one event loop (make it in
    the application's startup, ``await validator.close()`` at shutdown).

    Args:
        engine: the async engine that makes the validator's connections
            (:func:`authmodels.db.create_async_db_engine`), connected to the primary.
        settings: the flows' settings; by default the process's
            (:func:`authmodels.services.settings.default_settings`).
        max_connections: the most connections open at once (requests beyond wait).
        timeout: seconds a request waits for a connection before
            :class:`~authmodels.errors.DatabaseUnavailableError`.

    Raises:
        ConfigurationError: ``engine`` is not an async psycopg 3 engine, ``settings`` is not a
            :class:`~authmodels.services.FlowSettings`, or ``max_connections``/``timeout`` is
            not positive.
        MissingKeyError: no settings are given, none are configured, and
            ``AUTHMODELS_HASH_KEYS`` is not set.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        settings: FlowSettings | None = None,
        max_connections: int = 10,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(engine, AsyncEngine) or engine.dialect.driver != "psycopg":
            raise ConfigurationError(
                "authmodels.aio.sessions.SessionValidator needs an async SQLAlchemy engine on "
                "psycopg 3 (authmodels.db.create_async_db_engine), not "
                f"{type(engine).__name__}; for a synchronous engine use "
                "authmodels.services.sessions.SessionValidator"
            )
        self._core = ValidatorCore("SessionValidator", settings, max_connections, timeout)
        self._engine = engine
        self._connections = AsyncAutocommitConnections(
            engine, max_connections=max_connections, timeout=float(timeout)
        )

    def __repr__(self) -> str:
        return f"SessionValidator({self._engine!r})"

    async def close(self) -> None:
        """Close the validator's idle connections (it opens new ones if used again)."""
        await self._connections.close()

    async def validate(self, token: str, *, dpop_jkt: str | None = None) -> ValidSession:
        """The live session whose token is ``token``: see
        :meth:`authmodels.services.sessions.SessionValidator.validate` (the same errors)."""
        params = self._core.params(token, dpop_jkt)
        try:
            row = await self._connections.first(VALIDATE_FOR_REQUEST, params)
        except psycopg.Error as exc:
            refusal = self._core.refusal(exc)
            if refusal is None:
                raise
            raise refusal from None
        found = self._core.session(row)
        if bound_elsewhere(found, dpop_jkt):
            details = {"session_id": str(found.id)}
            async with AsyncSession(self._engine) as db:
                await db.run_sync(
                    refuse_dpop, found.user_id, details, dpop_jkt, session_id=found.id
                )
        return found
