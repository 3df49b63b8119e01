"""authmodels' typed errors as HTTP answers.

Two styles, by endpoint:

- **resources** (every route but the token endpoint): RFC 6750 and RFC 9449 challenges. A
  credential refused is 401 with ``WWW-Authenticate`` naming the scheme the request used
  (``Bearer`` or ``DPoP``; both when it sent none) and an ``error``: ``invalid_token``,
  ``invalid_dpop_proof``, ``use_dpop_nonce`` (with a fresh ``DPoP-Nonce``), or RFC 9470's
  ``insufficient_user_authentication`` for a missing or spent step-up. 403 for a signed-in user
  who may not do this, 409 for a conflict (a stale version, an admin guard, an address taken),
  429 with ``Retry-After`` for a limit (or a locked account), 422 for input, 404 for an id that
  names nothing.
- **the token endpoint** (RFC 6749 section 5.2, RFC 9449 section 8): 400 with a JSON ``error``
  (``invalid_grant``, ``invalid_dpop_proof``, ``use_dpop_nonce`` with ``DPoP-Nonce``); 429 as
  above.

The first matching row of :data:`RESOURCE_ERRORS` decides (subclasses before their bases), so
a new error of authmodels falls back to its family's answer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from authmodels import errors
from authmodels.locking import RowNotFoundError
from authmodels.security.dpop import SUPPORTED_ALGORITHMS

_log = logging.getLogger("authservice")

REALM = "authservice"
DPOP_ALGS = " ".join(sorted(SUPPORTED_ALGORITHMS))


class MissingCredentials(errors.AuthenticationError):
    """The request carries no session cookie and no access token."""


@dataclass(frozen=True)
class Answer:
    """How a family of errors is answered on a resource."""

    status: int
    code: str
    #: the ``error`` of the ``WWW-Authenticate`` challenge (401 and 403 only), or None
    challenge: str | None = None


#: RFC 9470: the action needs a fresher authentication (a step-up token)
STEP_UP = Answer(401, "step_up_required", challenge="insufficient_user_authentication")

RESOURCE_ERRORS: list[tuple[type[Exception], Answer]] = [
    (errors.InvalidInputError, Answer(422, "invalid_request")),
    (errors.WeakPasswordError, Answer(422, "weak_password")),
    (errors.PasswordReusedError, Answer(422, "password_reused")),
    (errors.TooManyRequestsError, Answer(429, "too_many_requests")),
    (errors.TooManyUserCodeAttempts, Answer(429, "too_many_requests")),
    (errors.AccountLockedError, Answer(429, "account_locked")),
    (MissingCredentials, Answer(401, "unauthorized", challenge="")),
    (errors.DPoPNonceError, Answer(401, "use_dpop_nonce", challenge="use_dpop_nonce")),
    (errors.DPoPBindingMismatch, Answer(401, "invalid_token", challenge="invalid_token")),
    (errors.DPoPError, Answer(401, "invalid_dpop_proof", challenge="invalid_dpop_proof")),
    (
        errors.StepUpTokenInvalid,
        Answer(401, "step_up_required", "insufficient_user_authentication"),
    ),
    (
        errors.StepUpTokenExpired,
        Answer(401, "step_up_required", "insufficient_user_authentication"),
    ),
    (errors.StepUpTokenUsed, Answer(401, "step_up_required", "insufficient_user_authentication")),
    (RowNotFoundError, Answer(404, "not_found")),
    (errors.InsufficientScopeError, Answer(403, "insufficient_scope", "insufficient_scope")),
    (errors.InvalidCredentialsError, Answer(401, "invalid_credentials", challenge="")),
    (errors.AuthenticationError, Answer(401, "invalid_token", challenge="invalid_token")),
    (errors.NotAuthorizedError, Answer(403, "forbidden")),
    (errors.ConcurrentUpdateError, Answer(409, "conflict")),
    (errors.GuardViolation, Answer(409, "conflict")),
    (errors.EmailTakenError, Answer(409, "conflict")),
    (errors.RecoveryCoolingOffError, Answer(409, "conflict")),
    (errors.UnknownDeviceError, Answer(404, "not_found")),
    (errors.DeliveryNotFoundError, Answer(404, "not_found")),
    (errors.ConfigurationError, Answer(500, "server_error")),
    (errors.AuthModelsError, Answer(400, "bad_request")),
]

#: The token endpoint's ``error`` for each family (RFC 6749 section 5.2, RFC 9449 section 8).
TOKEN_ERRORS: list[tuple[type[Exception], str]] = [
    (errors.InvalidInputError, "invalid_request"),
    (errors.DPoPNonceError, "use_dpop_nonce"),
    (errors.DPoPError, "invalid_dpop_proof"),
    (errors.AuthenticationError, "invalid_grant"),
]


def answer_for(exc: Exception) -> Answer:
    """The first row of :data:`RESOURCE_ERRORS` that ``exc`` is an instance of."""
    return next(answer for kind, answer in RESOURCE_ERRORS if isinstance(exc, kind))


def problem(request: Request, exc: Exception) -> JSONResponse:
    """The HTTP answer to ``exc`` (an :class:`authmodels.errors.AuthModelsError`)."""
    answer = answer_for(exc)
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    retry_after = _retry_after(exc)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, errors.DPoPError):
        headers["DPoP-Nonce"] = request.app.state.nonces.current()
    if answer.status == 500:
        _log.error("authmodels refused to run: %s", exc)
        return JSONResponse({"error": answer.code}, status_code=500, headers=headers)
    body: dict[str, Any] = {"error": answer.code, "detail": str(exc)}
    if isinstance(exc, errors.InvalidInputError):
        body["field"] = exc.field

    if getattr(request.state, "token_endpoint", False):
        code = next((c for kind, c in TOKEN_ERRORS if isinstance(exc, kind)), None)
        if code is not None and answer.status != 429:
            return JSONResponse(
                {"error": code, "error_description": str(exc)}, status_code=400, headers=headers
            )

    if answer.challenge is not None:
        headers["WWW-Authenticate"] = _challenge(request, answer.challenge, str(exc))
    return JSONResponse(body, status_code=answer.status, headers=headers)


def _challenge(request: Request, error: str, description: str) -> str:
    """The ``WWW-Authenticate`` value: the scheme the request used, or both when it used none."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    used_dpop = scheme == "dpop" or "DPoP" in request.headers
    params = f'realm="{REALM}"'
    if error:
        quoted = description.replace("\\", "\\\\").replace('"', "'")
        params += f', error="{error}", error_description="{quoted}"'
    if used_dpop:
        return f'DPoP {params}, algs="{DPOP_ALGS}"'
    if scheme == "bearer" or error in ("insufficient_user_authentication", "insufficient_scope"):
        return f"Bearer {params}"
    return f'Bearer {params}, DPoP realm="{REALM}", algs="{DPOP_ALGS}"'


def _retry_after(exc: Exception) -> int | None:
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, int):
        return max(1, seconds)
    until = getattr(exc, "locked_until", None)
    if isinstance(until, datetime):
        return max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return None
