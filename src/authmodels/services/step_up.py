"""Step-up tokens: proof of a recent re-authentication, spent once on one sensitive action.

A service re-authenticates the user (password, TOTP, WebAuthn...), then :func:`issue` s a token
for one ``purpose`` (``admin.role_change``...). The action :func:`consume` s it. The table
(revision 0009) keeps only the keyed digest; the lifetime is capped at 15 minutes by a CHECK.

Decisions:

- **Exactly once**: :func:`consume` is one conditional ``UPDATE ... SET used_at = now() WHERE
  token_hash = ANY(:candidates) AND user_id = :u AND purpose = :p AND used_at IS NULL AND
  expires_at > now() RETURNING``. Of concurrent consumers, one updates the row; the others wait
  on its row lock, re-evaluate the condition on the new row version (READ COMMITTED), update
  nothing and get :class:`~authmodels.errors.StepUpTokenUsed`.
- The token is bound to its user, purpose and (when issued with one) session *in the query*: a
  token of another user, earned for another action or presented from another session is simply
  not found (:class:`~authmodels.errors.StepUpTokenInvalid`).
- Nothing is committed here; the caller's transaction carries the consumption with the action
  it authorises, so a failed action can roll both back.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    StepUpTokenExpired,
    StepUpTokenInvalid,
    StepUpTokenUsed,
)
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.step_up import PURPOSE_PATTERN, STEP_UP_MAX_LIFETIME_MINUTES
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, audit, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = ["DEFAULT_PURPOSE", "MAX_TTL", "consume", "issue"]

#: The purpose of tokens spent by :func:`authmodels.services.admin.change_role`.
DEFAULT_PURPOSE = "admin.role_change"
#: Longest lifetime a step-up token may have (``ck_step_up_tokens_lifetime``).
MAX_TTL = timedelta(minutes=STEP_UP_MAX_LIFETIME_MINUTES)
_PURPOSE = re.compile(PURPOSE_PATTERN)


def _purpose(value: object) -> str:
    """``value`` if it is a purpose ``ck_step_up_tokens_purpose_format`` accepts."""
    return _inputs.text(
        value,
        "purpose",
        pattern=_PURPOSE,
        form=f"a name of the form {PURPOSE_PATTERN}, such as {DEFAULT_PURPOSE!r}",
    )


_INSERT = text(
    """
    INSERT INTO auth.step_up_tokens (user_id, session_id, token_hash, purpose, expires_at)
    VALUES (:user_id, :session_id, :token_hash, :purpose, now() + :ttl)
    RETURNING id
    """
)


@database_errors
def issue(
    db: Session,
    user: User | uuid.UUID,
    *,
    ttl: timedelta,
    purpose: str = DEFAULT_PURPOSE,
    session_id: uuid.UUID | None = None,
) -> str:
    """Issue a step-up token after the user re-authenticated.

    Writes the token's digest and a ``step_up_issued`` audit entry in the caller's transaction
    (nothing is committed).

    Args:
        db: the session.
        user: the user (or user id) who re-authenticated.
        ttl: lifetime, positive and at most 15 minutes.
        purpose: the action the token authorises (``^[a-z][a-z0-9_.:-]{0,63}$``).
        session_id: the session that re-authenticated, if the token should be tied to it.

    Returns:
        The raw token: hand it to the client once; only its digest is stored.

    Raises:
        InvalidInputError: ``ttl`` is not positive or longer than 15 minutes, ``purpose`` is
            not of the form above, ``user`` not a user or an id, ``session_id`` not a UUID.
    """
    _inputs.duration(ttl, "ttl", maximum=MAX_TTL)
    _purpose(purpose)
    user_id = _inputs.user_id_of(user)
    _inputs.optional_identifier(session_id, "session_id")
    settings = settings_for(db)
    raw = new_token()
    token_id = db.execute(
        _INSERT,
        {
            "user_id": user_id,
            "session_id": session_id,
            "token_hash": settings.hasher.digest(raw),
            "purpose": purpose,
            "ttl": ttl,
        },
    ).scalar_one()
    audit.record(
        db,
        "step_up_issued",
        user_id=user_id,
        action=purpose,
        details={"step_up_token_id": str(token_id), "purpose": purpose},
    )
    return raw


# the rule: one use, by its user, for its purpose, in its session (when bound), while it lives
_CONSUME = text(
    """
    UPDATE auth.step_up_tokens SET used_at = now()
     WHERE token_hash = ANY(:candidates) AND user_id = :user_id AND purpose = :purpose
       AND (session_id IS NULL OR session_id = CAST(:session_id AS uuid))
       AND used_at IS NULL AND expires_at > now()
    RETURNING id
    """
)
_WHY_NOT = text(
    """
    SELECT used_at IS NOT NULL AS used, expires_at <= now() AS expired
      FROM auth.step_up_tokens
     WHERE token_hash = ANY(:candidates) AND user_id = :user_id AND purpose = :purpose
       AND (session_id IS NULL OR session_id = CAST(:session_id AS uuid))
    """
)


@database_errors
def consume(
    db: Session,
    user: User | uuid.UUID,
    token: str,
    *,
    purpose: str = DEFAULT_PURPOSE,
    session_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Spend a step-up token of ``user`` for ``purpose``: succeeds once, even concurrently.

    Writes ``used_at`` and a ``step_up_used`` audit entry in the caller's transaction (nothing
    is committed).

    Args:
        db: the session.
        user: the user (or user id) who must own the token.
        token: the raw token as presented.
        purpose: the action being authorised.
        session_id: the session presenting the token; a token issued for a session is only
            accepted there (and never when this is None).

    Returns:
        The token's row id.

    Raises:
        StepUpTokenInvalid: no token of this user for this purpose (and session) has this
            value.
        StepUpTokenUsed: the token was already spent (by this or a concurrent request).
        StepUpTokenExpired: the token's lifetime ended.
        InvalidInputError: ``purpose`` is not of the form :func:`issue` accepts, ``user`` not a
            user or an id, ``session_id`` not a UUID.
    """
    _purpose(purpose)
    user_id = _inputs.user_id_of(user)
    _inputs.optional_identifier(session_id, "session_id")
    _inputs.presented(token, "step-up token", error=StepUpTokenInvalid, hint=": re-authenticate")
    settings = settings_for(db)
    params = {
        "candidates": settings.hasher.candidates(token),
        "user_id": user_id,
        "purpose": purpose,
        "session_id": session_id,
    }
    token_id: uuid.UUID | None = db.execute(_CONSUME, params).scalar_one_or_none()
    if token_id is None:
        why = db.execute(_WHY_NOT, params).first()
        if why is None:
            raise StepUpTokenInvalid(
                f"no step-up token of this user for {purpose!r} matches: re-authenticate"
            )
        if why.used:
            security_events.report(
                db, "step_up.token_reused", SecurityEventSeverity.MEDIUM, user_id=user_id,
                details={"purpose": purpose},
            )  # fmt: skip
            raise StepUpTokenUsed(
                "the step-up token was already used; each token authorises one action: "
                "re-authenticate"
            )
        raise StepUpTokenExpired("the step-up token expired: re-authenticate")
    audit.record(
        db,
        "step_up_used",
        user_id=user_id,
        action=purpose,
        details={"step_up_token_id": str(token_id), "purpose": purpose},
    )
    return token_id
