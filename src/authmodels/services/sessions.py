"""Sessions: create, validate, touch, rotate refresh tokens, revoke.

A session has a session token (validated on every request) and a family of refresh tokens (one
row per rotation in ``auth.refresh_tokens``, each naming its parent). Tokens are random, returned
raw once and stored only as keyed digests. The session row is the kill switch: every token check
joins it, so revoking a session stops its session token, refresh tokens and access tokens at once,
whatever runs concurrently.

Decisions:

- **Validation** (:func:`validate_session`) is one indexed query (``ix_sessions_token_hash``) that
  also computes, with the database's clock, whether the session expired, idled out and is due a
  touch. It writes nothing, except the touch: ``last_activity_at`` is refreshed at most once per
  ``FlowSettings.session_touch_interval`` (60 s by default) by a conditional UPDATE, so a busy
  session costs one write a minute rather than one per request, and the idle timeout is exact to
  within that interval.
- **Rotation** (:func:`rotate_refresh_token`, RFC 9700 section 4.14.2) uses the presented token
  with one conditional UPDATE (``WHERE used_at IS NULL AND revoked_at IS NULL ...``) that also
  inserts the successor pair in the same statement. Of concurrent rotations of one token exactly
  one wins; the others wait on its row lock, then find the token used.
- **Grace window**: a token presented again within ``FlowSettings.refresh_grace_window`` (15 s)
  of its use, while its successor is still unused, gets *the same successor pair* again (a
  concurrent benign refresh, e.g. two browser tabs). The successor's raw values are not stored:
  they are derived, ``HMAC(hash key, purpose || pair id || presented parent token)``, with the
  hash key that digested them and the pair's random id. Only a client holding the raw parent
  token (and only the server holding the key) can obtain them again, and nothing readable is kept
  in the database. Outside the window, or once the successor was used, a used token presented
  again revokes the whole family and the session (:class:`~authmodels.errors.RefreshTokenReused`).
- **DPoP**: a session (and its refresh tokens and access tokens) created with ``dpop_jkt`` is
  bound to that key: it validates and rotates only with a proof of that key. A presentation with
  another key or without a proof is refused (:class:`~authmodels.errors.DPoPBindingMismatch`)
  *before* any reuse check, so someone holding a stolen bound token cannot even cause the
  family's revocation.
- **Refusals that are security events** (reuse, DPoP mismatch) are audited, recorded as
  security events and committed in a transaction of their own
  (:func:`authmodels.services.durable.durable`) before the error is raised, so a caller that
  rolls back on errors does not undo the revocation, and the caller's transaction is left as it
  was.

The two hot statements (the validation lookup and the rotation) run as prepared statements on
the session's own psycopg connection, in its transaction, and the session row is attached to the
ORM session without a second query (:mod:`authmodels.services._fastpath`): the helper keeps the
speed of hand-written SQL (``benchmarks/bench_sessions.py``). :class:`SessionValidator` runs the
validation without an ORM session at all, in autocommit on connections of its own: one round
trip and nothing else per request, for a web request's dependency
(``benchmarks/bench_hot_path.py``).

Lock order, everywhere rows are locked: refresh tokens, then the session, then access tokens.
Rotation locks the presented refresh token (its UPDATE), then the session (``last_rotated_at``);
revocations update the session's refresh tokens, then the session, then its access tokens.

Under row-level security (revision 0006) these functions look tokens up before the user is
known: run them on the service path (:func:`authmodels.rls.service_role`) or as the tables' owner.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import psycopg
from sqlalchemy import Engine, func, insert, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from authmodels.errors import (
    ConfigurationError,
    InvalidTokenError,
    NotAuthorizedError,
    RefreshTokenReused,
    SessionExpiredError,
    SessionRevokedError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models.devices import UserDevice
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.sessions import Session as SessionModel
from authmodels.models.tokens import DIGEST_SCHEME_RAW, token_lookup_params, token_lookup_sql
from authmodels.models.users import User
from authmodels.security.hashing import mac, new_token
from authmodels.services import _inputs, audit, security_events
from authmodels.services._autocommit_pool import AutocommitConnections
from authmodels.services._database_errors import database_errors
from authmodels.services._fastpath import Statement, load_instance
from authmodels.services._replicas import on_replica
from authmodels.services._session_validation import (
    NO_SUCH_SESSION,
    SESSION_COLUMNS,
    VALIDATE_FOR_REQUEST,
    ValidatorCore,
    ValidSession,
    bound_elsewhere,
    lookup_params,
    refuse_dpop,
    refuse_unless_open,
    validate_and_touch,
)
from authmodels.services.durable import durable
from authmodels.services.settings import FlowSettings, settings_for
from authmodels.services.tokens import (
    IssuedTokens,
    token_type,
)

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


@dataclass(frozen=True)
class IssuedSession:
    """A new session with its first refresh token, raw: hand both to the client once.

    Attributes:
        session: the session's row.
        session_token: the raw session token.
        refresh_token: the raw first refresh token of the session's family.
        refresh_token_id: the refresh token's row id.
        refresh_expires_at: end of the refresh token's lifetime.
    """

    session: SessionModel
    session_token: str
    refresh_token: str
    refresh_token_id: uuid.UUID
    refresh_expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedSession(session_id={self.session.id}, tokens=<hidden>)"


# --- create ----------------------------------------------------------------------------------


# the session's first refresh token, and its session audit entry, in one statement
_INSERT_REFRESH_TOKEN = text(
    f"""
    WITH audited AS (
        INSERT INTO auth.session_audits (session_id, user_id, action, ip_hash, ua_hash, details)
        VALUES (:session_id, :user_id, 'created', :ip_hash, :ua_hash,
                jsonb_build_object('dpop_bound', CAST(:dpop_jkt AS text) IS NOT NULL,
                                   'device_id', CAST(:device_id AS text)))
    )
    INSERT INTO auth.refresh_tokens
           (id, user_id, session_id, token_hash, digest_scheme, dpop_jkt, expires_at)
    VALUES (:id, :user_id, :session_id, :token_hash, {DIGEST_SCHEME_RAW}, :dpop_jkt,
            least(now() + :ttl, :session_expires_at))
    RETURNING expires_at
    """  # noqa: S608 (constant fragments, no input)
)


@database_errors
def create_session(
    db: Session,
    user: User | uuid.UUID,
    *,
    ttl: timedelta,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
    dpop_jkt: str | None = None,
    device: UserDevice | uuid.UUID | None = None,
) -> IssuedSession:
    """Start a session for an authenticated user.

    Writes the session, its first refresh token (lifetime ``FlowSettings.refresh_token_ttl``,
    never beyond the session's end), its ``created`` session audit entry (in the refresh
    token's statement) and a ``login`` audit entry, in the caller's transaction (nothing is
    committed). An authentication flow that calls this need not audit the login again.

    Args:
        db: the session.
        user: the user (or user id) who signed in.
        ttl: the session's absolute lifetime.
        ip: the client's address; stored only as a keyed hash.
        user_agent: the client's ``User-Agent``; stored only as a keyed hash.
        dpop_jkt: thumbprint of the client's DPoP key (from a verified proof) to bind the
            session and its refresh tokens to.
        device: the device the session is started on (:func:`authmodels.services.devices.
            record_login`); revoking the device revokes the session. It must be a device of
            ``user`` (the database refuses another's: ``RowNotFoundError``).

    Returns:
        The session row and the raw session and refresh tokens.

    Raises:
        InvalidInputError: ``ttl`` is not a positive timedelta (at most ten years), ``user`` is
            not a user or an id, ``user_agent`` is not text of at most 8,192 characters,
            ``dpop_jkt`` is not a JWK thumbprint, or ``device`` not a device or an id.
        InvalidIPAddressError: ``ip`` is not an IP address.
        RowNotFoundError: ``device`` is not a device of ``user``.
    """
    _inputs.duration(ttl, "ttl")
    user_id = _inputs.user_id_of(user)
    _inputs.user_agent(user_agent)
    _inputs.jkt(dpop_jkt)
    device_id = None if device is None else _inputs.row_id(device, "device", UserDevice)
    settings = settings_for(db)
    session_token, refresh_token = new_token(), new_token()
    values: dict[str, Any] = {
        "user_id": user_id,
        "token_hash": settings.hasher.digest(session_token),
        "digest_scheme": DIGEST_SCHEME_RAW,
        "dpop_jkt": dpop_jkt,
        "expires_at": func.now() + ttl,
        "device_id": device_id,
    }
    if ip is not None:
        values["ip_hash"] = settings.privacy.ip_hash(ip)
    if user_agent is not None:
        values["ua_hash"] = settings.privacy.ua_hash(user_agent)
    session = db.execute(insert(SessionModel).values(**values).returning(SessionModel)).scalar_one()

    refresh_id = uuid.uuid4()
    refresh_expires_at = db.execute(
        _INSERT_REFRESH_TOKEN,
        {
            "id": refresh_id,
            "user_id": user_id,
            "session_id": session.id,
            "token_hash": settings.hasher.digest(refresh_token),
            "dpop_jkt": dpop_jkt,
            "ttl": settings.refresh_token_ttl,
            "session_expires_at": session.expires_at,
            "ip_hash": values.get("ip_hash"),
            "ua_hash": values.get("ua_hash"),
            "device_id": device_id,
        },
    ).scalar_one()

    audit.record(
        db,
        "login",
        user_id=user_id,
        details={"session_id": str(session.id), "dpop_bound": dpop_jkt is not None},
    )
    return IssuedSession(session, session_token, refresh_token, refresh_id, refresh_expires_at)


# --- validate and touch ----------------------------------------------------------------------


#: The session's columns, then its state computed with the database's clock.
_N = len(SESSION_COLUMNS)
_LOOKUP_SESSION = Statement(
    f"""
    SELECT {", ".join(SESSION_COLUMNS)},
           expires_at <= now() AS expired,
           -- NULL (not idle) when the idle timeout is disabled
           last_activity_at <= now() - CAST(:idle AS interval) AS idle,
           last_activity_at <= now() - CAST(:touch AS interval) AS touch_due
      FROM auth.sessions
     WHERE {token_lookup_sql("sessions")}
    """  # noqa: S608 (constant fragments, no input)
)
_TOUCH_IF_DUE = Statement(
    """
    UPDATE auth.sessions SET last_activity_at = now()
     WHERE id = :id AND last_activity_at <= now() - CAST(:touch AS interval)
    RETURNING last_activity_at
    """
)


@database_errors
def validate_session(db: Session, token: str, *, dpop_jkt: str | None = None) -> SessionModel:
    """The live session whose token is ``token``.

    One indexed query finds the session (keyed digests of both digest schemes under every key,
    see :func:`authmodels.models.token_lookup_sql`) and computes its state with the database's
    clock.
    Nothing is written, except ``last_activity_at`` once per touch interval (see the module
    docstring). A session issued before revision 0005 (legacy SHA-256 digest) validates too.
    It may run on a read replica (:meth:`authmodels.db.ReplicatedDatabase.replica_session`):
    a token the replica does not know (issued after what it has replayed) is looked up again on
    the primary, and the touch goes to the primary, each in a transaction of its own.

    Args:
        db: the session.
        token: the raw session token as presented.
        dpop_jkt: the thumbprint of the request's verified DPoP proof, if any.

    Returns:
        The session's row.

    Raises:
        InvalidTokenError: no session has this token.
        SessionRevokedError: the session was revoked (or deactivated).
        SessionExpiredError: the session reached its ``expires_at``.
        SessionIdleTimeoutError: no request for longer than ``FlowSettings.session_idle_timeout``.
        DPoPBindingMismatch: the session is bound to a DPoP key and the request's proof is
            missing or made with another key (audited and committed on its own).
        InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
    """
    _inputs.presented(token, "session token", hint=": sign in again")
    _inputs.jkt(dpop_jkt)
    settings = settings_for(db)
    params = {
        **token_lookup_params(settings.hasher, token),
        "idle": settings.session_idle_timeout,
        "touch": settings.session_touch_interval,
    }
    row = _LOOKUP_SESSION.first(db, params)
    if row is None and on_replica(db):  # maybe newer than the replica's replay: ask the primary
        with durable(db) as primary:
            row = _LOOKUP_SESSION.first(primary, params)
    _refuse_unless_live(db, settings, row, dpop_jkt)
    assert row is not None  # _refuse_unless_live raised otherwise
    values, touch_due = row[:_N], row[_N + 2]
    session = load_instance(db, SessionModel, SESSION_COLUMNS, values)
    if touch_due:
        touch_params = {"id": session.id, "touch": settings.session_touch_interval}
        if on_replica(db):  # a replica refuses writes: the touch is the primary's
            with durable(db) as primary:
                touched = _TOUCH_IF_DUE.first(primary, touch_params)
        else:
            touched = _TOUCH_IF_DUE.first(db, touch_params)
        if touched is not None:
            set_committed_value(session, "last_activity_at", touched[0])
    return session


def _refuse_unless_live(
    db: Session, settings: FlowSettings, row: Sequence[Any] | None, dpop_jkt: str | None
) -> None:
    """The checks of a validation, on a row of :data:`_LOOKUP_SESSION`'s shape (or None)."""
    if row is None:
        raise InvalidTokenError(NO_SUCH_SESSION)
    found = dict(zip(SESSION_COLUMNS, row[:_N], strict=True))
    refuse_unless_open(settings, found["revoked_at"], found["is_active"], row[_N], row[_N + 1])
    if found["dpop_jkt"] is not None and found["dpop_jkt"] != dpop_jkt:
        refuse_dpop(
            db, found["user_id"], {"session_id": str(found["id"])}, dpop_jkt,
            session_id=found["id"],
        )  # fmt: skip


_VALIDATE_AND_TOUCH = validate_and_touch("found.*")
_LAST_ACTIVITY = SESSION_COLUMNS.index("last_activity_at")


@database_errors
def validate_session_alone(db: Session, token: str, *, dpop_jkt: str | None = None) -> SessionModel:
    """:func:`validate_session` in one round trip to the server: for a web request's dependency.

    The same lookup, checks and errors as :func:`validate_session`, and the same touch (at most
    once per ``FlowSettings.session_touch_interval``), but the touch is in the lookup's
    statement, made only when every check passes. When the session's connection has no
    transaction open -- a ``Session`` made for the request, before its first query -- that
    statement runs on its own in autocommit: no ``BEGIN``, no ``COMMIT``, one round trip, and
    the touch is committed when this returns, whatever the request does afterwards. Inside an
    open transaction it runs in that transaction. That holds on psycopg 3's synchronous and
    asyncio connections (``authmodels.aio.sessions.validate_session_alone``); on another driver
    the statement runs in a transaction of the session's, and the touch is kept only if the
    caller commits. On a replica session (:class:`authmodels.db.ReplicatedDatabase`) it is
    :func:`validate_session`: the lookup on the replica, the touch on the primary.

    Under row-level security the lookup happens before the user is known: connect as a role
    registered with ``auth.grant_service_role`` (a pool of its own for validations), or call it
    inside :func:`authmodels.rls.service_role`, which needs a transaction (and so its round
    trips). See docs/flows.md, "Validation in one round trip", for PgBouncer and the engine's
    ``pool_pre_ping``.

    Args:
        db: the session.
        token: the raw session token as presented.
        dpop_jkt: the thumbprint of the request's verified DPoP proof, if any.

    Returns:
        The session's row.

    Raises:
        InvalidTokenError: no session has this token.
        SessionRevokedError: the session was revoked (or deactivated).
        SessionExpiredError: the session reached its ``expires_at``.
        SessionIdleTimeoutError: no request for longer than ``FlowSettings.session_idle_timeout``.
        DPoPBindingMismatch: the session is bound to a DPoP key and the request's proof is
            missing or made with another key (audited and committed on its own).
        InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
        NotAuthorizedError: the connection's role may not read the session (row-level
            security without the service path).
    """
    _inputs.presented(token, "session token", hint=": sign in again")
    _inputs.jkt(dpop_jkt)
    if on_replica(db):  # a replica refuses the statement's UPDATE
        return validate_session(db, token, dpop_jkt=dpop_jkt)
    settings = settings_for(db)
    try:
        row = _VALIDATE_AND_TOUCH.first_alone(db, lookup_params(settings, token, dpop_jkt))
    except psycopg.errors.InsufficientPrivilege:
        raise NotAuthorizedError(
            "sessions.validate_session_alone was refused by the database: the connection's "
            "role may not read sessions before the user is known; connect as a role registered "
            "with auth.grant_service_role, or call it inside authmodels.rls.service_role"
        ) from None
    _refuse_unless_live(db, settings, row, dpop_jkt)
    assert row is not None  # _refuse_unless_live raised otherwise
    values = row[:_N]
    touched = row[_N + 3]
    if touched is not None:
        values = (*values[:_LAST_ACTIVITY], touched, *values[_LAST_ACTIVITY + 1 :])
    return load_instance(db, SessionModel, SESSION_COLUMNS, values)


class SessionValidator:
    """Validate session tokens without an ORM ``Session``: a web request's dependency, in one
    round trip.

    :meth:`validate` runs the statement of :func:`validate_session_alone` -- the same lookup,
    checks, errors and touch (at most once per ``FlowSettings.session_touch_interval``, only
    when every check passes) -- in autocommit, and returns a :class:`ValidSession`. No
    ``Session`` is created, no ``BEGIN`` or ``COMMIT`` is sent: a request costs what a
    hand-written psycopg validation costs (``benchmarks/bench_hot_path.py``), and the touch is
    committed when it returns. Thread-safe: make one validator per process and share it.

    The validator keeps up to ``max_connections`` connections of its own, made by ``engine``
    (its URL, ``connect_args`` and pool events apply) and kept in autocommit; a request waits up
    to ``timeout`` seconds for one. A connection that died while idle (the server restarted) is
    replaced and the statement run again once. :meth:`close` closes the idle ones.

    ``engine`` must be a synchronous engine on psycopg 3 (:func:`authmodels.db.create_db_engine`)
    connected to the primary: the touch is a write, which a hot standby refuses
    (:class:`~authmodels.errors.ReplicaWriteError`). Under row-level security the lookup happens
    before the user is known: give the validator an engine whose role is registered with
    ``auth.grant_service_role``. Behind PgBouncer in transaction mode, an engine made with
    ``pooler="transaction"`` (no server-side prepared statements) works as is.

    Args:
        engine: the engine that makes the validator's connections.
        settings: the flows' settings; by default the process's
            (:func:`authmodels.services.settings.default_settings`).
        max_connections: the most connections open at once (requests beyond wait).
        timeout: seconds a request waits for a connection before
            :class:`~authmodels.errors.DatabaseUnavailableError`.

    Raises:
        ConfigurationError: ``engine`` is not a synchronous psycopg 3 engine, ``settings`` is
            not a :class:`FlowSettings`, or ``max_connections``/``timeout`` is not positive.
            (:class:`authmodels.aio.sessions.SessionValidator` takes an async engine.)
        MissingKeyError: no settings are given, none are configured, and
            ``AUTHMODELS_HASH_KEYS`` is not set.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: FlowSettings | None = None,
        max_connections: int = 10,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(engine, Engine) or engine.dialect.driver != "psycopg":
            raise ConfigurationError(
                "SessionValidator needs a synchronous SQLAlchemy engine on psycopg 3 "
                "(authmodels.db.create_db_engine, a postgresql+psycopg:// URL), not "
                f"{type(engine).__name__}"
                + (f" on {engine.dialect.driver}" if isinstance(engine, Engine) else "")
            )
        self._core = ValidatorCore("SessionValidator", settings, max_connections, timeout)
        self._engine = engine
        self._connections = AutocommitConnections(
            engine, max_connections=max_connections, timeout=float(timeout)
        )

    def __repr__(self) -> str:
        return f"SessionValidator({self._engine!r})"

    def close(self) -> None:
        """Close the validator's idle connections (it opens new ones if used again)."""
        self._connections.close()

    @database_errors
    def validate(self, token: str, *, dpop_jkt: str | None = None) -> ValidSession:
        """The live session whose token is ``token`` (see the class docstring).

        Args:
            token: the raw session token as presented.
            dpop_jkt: the thumbprint of the request's verified DPoP proof, if any.

        Returns:
            The session, touched if its touch was due.

        Raises:
            InvalidTokenError: no session has this token.
            SessionRevokedError: the session was revoked (or deactivated).
            SessionExpiredError: the session reached its ``expires_at``.
            SessionIdleTimeoutError: no request for longer than
                ``FlowSettings.session_idle_timeout``.
            DPoPBindingMismatch: the session is bound to a DPoP key and the request's proof is
                missing or made with another key (audited and committed on its own).
            InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
            NotAuthorizedError: the engine's role may not read sessions (row-level security,
                and a role not registered with ``auth.grant_service_role``).
            ReplicaWriteError: the engine is connected to a hot standby.
            DatabaseUnavailableError: every connection stayed busy for ``timeout`` seconds.
        """
        params = self._core.params(token, dpop_jkt)
        try:
            row = self._connections.first(VALIDATE_FOR_REQUEST, params)
        except psycopg.Error as exc:
            refusal = self._core.refusal(exc)
            if refusal is None:
                raise
            raise refusal from None
        found = self._core.session(row)
        if bound_elsewhere(found, dpop_jkt):
            with Session(self._engine) as db:
                refuse_dpop(db, found.user_id, {"session_id": str(found.id)}, dpop_jkt,
                            session_id=found.id)  # fmt: skip
        return found


_TOUCH = text(
    """
    UPDATE auth.sessions SET last_activity_at = now()
     WHERE id = :id AND is_active AND revoked_at IS NULL AND expires_at > now()
    RETURNING last_activity_at
    """
)


@database_errors
def touch(db: Session, session: SessionModel | uuid.UUID) -> bool:
    """Record activity on a live session now (``last_activity_at``), whatever the interval.

    :func:`validate_session` already touches sessions once per interval; call this when
    activity happens without a validation (a long-running request, a websocket message).

    Args:
        db: the session; the UPDATE runs in its transaction (nothing is committed).
        session: the session row or id.

    Returns:
        True if the session is live and was touched; False if it is revoked, expired or unknown.

    Raises:
        InvalidInputError: ``session`` is neither a session row nor an id.
    """
    session_id = _inputs.row_id(session, "session", SessionModel)
    touched = db.execute(_TOUCH, {"id": session_id}).scalar_one_or_none()
    if touched is not None and isinstance(session, SessionModel):
        set_committed_value(session, "last_activity_at", touched)
    return touched is not None


# --- rotate ----------------------------------------------------------------------------------


_ROTATE = Statement(
    f"""
    WITH used AS (
        -- the rule: a refresh token is exchanged once, while it and its session are live,
        -- and only with the DPoP key it is bound to
        UPDATE auth.refresh_tokens AS rt
           SET used_at = now()
          FROM auth.sessions AS s
         WHERE {token_lookup_sql("rt")}
           AND rt.used_at IS NULL AND rt.revoked_at IS NULL AND rt.expires_at > now()
           AND (rt.dpop_jkt IS NULL OR rt.dpop_jkt = :dpop_jkt)
           AND s.id = rt.session_id
           AND s.is_active AND s.revoked_at IS NULL AND s.expires_at > now()
        RETURNING rt.id, rt.user_id, rt.session_id, rt.dpop_jkt,
                  s.expires_at AS session_expires_at
    ),
    previous AS (
        -- the session's newest access token: lineage, client and scope of the new one
        SELECT a.id, a.client_id, a.scope
          FROM used, LATERAL (
                SELECT id, client_id, scope FROM auth.access_tokens
                 WHERE session_id = used.session_id
                 ORDER BY created_at DESC, id DESC LIMIT 1
          ) AS a
    ),
    refresh AS (
        INSERT INTO auth.refresh_tokens
               (id, user_id, session_id, parent_token_id, token_hash, digest_scheme, dpop_jkt,
                expires_at)
        SELECT :pair_id, user_id, session_id, id, :refresh_hash, {DIGEST_SCHEME_RAW}, dpop_jkt,
               least(now() + :refresh_ttl, session_expires_at)
          FROM used
        RETURNING expires_at
    ),
    access AS (
        INSERT INTO auth.access_tokens
               (id, token_hash, user_id, session_id, client_id, scope, dpop_jkt, rotated_from,
                expires_at)
        SELECT :pair_id, :access_hash, used.user_id, used.session_id, previous.client_id,
               previous.scope, used.dpop_jkt, previous.id,
               least(now() + :access_ttl, used.session_expires_at)
          FROM used LEFT JOIN previous ON true
        RETURNING expires_at, scope
    ),
    rotated AS (
        UPDATE auth.sessions AS s SET last_rotated_at = now(), last_activity_at = now()
          FROM used WHERE s.id = used.session_id
    ),
    audited AS (
        INSERT INTO auth.session_audits (session_id, user_id, action, details)
        SELECT used.session_id, used.user_id, 'rotated',
               jsonb_build_object('refresh_token_id', used.id, 'pair_id', :pair_id)
          FROM used
    )
    SELECT used.user_id, used.session_id, used.dpop_jkt,
           refresh.expires_at AS refresh_expires_at, access.expires_at, access.scope
      FROM used, refresh, access
    """  # noqa: S608 (constant fragments, no input)
)

#: Set before each rotation attempt (in the same round trip); see rotate_refresh_token.
_ROTATION_SAVEPOINT = "authmodels_rotation"

#: One session audit entry, for the paths that are not a statement of their own already.
_AUDIT_SESSION = text(
    """
    INSERT INTO auth.session_audits (session_id, user_id, action, details)
    VALUES (:session_id, :user_id, CAST(:action AS auth.session_audit_action),
            CAST(:details AS jsonb))
    """
)

# The grace window is measured from the moment the token was used to this statement (not to
# now(), the start of this transaction, which may precede a concurrent rotation's use).
_INSPECT_REFRESH_TOKEN = text(
    f"""
    SELECT rt.id, rt.user_id, rt.session_id, rt.dpop_jkt, rt.used_at,
           rt.revoked_at IS NOT NULL AS revoked,
           rt.expires_at <= now() AS expired,
           statement_timestamp() - rt.used_at < :grace AS in_grace,
           NOT s.is_active OR s.revoked_at IS NOT NULL AS session_revoked,
           s.expires_at <= now() AS session_expired,
           next.id AS next_id, next.token_hash AS next_hash,
           next.used_at IS NULL AND next.revoked_at IS NULL AND next.expires_at > now()
               AS next_usable,
           next.expires_at AS next_expires_at,
           a.expires_at AS access_expires_at, a.scope AS access_scope
      FROM auth.refresh_tokens AS rt
      JOIN auth.sessions AS s ON s.id = rt.session_id
      LEFT JOIN auth.refresh_tokens AS next
             ON next.session_id = rt.session_id AND next.parent_token_id = rt.id
      LEFT JOIN auth.access_tokens AS a ON a.id = next.id
     WHERE {token_lookup_sql("rt")}
    """  # noqa: S608 (constant fragments, no input)
)


@database_errors
def rotate_refresh_token(
    db: Session, refresh_token: str, *, dpop_jkt: str | None = None
) -> IssuedTokens:
    """Exchange a refresh token for a new access token and refresh token (RFC 9700 4.14.2).

    The presented token is used by one conditional UPDATE that inserts the successor pair in
    the same statement (one round trip); the session's ``last_rotated_at`` and
    ``last_activity_at`` are set. When the token cannot be used, the reason decides:

    - used, within the grace window, successor still unused: the same successor pair again
      (audited as ``refresh_token_grace_replay``);
    - used otherwise: the family and the session are revoked, audited
      (``refresh_token_reused``), recorded as a ``high`` security event and **committed** in a
      transaction of their own, then :class:`RefreshTokenReused`;
    - bound to another DPoP key: audited and recorded the same way, then
      :class:`DPoPBindingMismatch`.

    Args:
        db: the session; a successful rotation is written in its transaction (not committed).
        refresh_token: the raw refresh token as presented.
        dpop_jkt: the thumbprint of the request's verified DPoP proof, if any.

    Returns:
        The new pair, raw, and their expiry.

    Raises:
        InvalidTokenError: no refresh token has this value.
        DPoPBindingMismatch: the token is bound to another DPoP key, or no proof was sent.
        TokenRevokedError: the token was revoked (its family was revoked earlier).
        SessionRevokedError: its session was revoked.
        TokenExpiredError: the token's lifetime ended.
        SessionExpiredError: its session ended.
        RefreshTokenReused: the token was already exchanged, outside the grace window.
        InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
    """
    _inputs.presented(refresh_token, "refresh token", hint=": sign in again")
    _inputs.jkt(dpop_jkt)
    settings = settings_for(db)
    lookup = token_lookup_params(settings.hasher, refresh_token)
    for _ in range(2):  # a second pass only if the token changed between the two statements
        pair_id = uuid.uuid4()
        kid = settings.hasher.current
        new_refresh = _derive(settings, kid, "refresh", pair_id, refresh_token)
        new_access = _derive(settings, kid, "access", pair_id, refresh_token)
        rotated = _ROTATE.first(
            db,
            savepoint=_ROTATION_SAVEPOINT,
            params={
                **lookup,
                "dpop_jkt": dpop_jkt,
                "pair_id": pair_id,
                "refresh_hash": settings.hasher.digest(new_refresh),
                "access_hash": settings.hasher.digest(new_access),
                "refresh_ttl": settings.refresh_token_ttl,
                "access_ttl": settings.access_token_ttl,
            },
        )
        if rotated is not None:
            user_id, session_id, bound_to, refresh_expires_at, expires_at, scope = rotated
            return IssuedTokens(
                access_token=new_access,
                refresh_token=new_refresh,
                token_type=token_type(bound_to),
                expires_at=expires_at,
                refresh_expires_at=refresh_expires_at,
                pair_id=pair_id,
                session_id=session_id,
                user_id=user_id,
                scope=scope,
            )

        # The token was not usable. If the UPDATE waited for a concurrent rotation of this
        # token, it still holds the token's row lock (PostgreSQL keeps the lock on a row whose
        # re-check failed): undo the statement, so that a revocation in a transaction of its
        # own (below) does not wait on this one. Then find out why (same lookup, any state).
        db.execute(text(f"ROLLBACK TO SAVEPOINT {_ROTATION_SAVEPOINT}"))
        token = db.execute(
            _INSPECT_REFRESH_TOKEN, {**lookup, "grace": settings.refresh_grace_window}
        ).first()
        if token is None:
            raise InvalidTokenError("the refresh token is not valid: sign in again")
        if token.dpop_jkt is not None and token.dpop_jkt != dpop_jkt:
            refuse_dpop(
                db, token.user_id, {"refresh_token_id": str(token.id)}, dpop_jkt,
                session_id=token.session_id,
            )  # fmt: skip
        if token.session_revoked:
            raise SessionRevokedError(
                "the session of this refresh token was revoked: sign in again"
            )
        if token.revoked:
            raise TokenRevokedError("the refresh token was revoked: sign in again")
        if token.session_expired:
            raise SessionExpiredError("the session of this refresh token expired: sign in again")
        if token.expired:
            raise TokenExpiredError("the refresh token expired: sign in again")
        if token.used_at is None:
            continue  # it became usable again (a concurrent rotation rolled back): retry
        replay = _grace_replay(settings, token, refresh_token)
        if replay is not None:
            audit.record(
                db,
                "refresh_token_grace_replay",
                user_id=token.user_id,
                details={"session_id": str(token.session_id), "pair_id": str(token.next_id)},
            )
            db.execute(
                _AUDIT_SESSION,
                {"session_id": token.session_id, "user_id": token.user_id,
                 "action": "refreshed",
                 "details": json.dumps({"grace_replay": True, "pair_id": str(token.next_id)})},
            )  # fmt: skip
            return replay
        details = {
            "session_id": str(token.session_id),
            "refresh_token_id": str(token.id),
            "used_at": token.used_at.isoformat(),
        }
        # kept even if the caller rolls back (nothing here is locked by the caller's
        # transaction: the UPDATE above matched no row)
        with durable(db) as side:
            _revoke_sessions(side, session_id=token.session_id, reason="refresh_token_reused")
            side.execute(
                _AUDIT_SESSION,
                {"session_id": token.session_id, "user_id": token.user_id,
                 "action": "reuse_detected", "details": json.dumps(details)},
            )  # fmt: skip
            audit.record(
                side, "refresh_token_reused", user_id=token.user_id, status="blocked",
                details=details,
            )  # fmt: skip
            security_events.record(
                side, "refresh_token.reused", SecurityEventSeverity.HIGH,
                user_id=token.user_id, details=details,
            )  # fmt: skip
        raise RefreshTokenReused(
            "the refresh token was already used: its session and all its tokens have been "
            "revoked; sign in again"
        )
    raise TokenRevokedError("the refresh token could not be used: sign in again")


def _derive(settings: FlowSettings, kid: str, purpose: str, pair_id: uuid.UUID, parent: str) -> str:
    """A successor token: ``base64url(HMAC(hash key kid, purpose || pair id || parent))``.

    The input starts with a NUL-separated domain, so it never equals a token (URL-safe base64
    text) or a privacy hash input; the output has the form of :func:`new_token` (43 chars).
    """
    key = settings.hash_keys.keys[kid]
    digest = mac(key, f"authmodels.refresh-successor\x00{purpose}\x00{pair_id}\x00{parent}")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _grace_replay(settings: FlowSettings, token: Any, presented: str) -> IssuedTokens | None:
    """The successor pair of ``token`` again, if the grace window allows it; else None."""
    if not token.in_grace or token.next_id is None or not token.next_usable:
        return None
    if token.access_expires_at is None:
        return None
    kid = settings.hasher.key_id_of(token.next_hash)
    if kid not in settings.hash_keys.keys:
        return None  # the key that made the successor was retired: it cannot be re-derived
    refresh = _derive(settings, kid, "refresh", token.next_id, presented)
    if not settings.hasher.matches(refresh, token.next_hash):
        return None
    return IssuedTokens(
        access_token=_derive(settings, kid, "access", token.next_id, presented),
        refresh_token=refresh,
        token_type=token_type(token.dpop_jkt),
        expires_at=token.access_expires_at,
        refresh_expires_at=token.next_expires_at,
        pair_id=token.next_id,
        session_id=token.session_id,
        user_id=token.user_id,
        scope=token.access_scope,
    )


# --- revoke ----------------------------------------------------------------------------------

#: Longest revocation ``reason`` (kept in ``sessions.revoked_reason`` and the audit entry).
MAX_REASON_LENGTH = 200

# In the lock order: the refresh tokens, then the sessions, then the access tokens.
_REVOKE_REFRESH_TOKENS = text(
    """
    UPDATE auth.refresh_tokens SET revoked_at = now()
     WHERE session_id = ANY(:session_ids) AND revoked_at IS NULL
    """
)
# each session revoked gets its session audit entry in the same statement
_REVOKE_SESSIONS = text(
    """
    WITH revoked AS (
        UPDATE auth.sessions
           SET is_active = false, revoked_at = now(), revoked_reason = :reason
         WHERE id = ANY(:session_ids) AND revoked_at IS NULL
        RETURNING id, user_id
    ), audited AS (
        INSERT INTO auth.session_audits (session_id, user_id, action, details)
        SELECT id, user_id, 'revoked', jsonb_build_object('reason', CAST(:reason AS text))
          FROM revoked
    )
    SELECT id FROM revoked
    """
)
_REVOKE_ACCESS_TOKENS = text(
    """
    UPDATE auth.access_tokens SET revoked_at = now()
     WHERE session_id = ANY(:session_ids) AND revoked_at IS NULL
    """
)
_LIVE_SESSIONS_OF_USER = text(
    """
    SELECT id FROM auth.sessions
     WHERE user_id = :user_id AND is_active AND revoked_at IS NULL AND id <> ALL(:keep)
     ORDER BY id
    """
)


def _revoke_sessions(
    db: Session,
    *,
    session_id: uuid.UUID | None = None,
    session_ids: list[uuid.UUID] | None = None,
    reason: str,
) -> list[uuid.UUID]:
    """Revoke sessions with their refresh and access tokens; the ids actually revoked now."""
    ids = session_ids if session_ids is not None else [session_id]
    params = {"session_ids": ids, "reason": reason}
    db.execute(_REVOKE_REFRESH_TOKENS, params)
    revoked = list(db.execute(_REVOKE_SESSIONS, params).scalars())
    db.execute(_REVOKE_ACCESS_TOKENS, params)
    return revoked


def revoke_sessions(db: Session, session_ids: list[uuid.UUID], *, reason: str) -> int:
    """Revoke the sessions of ``session_ids`` with their tokens, each with its session audit
    entry (the flows' set-based revocation; arguments already checked). How many were live."""
    return len(_revoke_sessions(db, session_ids=session_ids, reason=reason)) if session_ids else 0


@database_errors
def revoke_session(
    db: Session, session: SessionModel | uuid.UUID, *, reason: str = "logout"
) -> bool:
    """Revoke one session with its refresh tokens and access tokens.

    Audited as ``logout`` when ``reason`` is ``"logout"``, else as ``session_revoked``. Works in
    the caller's transaction (nothing is committed).

    Args:
        db: the session.
        session: the session row or id.
        reason: why (kept in ``sessions.revoked_reason``).

    Returns:
        True if the session was live and is now revoked; False if it already was revoked or
        does not exist.

    Raises:
        InvalidInputError: ``session`` is neither a session row nor an id, or ``reason`` is not
            text of 1 to 200 characters.
    """
    session_id = _inputs.row_id(session, "session", SessionModel)
    _inputs.text(reason, "reason", max_length=MAX_REASON_LENGTH)
    revoked = _revoke_sessions(db, session_id=session_id, reason=reason)
    if not revoked:
        return False
    user_id = db.execute(
        text("SELECT user_id FROM auth.sessions WHERE id = :id"), {"id": session_id}
    ).scalar_one()
    audit.record(
        db,
        "logout" if reason == "logout" else "session_revoked",
        user_id=user_id,
        details={"session_id": str(session_id), "reason": reason},
    )
    if isinstance(session, SessionModel):
        db.refresh(session)
    return True


@database_errors
def revoke_all_sessions(
    db: Session,
    user: User | uuid.UUID,
    *,
    reason: str,
    except_session: SessionModel | uuid.UUID | None = None,
) -> int:
    """Revoke every live session of a user (password change, account compromise, "log out
    everywhere"), with their refresh tokens and access tokens.

    One ``session_revoked`` audit entry names the reason and the count. Works in the caller's
    transaction (nothing is committed).

    Args:
        db: the session.
        user: the user (or user id).
        reason: why (kept in ``sessions.revoked_reason`` and in the audit entry).
        except_session: a session to keep (the one changing the password), if any.

    Returns:
        How many sessions were revoked.

    Raises:
        InvalidInputError: ``user`` or ``except_session`` is neither a row nor an id, or
            ``reason`` is not text of 1 to 200 characters.
    """
    user_id = _inputs.user_id_of(user)
    _inputs.text(reason, "reason", max_length=MAX_REASON_LENGTH)
    keep = (
        []
        if except_session is None
        else [_inputs.row_id(except_session, "except_session", SessionModel)]
    )
    ids = list(db.execute(_LIVE_SESSIONS_OF_USER, {"user_id": user_id, "keep": keep}).scalars())
    revoked = _revoke_sessions(db, session_ids=ids, reason=reason) if ids else []
    audit.record(
        db,
        "session_revoked",
        user_id=user_id,
        details={"reason": reason, "sessions": len(revoked), "all": True},
    )
    return len(revoked)
