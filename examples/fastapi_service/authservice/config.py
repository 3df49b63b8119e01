"""The service's configuration, from the environment.

``AUTHSERVICE_DATABASE_URL``: the database as the service's *login role* (a member of the
application role, which row-level security binds). Unset, the service resolves the database as
authmodels does (``AUTHMODELS_DATABASE_URL``, ``DATABASE_URL``, else the embedded server found
from the working directory) and connects there as ``AUTHSERVICE_LOGIN_ROLE`` -- what
``python -m authservice.provision`` created -- with ``AUTHSERVICE_DATABASE_PASSWORD`` if set
(the embedded server trusts local connections, so none is needed there).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.engine import URL

from authmodels.db import locate_database, sqlalchemy_url
from authmodels.services import FlowSettings

LOGIN_ROLE = "authservice_login"
APP_ROLE = "authservice_app"
SERVICE_ROLE = "authservice_service"


@dataclass(frozen=True)
class ServiceConfig:
    """What the service needs besides authmodels' own settings.

    Attributes:
        database_url: the database, as the login role.
        service_role: the role of the service path (``rls.service_role``).
        flow_settings: authmodels' flow settings (key rings, lifetimes); from the environment
            when None.
        session_ttl: how long a sign-in lasts.
        step_up_ttl: how long a step-up token lasts.
        cookie_secure: send the session cookie with ``Secure`` (turn off only for plain
            ``http://`` other than localhost).
        dpop_nonce_key: the key of the server's DPoP nonces (random per process by default:
            a restart only makes clients fetch a new nonce).
        dpop_nonce_lifetime: how long a nonce is accepted.
    """

    database_url: URL
    service_role: str = SERVICE_ROLE
    flow_settings: FlowSettings | None = None
    session_ttl: timedelta = timedelta(hours=8)
    step_up_ttl: timedelta = timedelta(minutes=5)
    cookie_secure: bool = True
    dpop_nonce_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    dpop_nonce_lifetime: timedelta = timedelta(minutes=5)

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """The configuration of the environment (see the module docstring)."""
        explicit = os.environ.get("AUTHSERVICE_DATABASE_URL")
        if explicit:
            url = sqlalchemy_url(explicit, source="AUTHSERVICE_DATABASE_URL")
        else:
            url = locate_database().url.set(
                username=os.environ.get("AUTHSERVICE_LOGIN_ROLE", LOGIN_ROLE),
                password=os.environ.get("AUTHSERVICE_DATABASE_PASSWORD"),
            )
        return cls(
            database_url=url,
            service_role=os.environ.get("AUTHSERVICE_SERVICE_ROLE", SERVICE_ROLE),
            cookie_secure=os.environ.get("AUTHSERVICE_COOKIE_SECURE", "1") != "0",
        )
