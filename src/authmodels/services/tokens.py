"""Access tokens (issue, validate, revoke) and DPoP proof checking with a ``jti`` replay store.

Access tokens are random (:func:`~authmodels.security.hashing.new_token`), returned raw once and
stored only as keyed digests (``auth.access_tokens.token_hash``). A token may be bound to a DPoP
key (``dpop_jkt``, RFC 9449 section 6): it is then accepted only with a proof made with that key.
Tokens issued from a session carry its id, so revoking the session revokes them; a token issued
at a refresh-token rotation names the one it replaced (``rotated_from``).

:func:`check_dpop_proof` verifies a proof (:func:`authmodels.security.dpop.verify_proof`) and
records its ``jti`` in ``auth.dpop_jtis``: a second proof with the same key and ``jti`` while the
first could still be accepted is a replay (:class:`~authmodels.errors.DPoPReplayError`).

Every function works in the caller's transaction. The refusals that are security events (a DPoP
binding mismatch, a replayed proof) are audited, recorded as ``high`` security events and
**committed in a transaction of their own** (:func:`authmodels.services.durable.durable`) before
the error is raised, so a caller that rolls back on errors does not erase them.

These functions look tokens up before the user is known: under row-level security (revision
0006) run them on the service path (:func:`authmodels.rls.service_role`) or as the tables' owner.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, and_, any_, bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from authmodels.errors import (
    DPoPBindingMismatch,
    DPoPMalformedError,
    DPoPReplayError,
    InvalidInputError,
    InvalidTokenError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models.dpop import MAX_JTI_LENGTH
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.sessions import Session as SessionModel
from authmodels.models.tokens import AccessToken
from authmodels.models.users import User
from authmodels.security.dpop import DPoPProof, normalize_htu, verify_proof
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, audit, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services._replicas import on_replica
from authmodels.services.durable import durable
from authmodels.services.settings import settings_for

__all__ = [
    "IssuedAccessToken",
    "IssuedTokens",
    "check_dpop_proof",
    "issue_access_token",
    "revoke_access_token",
    "token_type",
    "validate_access_token",
]


@dataclass(frozen=True)
class IssuedAccessToken:
    """An access token, raw: hand it to the client, it is not stored anywhere.

    Attributes:
        token: the raw token.
        id: the token's row id.
        expires_at: end of its lifetime.
        token_type: ``"DPoP"`` for a DPoP-bound token, else ``"Bearer"`` (RFC 9449 section 5).
    """

    token: str
    id: uuid.UUID
    expires_at: datetime
    token_type: str

    def __repr__(self) -> str:
        return f"IssuedAccessToken(id={self.id}, expires_at={self.expires_at}, token=<hidden>)"


@dataclass(frozen=True)
class IssuedTokens:
    """A token pair from a refresh-token rotation or a device flow, raw: a token response.

    The pair's access token and refresh token share one id (``pair_id``): the access token
    issued with refresh token ``R`` is the row of ``auth.access_tokens`` whose id is ``R.id``.

    Attributes:
        access_token: the raw access token.
        refresh_token: the raw refresh token.
        token_type: ``"DPoP"`` when the pair is bound to a DPoP key, else ``"Bearer"``.
        expires_at: end of the access token's lifetime.
        refresh_expires_at: end of the refresh token's lifetime.
        pair_id: the id of both rows.
        session_id: the session the pair belongs to.
        user_id: the user it was issued to.
        scope: the scopes granted (space-separated), if any.
    """

    access_token: str
    refresh_token: str
    token_type: str
    expires_at: datetime
    refresh_expires_at: datetime
    pair_id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    scope: str | None = None

    def __repr__(self) -> str:
        return (
            f"IssuedTokens(pair_id={self.pair_id}, session_id={self.session_id}, "
            f"token_type={self.token_type!r}, expires_at={self.expires_at}, tokens=<hidden>)"
        )


def token_type(dpop_jkt: str | None) -> str:
    """The OAuth ``token_type`` of a token bound (or not) to a DPoP key."""
    return "DPoP" if dpop_jkt else "Bearer"


_INSERT_ACCESS_TOKEN = text(
    """
    INSERT INTO auth.access_tokens
           (id, token_hash, user_id, session_id, client_id, scope, dpop_jkt, rotated_from,
            expires_at)
    VALUES (:id, :token_hash, :user_id, :session_id, :client_id, :scope, :dpop_jkt,
            :rotated_from, now() + :ttl)
    RETURNING expires_at
    """
)


_AUDIT_DPOP_MISMATCH = text(
    """
    INSERT INTO auth.session_audits (session_id, user_id, action, details)
    VALUES (:session_id, :user_id, 'dpop_mismatch', CAST(:details AS jsonb))
    """
)


def refuse_dpop_binding(
    db: Session,
    user_id: uuid.UUID,
    details: dict[str, Any],
    presented: str | None,
    *,
    session_id: uuid.UUID | None,
) -> None:
    """Record a token presented without the DPoP key it is bound to (the caller raises).

    An audit entry, a ``high`` security event and a ``dpop_mismatch`` session audit entry (its
    ``session_id`` NULL for an access token issued outside a session), committed in a
    transaction of their own.
    """
    details = {**details, "presented_jkt": presented}
    with durable(db) as side:
        side.execute(
            _AUDIT_DPOP_MISMATCH,
            {"session_id": session_id, "user_id": user_id, "details": json.dumps(details)},
        )
        audit.record(side, "dpop_binding_mismatch", user_id=user_id, status="blocked",
                     details=details)  # fmt: skip
        security_events.record(
            side, "dpop.binding_mismatch", SecurityEventSeverity.HIGH, user_id=user_id,
            details=details,
        )  # fmt: skip


def insert_access_token(
    db: Session,
    *,
    token_id: uuid.UUID,
    raw: str,
    user_id: uuid.UUID,
    ttl: timedelta,
    session_id: uuid.UUID | None,
    client_id: str | None,
    scope: str | None,
    dpop_jkt: str | None,
    rotated_from: uuid.UUID | None,
) -> IssuedAccessToken:
    """Store the digest of ``raw`` as access token ``token_id`` (the flows' shared writer)."""
    expires_at = db.execute(
        _INSERT_ACCESS_TOKEN,
        {
            "id": token_id,
            "token_hash": settings_for(db).hasher.digest(raw),
            "user_id": user_id,
            "session_id": session_id,
            "client_id": client_id,
            "scope": scope,
            "dpop_jkt": dpop_jkt,
            "rotated_from": rotated_from,
            "ttl": ttl,
        },
    ).scalar_one()
    return IssuedAccessToken(raw, token_id, expires_at, token_type(dpop_jkt))


@database_errors
def issue_access_token(
    db: Session,
    user: User | uuid.UUID,
    *,
    ttl: timedelta | None = None,
    client_id: str | None = None,
    scope: str | None = None,
    dpop_jkt: str | None = None,
    session_id: uuid.UUID | None = None,
    rotated_from: uuid.UUID | None = None,
) -> IssuedAccessToken:
    """Issue an access token: a random token, returned raw once, stored as a keyed digest.

    The stored lifetime is not capped at the end of the session named by ``session_id`` (a
    rotation's is), but :func:`validate_access_token` refuses a token whose session has ended,
    so the token never outlives its session.

    Args:
        db: the session; the row is inserted in its transaction (nothing is committed).
        user: the user (or user id) the token acts for.
        ttl: lifetime; ``FlowSettings.access_token_ttl`` (15 minutes) by default.
        client_id: the OAuth client the token is issued to.
        scope: space-separated scopes.
        dpop_jkt: thumbprint of the DPoP key to bind the token to (from a verified proof).
        session_id: the session the token belongs to (revoked with it).
        rotated_from: the access token this one replaces (lineage).

    Returns:
        The raw token, its id and expiry, and its ``token_type``.

    Raises:
        InvalidInputError: ``ttl`` is not a positive timedelta (at most ten years), ``user`` is
            not a user or an id, a text argument is not text of its bounds (``client_id`` 255,
            ``scope`` 2,000 characters; ``dpop_jkt`` a JWK thumbprint), or an id not a UUID.
    """
    user_id = _inputs.user_id_of(user)
    if ttl is not None:
        _inputs.duration(ttl, "ttl")
    client_id = _inputs.optional_text(
        client_id, "client_id", max_length=_inputs.MAX_CLIENT_ID_LENGTH
    )
    scope = _inputs.optional_text(scope, "scope", max_length=_inputs.MAX_SCOPE_LENGTH)
    dpop_jkt = _inputs.jkt(dpop_jkt)
    session_id = _inputs.optional_identifier(session_id, "session_id")
    rotated_from = _inputs.optional_identifier(rotated_from, "rotated_from")
    settings = settings_for(db)
    return insert_access_token(
        db,
        token_id=uuid.uuid4(),
        raw=new_token(),
        user_id=user_id,
        ttl=ttl if ttl is not None else settings.access_token_ttl,
        session_id=session_id,
        client_id=client_id,
        scope=scope,
        dpop_jkt=dpop_jkt,
        rotated_from=rotated_from,
    )


#: Candidates (digests under every key) bound as one bytea[] parameter.
_CANDIDATES = bindparam("candidates", type_=ARRAY(LargeBinary))

_LOOKUP_ACCESS_TOKEN = (
    select(
        AccessToken,
        # a token never outlives its session: the session's end ends it too
        or_(AccessToken.expires_at <= func.now(), SessionModel.expires_at <= func.now()).label(
            "expired"
        ),
        # the session is the kill switch: a token of a revoked session is revoked, and so is a
        # token whose session is gone (possible only by the REPEATABLE READ race of 0018)
        or_(
            ~SessionModel.is_active,
            SessionModel.revoked_at.is_not(None),
            and_(AccessToken.session_id.is_not(None), SessionModel.id.is_(None)),
        ).label("session_revoked"),
    )
    .outerjoin(SessionModel, SessionModel.id == AccessToken.session_id)
    .where(AccessToken.token_hash == any_(_CANDIDATES))
    .execution_options(populate_existing=True)
)


@database_errors
def validate_access_token(db: Session, token: str, *, dpop_jkt: str | None = None) -> AccessToken:
    """The live access token ``token``, checked against the DPoP key it is bound to.

    One indexed query (``uq_access_tokens_token_hash``), no write on success: it may run on
    a read replica (:meth:`authmodels.db.ReplicatedDatabase.replica_session`), where a token
    the replica does not know yet is looked up again on the primary.

    Args:
        db: the session.
        token: the raw access token as presented.
        dpop_jkt: the thumbprint of the key of the request's DPoP proof, already verified with
            :func:`check_dpop_proof` (``proof.jkt``); None for a bearer request.

    Returns:
        The token's row.

    Raises:
        InvalidTokenError: no token has this value.
        TokenRevokedError: the token (or its session) was revoked.
        TokenExpiredError: the token's lifetime ended, or its session's did.
        DPoPBindingMismatch: the token is bound to a DPoP key and the request's proof was made
            with another key, or there is no proof (audited and committed on its own).
        InvalidInputError: ``dpop_jkt`` is not a JWK thumbprint.
    """
    _inputs.presented(token, "access token", hint=": request a new one")
    dpop_jkt = _inputs.jkt(dpop_jkt)
    settings = settings_for(db)
    params = {"candidates": settings.hasher.candidates(token)}
    row = db.execute(_LOOKUP_ACCESS_TOKEN, params).first()
    if row is None and on_replica(db):  # maybe newer than the replica's replay: ask the primary
        with durable(db) as primary:
            row = primary.execute(_LOOKUP_ACCESS_TOKEN, params).first()
            if row is not None:
                found = db.merge(row[0], load=False)
    if row is None:
        raise InvalidTokenError("the access token is not valid: request a new one")
    access: AccessToken = row[0] if row[0] in db else found
    expired, session_revoked = row[1:3]
    if access.revoked_at is not None or session_revoked:
        raise TokenRevokedError("the access token was revoked: request a new one")
    if expired:
        raise TokenExpiredError("the access token expired: refresh it")
    if access.dpop_jkt is not None and access.dpop_jkt != dpop_jkt:
        refuse_dpop_binding(
            db, access.user_id, {"access_token_id": str(access.id)}, dpop_jkt,
            session_id=access.session_id,
        )  # fmt: skip
        raise DPoPBindingMismatch(
            "the access token is bound to a DPoP key: send it with a DPoP proof made with "
            "that key (Authorization: DPoP ...)"
            if dpop_jkt is None
            else "the DPoP proof was made with another key than the one the access token is "
            "bound to"
        )
    return access


_REVOKE_ACCESS_TOKEN = text(
    """
    UPDATE auth.access_tokens SET revoked_at = now()
     WHERE token_hash = ANY(:candidates) AND revoked_at IS NULL
    RETURNING id, user_id
    """
)


@database_errors
def revoke_access_token(db: Session, token: str) -> bool:
    """Revoke an access token (RFC 7009 semantics: an unknown token is not an error).

    Args:
        db: the session; the change is made in its transaction (nothing is committed).
        token: the raw access token.

    Returns:
        True if the token was live and is now revoked; False if it was unknown or already
        revoked.
    """
    try:
        _inputs.presented(token, "access token")
    except InvalidTokenError:
        return False
    row = db.execute(
        _REVOKE_ACCESS_TOKEN, {"candidates": settings_for(db).hasher.candidates(token)}
    ).first()
    if row is None:
        return False
    audit.record(
        db, "access_token_revoked", user_id=row.user_id, details={"access_token_id": str(row.id)}
    )
    return True


#: Longest request URI (``htu``) checked; browsers and servers cap URIs at a few KiB.
MAX_HTU_LENGTH = 8192
#: Longest server nonce (``DPoP-Nonce``) compared.
MAX_NONCE_LENGTH = 1024
#: An HTTP method (RFC 9110 section 9.1: a token).
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")


def _check_request(htm: object, htu: object, access_token: object, nonce: object) -> None:
    """The request's values, before the proof is looked at: the server's own (method, URI,
    nonce) must be well-formed; the access token is the client's credential."""
    _inputs.text(htm, "htm", max_length=32, pattern=_METHOD, form="an HTTP method such as GET")
    url = _inputs.text(htu, "htu", max_length=MAX_HTU_LENGTH)
    try:
        normalize_htu(url)
    except ValueError as exc:
        raise InvalidInputError(f"htu: {exc}", field="htu") from None
    _inputs.optional_text(nonce, "nonce", max_length=MAX_NONCE_LENGTH)
    if access_token is not None:
        _inputs.presented(access_token, "access token", hint=": request a new one")


_RECORD_JTI = text(
    """
    INSERT INTO auth.dpop_jtis AS seen (jkt, jti, expires_at)
    VALUES (:jkt, :jti, :expires_at)
    ON CONFLICT (jkt, jti) DO UPDATE
       SET expires_at = EXCLUDED.expires_at, created_at = now()
     WHERE seen.expires_at <= now()
    RETURNING true
    """
)


@database_errors
def check_dpop_proof(
    db: Session,
    proof: str,
    *,
    htm: str,
    htu: str,
    access_token: str | None = None,
    nonce: str | None = None,
) -> DPoPProof:
    """Verify a DPoP proof (RFC 9449 section 4.3) and refuse a replay of it (section 11.1).

    The proof is verified first (signature, ``htm``, ``htu``, ``iat`` window of
    ``FlowSettings.dpop_max_age`` / ``dpop_leeway``, ``ath``, ``nonce``); then its ``jti`` is
    recorded for its key in ``auth.dpop_jtis`` by one ``INSERT ... ON CONFLICT``. Under
    concurrency the unique key decides: of two requests carrying the same proof, the second
    waits for the first's transaction and then finds the ``jti`` taken.

    The ``jti`` is recorded in the caller's transaction: if that transaction rolls back, the
    request had no effect and the proof may be presented once more while it is fresh.

    Args:
        db: the session.
        proof: the value of the request's ``DPoP`` header.
        htm: the request's method.
        htu: the request's URI.
        access_token: the access token sent with the proof, if any (checks ``ath``).
        nonce: the server nonce the proof must carry, if the server uses nonces.

    Returns:
        The verified proof (``jkt`` to compare with a token's binding, ``jti``, ...).

    Raises:
        DPoPError: a subclass for each check of :func:`~authmodels.security.dpop.verify_proof`.
        DPoPReplayError: a proof with this key and ``jti`` was already accepted while it is
            still fresh (audited and committed on its own).
        InvalidTokenError: ``access_token`` cannot be an access token.
        InvalidInputError: ``htm``, ``htu`` or ``nonce`` (the server's own values) is not
            text of its form: ``htm`` an HTTP method, ``htu`` an absolute http(s) URI.
    """
    _check_request(htm, htu, access_token, nonce)
    settings = settings_for(db)
    verified = verify_proof(
        proof,
        htm=htm,
        htu=htu,
        max_age=settings.dpop_max_age,
        leeway=settings.dpop_leeway,
        access_token=access_token,
        nonce=nonce,
    )
    if len(verified.jti) > MAX_JTI_LENGTH:
        raise DPoPMalformedError(
            f"the DPoP proof's jti is {len(verified.jti)} characters; at most {MAX_JTI_LENGTH} "
            "are accepted"
        )
    problem = _inputs.clean_text_problem(verified.jti)
    if problem is not None:
        raise DPoPMalformedError(f"the DPoP proof's jti {problem}: make a new proof")
    # A proof stops being acceptable at iat + max_age; the leeway covers the clocks of the
    # servers sharing this store. A row past that time is stale: a new proof may reuse its jti
    # (the same proof would fail the iat check), so the conflict updates it instead of refusing.
    expires_at = verified.iat + settings.dpop_max_age + settings.dpop_leeway
    accepted = db.execute(
        _RECORD_JTI, {"jkt": verified.jkt, "jti": verified.jti, "expires_at": expires_at}
    ).first()
    if accepted is None:
        details = {"jkt": verified.jkt, "htm": verified.htm, "htu": verified.htu[:200]}
        with durable(db) as side:  # kept even if the caller rolls back
            audit.record(side, "dpop_proof_replayed", user_id=None, status="blocked",
                         details=details)  # fmt: skip
            security_events.record(
                side, "dpop.proof_replayed", SecurityEventSeverity.HIGH, user_id=None,
                details=details,
            )  # fmt: skip
        raise DPoPReplayError(
            "this DPoP proof was already used: make a new proof (with a new jti) for every request"
        )
    return verified
