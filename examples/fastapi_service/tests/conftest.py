"""Fixtures of the service's tests: the app on a fresh database (it commits), as the run's login
role with its service role (what ``python -m authservice.provision`` sets up for real), and an
HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from authservice.app import create_app
from authservice.config import ServiceConfig
from fastapi import FastAPI
from service_client import BASE
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from authmodels.services import FlowSettings
from authmodels.testing.plugin import TestKeys
from authmodels.testing.roles import TestRoles


@pytest.fixture
def service_config(
    authmodels_fresh_database: URL, authmodels_roles: TestRoles, authmodels_keys: TestKeys
) -> ServiceConfig:
    return ServiceConfig(
        database_url=authmodels_roles.url(authmodels_fresh_database),
        service_role=authmodels_roles.service,
        flow_settings=FlowSettings(
            hash_keys=authmodels_keys.hash_keys, encryption_keys=authmodels_keys.encryption_keys
        ),
    )


@pytest_asyncio.fixture
async def app(service_config: ServiceConfig) -> AsyncIterator[FastAPI]:
    service = create_app(service_config)
    async with service.router.lifespan_context(service):
        yield service


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app over httpx's ASGI transport (cookies kept, as a browser does)."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4711))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


@pytest.fixture
def promote(authmodels_fresh_engine: Engine) -> Callable[[str], None]:
    """Make an account an admin, as the owner (``provision --admin`` does the same)."""

    def make_admin(email: str) -> None:
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(
                text("UPDATE auth.users SET role = 'admin' WHERE email = :e"), {"e": email}
            )

    return make_admin
