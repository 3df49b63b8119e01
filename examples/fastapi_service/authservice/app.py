"""The routes: sign-up, sign-in, the token endpoint, sign-out, a protected route, step-up and a
step-up-protected admin route. Run it with ``uvicorn --factory authservice.app:create_app``.

=========================================  =================================================
route                                      what it does
=========================================  =================================================
``POST /signup``                           a new account (the same answer if the address
                                           is taken: nothing tells who has an account)
``POST /login``                            password sign-in: a session cookie for browsers,
                                           an access and a refresh token for API clients;
                                           with a ``DPoP`` proof, all bound to its key
``POST /token``                            the refresh grant: rotation, reuse detection,
                                           DPoP-bound when the sign-in was (RFC 9449)
``POST /logout``                           ends the sign-in (cookie, tokens, all of it)
``GET /me``                                the user and their sessions (row-level security
                                           shows their own only)
``POST /step-up``                          the password again: a step-up token (5 minutes)
``POST /admin/users/{id}/role``            an admin's role change, with a step-up token
=========================================  =================================================

Every route runs as the application's login role: credentials are looked up on the service
path, the rest as the signed-in user (:mod:`authservice.dependencies`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from authmodels import errors
from authmodels.aio import admin, passwords, rls, sessions, signup, step_up, tokens
from authmodels.db import async_session_factory, create_async_db_engine
from authmodels.models import Session as SessionModel
from authmodels.models import User
from authmodels.services import FlowSettings
from authmodels.services.settings import SETTINGS_KEY
from authservice.config import ServiceConfig
from authservice.dependencies import (
    SESSION_COOKIE,
    Admin,
    Config,
    Db,
    SignedIn,
    client_ip,
    dpop_jkt,
    service_path,
    token_endpoint,
)
from authservice.nonces import Nonces
from authservice.problems import problem

_log = logging.getLogger("authservice")


class Credentials(BaseModel):
    email: str
    password: str


class Password(BaseModel):
    password: str


class RoleChange(BaseModel):
    role: str
    step_up_token: str | None = None
    expected_version: int | None = None


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    """The service. Without ``config``, :meth:`ServiceConfig.from_env`."""
    cfg = config or ServiceConfig.from_env()
    settings = cfg.flow_settings or FlowSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_db_engine(cfg.database_url)
        app.state.sessions = async_session_factory(engine)
        app.state.sessions.configure(info={SETTINGS_KEY: settings})
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="authservice", lifespan=lifespan)
    app.state.config = cfg
    app.state.nonces = Nonces(cfg.dpop_nonce_key, cfg.dpop_nonce_lifetime)
    app.add_exception_handler(errors.AuthModelsError, problem)  # type: ignore[arg-type]

    @app.post("/signup", status_code=202)
    async def sign_up(body: Credentials, request: Request, db: Db, cfg: Config) -> dict[str, str]:
        async with service_path(db, cfg):  # nobody is signed in
            done = await signup.register(
                db, body.email, body.password, ip=client_ip(request), user_agent=_ua(request)
            )
        await db.commit()
        # a real service hands done.message to its mailer here (the verification link, or the
        # notice that the address already has an account), then records delivery.mark_sent
        _log.info("sign-up: message %s to send", done.message.id)
        return {"detail": "check your inbox to finish signing up"}

    @app.post("/login")
    async def login(
        body: Credentials, request: Request, response: Response, db: Db, cfg: Config
    ) -> dict[str, Any]:
        ip, ua = client_ip(request), _ua(request)
        async with service_path(db, cfg):
            jkt = await dpop_jkt(request, response, db)
            user = await passwords.authenticate(db, body.email, body.password, ip=ip, user_agent=ua)
            issued = await sessions.create_session(
                db, user, ttl=cfg.session_ttl, ip=ip, user_agent=ua, dpop_jkt=jkt
            )
        async with rls.as_user(db, user.id):
            access = await tokens.issue_access_token(
                db, user, session_id=issued.session.id, dpop_jkt=jkt
            )
        await db.commit()
        if jkt is None:  # a browser: the cookie (a DPoP-bound sign-in is for API clients)
            response.set_cookie(
                SESSION_COOKIE,
                issued.session_token,
                max_age=int(cfg.session_ttl.total_seconds()),
                httponly=True,
                secure=cfg.cookie_secure,
                samesite="lax",
            )
        response.headers["Cache-Control"] = "no-store"
        return _tokens(access.token, access.token_type, access.expires_at, issued.refresh_token)

    @app.post("/token", dependencies=[Depends(token_endpoint)])
    async def token(request: Request, response: Response, db: Db, cfg: Config) -> dict[str, Any]:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant = form.get("grant_type", [""])[0]
        if grant != "refresh_token":
            response.status_code = 400
            return {"error": "unsupported_grant_type", "error_description": "refresh_token only"}
        refresh = form.get("refresh_token", [""])[0]
        async with service_path(db, cfg):
            jkt = await dpop_jkt(request, response, db)
            pair = await sessions.rotate_refresh_token(db, refresh, dpop_jkt=jkt)
        await db.commit()
        response.headers["Cache-Control"] = "no-store"
        return _tokens(pair.access_token, pair.token_type, pair.expires_at, pair.refresh_token)

    @app.post("/logout", status_code=204)
    async def logout(who: SignedIn, response: Response, db: Db) -> None:
        await sessions.revoke_session(db, who.session_id, reason="logout")  # as the user
        await db.commit()
        response.delete_cookie(SESSION_COOKIE)

    @app.get("/me")
    async def me(who: SignedIn, db: Db) -> dict[str, Any]:
        user = await db.get_one(User, who.user_id)
        # no WHERE on the user: row-level security shows the signed-in user's sessions only
        mine = await db.scalars(
            select(SessionModel.id).where(SessionModel.is_active).order_by(SessionModel.created_at)
        )
        body = {
            "id": str(user.id),
            "email": user.email,
            "role": str(user.role),
            "version": user.version,
            "via": who.via,
            "sessions": [str(s) for s in mine],
        }
        await db.commit()
        return body

    @app.post("/step-up")
    async def reauthenticate(
        body: Password, request: Request, who: SignedIn, db: Db, cfg: Config
    ) -> dict[str, Any]:
        user = await db.get_one(User, who.user_id)
        async with service_path(db, cfg):
            await passwords.authenticate(
                db, user.email, body.password, ip=client_ip(request), user_agent=_ua(request)
            )
        raw = await step_up.issue(
            db,
            who.user_id,
            ttl=cfg.step_up_ttl,
            purpose=admin.ROLE_CHANGE_ACTION,
            session_id=who.session_id,
        )
        await db.commit()
        return {"step_up_token": raw, "expires_in": int(cfg.step_up_ttl.total_seconds())}

    @app.post("/admin/users/{user_id}/role")
    async def change_role(
        user_id: uuid.UUID, body: RoleChange, who: Admin, db: Db, cfg: Config
    ) -> dict[str, Any]:
        if not body.step_up_token:
            raise errors.StepUpTokenInvalid("a role change needs a step-up: POST /step-up first")
        async with service_path(db, cfg):  # another user's row
            changed = await admin.change_role(
                db,
                actor=who.user_id,
                target=user_id,
                role=body.role,
                step_up_token=body.step_up_token,
                expected_version=body.expected_version,
                session_id=who.session_id,
            )
            result = {"id": str(changed.id), "role": str(changed.role), "version": changed.version}
        await db.commit()
        return result

    return app


def _ua(request: Request) -> str | None:
    return request.headers.get("User-Agent")


def _tokens(access: str, token_type: str, expires_at: datetime, refresh: str) -> dict[str, Any]:
    """A token response (RFC 6749 section 5.1)."""
    return {
        "access_token": access,
        "token_type": token_type,
        "expires_in": max(0, int((expires_at - datetime.now(UTC)).total_seconds())),
        "refresh_token": refresh,
    }
