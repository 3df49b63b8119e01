"""The plugin's async fixtures in a downstream test suite: pytest-asyncio in strict mode and in
auto mode, and anyio's plugin (pytest-asyncio disabled).

Each mode runs the same small suite with ``pytester`` on this run's server: the inner run's
``authmodels_template`` and ``authmodels_roles`` are this run's (so it does not migrate
again). The suite proves what a downstream test relies on: a commit in one test is gone in the
next (the rolled-back session), the app session runs as the login role under row-level security,
the engines connect on the asyncio driver, and a flow of :mod:`authmodels.aio` runs in them.
"""

from __future__ import annotations

import json

import pytest

from authmodels.testing.database import TestServer
from authmodels.testing.roles import TestRoles

pytest_plugins = ["pytester"]

CONFTEST = """
import json, os
import pytest
from authmodels.testing.roles import TestRoles

OUTER = json.loads(os.environ["AUTHMODELS_OUTER_RUN"])

@pytest.fixture(scope="session")
def authmodels_template():
    return OUTER["template"]

@pytest.fixture(scope="session")
def authmodels_roles():
    return TestRoles(**OUTER["roles"])
"""

SUITE = """
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text

from authmodels.aio import rls, sessions
from authmodels.models import User

EMAIL = "kept-by-no-test@example.com"
COUNT = text("SELECT count(*) FROM auth.users WHERE email = :e")
{head}

{mark}
async def test_a_commit_is_released_into_the_outer_transaction({fixtures}authmodels_async_session):
    db = authmodels_async_session
    db.add(User(email=EMAIL, password_hash="x"))
    await db.commit()
    assert await db.scalar(COUNT, {{"e": EMAIL}}) == 1


{mark}
async def test_the_next_test_does_not_see_it({fixtures}authmodels_async_session):
    db = authmodels_async_session
    assert await db.scalar(COUNT, {{"e": EMAIL}}) == 0


{mark}
async def test_a_flow_runs_in_the_app_session_on_the_service_path(
    {fixtures}authmodels_app_async_session, authmodels_roles
):
    db = authmodels_app_async_session
    assert await db.scalar(text("SELECT current_user")) == authmodels_roles.login
    async with rls.service_role(db, authmodels_roles.service):
        user = User(email="ada@example.com", password_hash="x")
        db.add(user)
        await db.flush()
        issued = await sessions.create_session(db, user, ttl=timedelta(hours=1))
        assert (await sessions.validate_session(db, issued.session_token)).user_id == user.id
    assert await db.scalar(text("SELECT count(*) FROM auth.users")) == 0  # RLS, nobody named


{mark}
async def test_the_engines_are_on_the_asyncio_driver(
    {fixtures}authmodels_async_engine, authmodels_app_async_engine
):
    for engine in (authmodels_async_engine, authmodels_app_async_engine):
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, psycopg.AsyncConnection)
"""

MODES = {
    "strict": (["-o", "asyncio_mode=strict"], "", "@pytest.mark.asyncio", ""),
    "auto": (["-o", "asyncio_mode=auto"], "", "", ""),
    "anyio": (
        ["-p", "no:asyncio"],
        '\n@pytest.fixture\ndef anyio_backend():\n    return "asyncio"\n',
        "@pytest.mark.anyio",
        "anyio_backend, ",
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_the_async_fixtures_work_in_each_mode(
    mode: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    authmodels_test_server: TestServer,
    authmodels_template: str,
    authmodels_roles: TestRoles,
) -> None:
    options, head, mark, fixtures = MODES[mode]
    outer = {
        "template": authmodels_template,
        "roles": {
            "login": authmodels_roles.login,
            "app": authmodels_roles.app,
            "service": authmodels_roles.service,
            "password": authmodels_roles.password,
        },
    }
    monkeypatch.setenv("AUTHMODELS_OUTER_RUN", json.dumps(outer))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_downstream=SUITE.format(head=head, mark=mark, fixtures=fixtures))
    url = authmodels_test_server.url.render_as_string(hide_password=False)
    result = pytester.runpytest_subprocess(
        *options,
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        f"--authmodels-db-url={url}",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    )
    result.assert_outcomes(passed=4)
