"""Per-request dependencies: the database session, the DPoP proof, the signed-in principal.

One ``AsyncSession`` per request, one transaction: a route commits at its end (the flows never
commit the caller's transaction); on an error the session is closed, which rolls back -- what a
flow must keep after a refusal (a counted failed login, a revoked token family) it committed on
its own already.

:func:`principal` is the guard of every protected route. On the **service path**
(:func:`service_path`: nobody is known yet) it checks the request's DPoP proof, then its
credential -- an access token (``Authorization: Bearer`` or ``DPoP``) or the session cookie --
and then names the user for the rest of the transaction (``rls.set_current_user``): from there
on, row-level security shows the route only that user's rows.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from authmodels import errors
from authmodels.aio import rls, sessions, tokens
from authmodels.models import User
from authmodels.models.enums import UserRole
from authservice.config import ServiceConfig
from authservice.problems import MissingCredentials

SESSION_COOKIE = "session"


async def database(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session (closed, so rolled back unless committed, when the request ends)."""
    async with request.app.state.sessions() as db:
        yield db


Db = Annotated[AsyncSession, Depends(database)]


def config(request: Request) -> ServiceConfig:
    """The service's configuration."""
    config: ServiceConfig = request.app.state.config
    return config


Config = Annotated[ServiceConfig, Depends(config)]


@asynccontextmanager
async def service_path(db: AsyncSession, cfg: ServiceConfig) -> AsyncIterator[None]:
    """The service path for part of the transaction: the service role, naming no user (a user
    named there would be refused writing what only the service may write about them, such as a
    failed-login counter); the role and the user are restored after it."""
    async with rls.service_role(db, cfg.service_role), rls.as_user(db, None):
        yield


def htu(request: Request) -> str:
    """The request's URI as a DPoP proof names it (without query)."""
    return str(request.url.replace(query="", fragment=""))


def client_ip(request: Request) -> str | None:
    """The client's address, when it is one (the ASGI server's peer)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


async def dpop_jkt(
    request: Request, response: Response, db: AsyncSession, *, access_token: str | None = None
) -> str | None:
    """The thumbprint of the request's DPoP proof, verified (with a server nonce) and recorded
    against replay; None without a ``DPoP`` header. Run it on the service path."""
    proof = request.headers.get("DPoP")
    if proof is None:
        return None
    nonces = request.app.state.nonces
    verified = await tokens.check_dpop_proof(
        db,
        proof,
        htm=request.method,
        htu=htu(request),
        access_token=access_token,
        nonce=nonces.expected_for(proof),
    )
    response.headers["DPoP-Nonce"] = nonces.current()
    return verified.jkt


@dataclass(frozen=True)
class Principal:
    """Who the request acts for, and how it proved it.

    Attributes:
        user_id: the user.
        session_id: the sign-in (session) the credential belongs to.
        via: ``"cookie"``, ``"Bearer"`` or ``"DPoP"``.
    """

    user_id: uuid.UUID
    session_id: uuid.UUID
    via: str


async def principal(request: Request, response: Response, db: Db, cfg: Config) -> Principal:
    """Validate the request's credential on the service path, then name its user (RLS).

    Raises:
        MissingCredentials: no cookie and no access token.
        authmodels.errors.AuthenticationError: the credential is refused (its subclass says
            why); DPoP errors when the proof is.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("", "bearer", "dpop") or (scheme and not token):
        raise errors.InvalidTokenError(
            "the Authorization header is not 'Bearer <token>' or 'DPoP <token>'"
        )
    async with service_path(db, cfg):
        jkt = await dpop_jkt(request, response, db, access_token=token or None)
        if scheme == "dpop" and jkt is None:
            raise errors.DPoPMalformedError("a DPoP token needs a DPoP proof header")
        if token:
            access = await tokens.validate_access_token(db, token, dpop_jkt=jkt)
            if access.session_id is None:
                raise errors.InvalidTokenError("this access token belongs to no sign-in")
            found = Principal(access.user_id, access.session_id, "DPoP" if jkt else "Bearer")
        else:
            cookie = request.cookies.get(SESSION_COOKIE)
            if cookie is None:
                raise MissingCredentials("sign in first: no session cookie or access token")
            session = await sessions.validate_session(db, cookie, dpop_jkt=jkt)
            found = Principal(session.user_id, session.id, "cookie")
    await rls.set_current_user(db, found.user_id)
    return found


SignedIn = Annotated[Principal, Depends(principal)]


async def admin(who: SignedIn, db: Db) -> Principal:
    """:func:`principal`, and an admin.

    Raises:
        authmodels.errors.NotAuthorizedError: the user is not an admin.
    """
    user = await db.get_one(User, who.user_id)  # row-level security: the user's own row
    if user.role != UserRole.ADMIN:
        raise errors.NotAuthorizedError("this needs an administrator")
    return who


Admin = Annotated[Principal, Depends(admin)]


def token_endpoint(request: Request) -> None:
    """Mark the request as the token endpoint's: errors answer in OAuth's form."""
    request.state.token_endpoint = True
