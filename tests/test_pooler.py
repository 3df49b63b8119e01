"""authmodels behind a real PgBouncer in transaction mode (Debian's pgbouncer 1.18).

Each transaction may run on another server connection, so: no server-side prepared statement
may outlive its transaction (detected, or declared with ``pooler="transaction"``), nothing set
for the session may be relied on (``SET LOCAL`` and ``set_config(..., true)`` only), migrations
are refused, and a refusal's second connection must not come from the caller's server pool.
Every public flow runs through it too: ``tests/services/test_production_roles.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from authmodels import errors, rls
from authmodels.aio import sessions as aio_sessions
from authmodels.db import (
    POOLER_VAR,
    async_session_factory,
    create_async_db_engine,
    create_db_engine,
    pooler_of,
)
from authmodels.migrations import alembic_config
from authmodels.retention import load_policies, purge, select_policies
from authmodels.services import FlowSettings, passwords, sessions, use_settings
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.database import TestServer
from authmodels.testing.factories import (
    TEST_PASSWORD_HASHER,
    ServicePathUserFactory,
    UserFactory,
)
from authmodels.testing.pgbouncer import PgBouncer
from authmodels.testing.roles import TestRoles


@pytest.fixture
def settings(authmodels_keys) -> FlowSettings:  # type: ignore[no-untyped-def]
    return FlowSettings(
        hash_keys=authmodels_keys.hash_keys,
        encryption_keys=authmodels_keys.encryption_keys,
        password_hasher=TEST_PASSWORD_HASHER,
    )


@pytest.fixture
def bouncer_url(
    authmodels_pgbouncer: PgBouncer, authmodels_fresh_database: URL, authmodels_roles: TestRoles
) -> URL:
    """The login role on a fresh database, through the run's PgBouncer."""
    return authmodels_pgbouncer.url(authmodels_roles.url(authmodels_fresh_database))


def _engine(url: URL, **kwargs: object) -> Iterator[Engine]:
    engine = create_db_engine(url, **kwargs)  # type: ignore[arg-type]
    try:
        yield engine
    finally:
        engine.dispose()


# --- detection ---------------------------------------------------------------------------------


def test_the_pooler_is_detected_and_prepared_statements_are_turned_off_behind_it(
    bouncer_url: URL, authmodels_roles: TestRoles, authmodels_fresh_database: URL
) -> None:
    for engine in _engine(bouncer_url):
        with engine.connect() as conn:
            assert pooler_of(conn) == "transaction"
            assert conn.connection.driver_connection.prepare_threshold is None
    for engine in _engine(authmodels_roles.url(authmodels_fresh_database)):
        with engine.connect() as conn:
            assert pooler_of(conn) == "direct"
            assert conn.connection.driver_connection.prepare_threshold == 5  # psycopg's


def test_the_pooler_can_be_declared_by_argument_or_environment(
    authmodels_fresh_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    for engine in _engine(authmodels_fresh_database, pooler="transaction"):
        with engine.connect() as conn:
            assert pooler_of(conn) == "transaction"
            assert conn.connection.driver_connection.prepare_threshold is None
    monkeypatch.setenv(POOLER_VAR, "transaction")
    for engine in _engine(authmodels_fresh_database):
        with engine.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold is None
    monkeypatch.setenv(POOLER_VAR, "pgbouncer")
    with pytest.raises(errors.ConfigurationError, match="AUTHMODELS_POOLER is 'pgbouncer'"):
        create_db_engine(authmodels_fresh_database)


def _validate_in_threads(engine: Engine, settings: FlowSettings, token: str) -> list[str]:
    """8 threads, 25 validations each, each in a transaction of its own; the errors seen."""
    failures: list[str] = []

    def worker() -> None:
        with Session(engine) as db:
            use_settings(db, settings)
            for _ in range(25):
                try:
                    with db.begin():
                        sessions.validate_session(db, token)
                except DBAPIError as exc:
                    failures.append(str(exc.orig).splitlines()[0])
                except psycopg.Error as exc:  # the fast path's own statements
                    failures.append(str(exc).splitlines()[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_the_hot_path_needs_prepared_statements_off_behind_the_pooler(
    authmodels_pgbouncer: PgBouncer,
    authmodels_fresh_database: URL,
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    """What detection prevents: a connection that prepares its statements (wrongly declared
    ``direct``) finds another client's, or none, on the server connection it is given."""
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        use_settings(owner, settings)
        ada = UserFactory(owner)()
        issued = sessions.create_session(owner, ada, ttl=timedelta(hours=1))
        owner.commit()
    url = authmodels_pgbouncer.url(authmodels_fresh_database)
    for engine in _engine(url, pool_size=8, max_overflow=0, pooler="direct"):
        broken = _validate_in_threads(engine, settings, issued.session_token)
    assert broken and all("prepared statement" in failure for failure in broken), broken[:3]
    for engine in _engine(url, pool_size=8, max_overflow=0):  # detected
        assert _validate_in_threads(engine, settings, issued.session_token) == []


async def _validate_concurrently(
    engine: AsyncEngine, settings: FlowSettings, token: str
) -> list[str]:
    """8 coroutines, each on a connection of its own, 25 validations each, each in a
    transaction of its own; the errors seen."""
    failures: list[str] = []
    Db = async_session_factory(engine)
    Db.configure(info={SETTINGS_KEY: settings})

    async def worker() -> None:
        for _ in range(25):
            async with Db() as db:
                try:
                    await aio_sessions.validate_session(db, token)
                    await db.commit()
                except DBAPIError as exc:
                    failures.append(str(exc.orig).splitlines()[0])
                except psycopg.Error as exc:  # the fast path's own statements
                    failures.append(str(exc).splitlines()[0])

    await asyncio.gather(*(worker() for _ in range(8)))
    await engine.dispose()
    return failures


@pytest.mark.asyncio
async def test_async_engines_detect_the_pooler_too(
    authmodels_pgbouncer: PgBouncer,
    authmodels_fresh_database: URL,
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    """An async engine through the pooler turns prepared statements off like a sync one (the
    hot path prepares on the asyncio connection too); declared ``direct``, it breaks."""
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        use_settings(owner, settings)
        ada = UserFactory(owner)()
        issued = sessions.create_session(owner, ada, ttl=timedelta(hours=1))
        owner.commit()
    url = authmodels_pgbouncer.url(authmodels_fresh_database)
    wrong = create_async_db_engine(url, pool_size=8, max_overflow=0, pooler="direct")
    broken = await _validate_concurrently(wrong, settings, issued.session_token)
    assert broken and all("prepared statement" in failure for failure in broken), broken[:3]
    detected = create_async_db_engine(url, pool_size=8, max_overflow=0)
    async with detected.connect() as conn:
        assert await conn.run_sync(pooler_of) == "transaction"
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None and raw.prepare_threshold is None
    assert await _validate_concurrently(detected, settings, issued.session_token) == []
    direct = create_async_db_engine(authmodels_fresh_database, pooler=None)
    async with direct.connect() as conn:
        assert await conn.run_sync(pooler_of) == "direct"
    await direct.dispose()


# --- what a transaction pooler cannot do ------------------------------------------------------


def test_migrations_through_the_pooler_are_refused_and_change_nothing(
    authmodels_pgbouncer: PgBouncer, authmodels_empty_database: URL
) -> None:
    from alembic import command

    url = authmodels_pgbouncer.url(authmodels_empty_database)
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            with pytest.raises(errors.TransactionPoolerError, match="connect directly"):
                command.upgrade(alembic_config(connection=conn), "head")
            conn.rollback()
            assert conn.execute(text("SELECT to_regclass('auth.alembic_version')")).scalar() is None
    finally:
        engine.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "authmodels.cli", "db", "upgrade", "--url",
         url.render_as_string(hide_password=False)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "transaction-mode pooler" in done.stderr and "Traceback" not in done.stderr


def test_the_current_user_and_the_service_role_never_outlive_their_transaction(
    authmodels_test_server: TestServer,
    authmodels_roles: TestRoles,
    authmodels_fresh_database: URL,
    authmodels_app_fresh_engine: Engine,
) -> None:
    """One server connection behind the pooler, two clients taking turns on it: what
    ``rls.set_current_user`` and ``rls.service_role`` set ends with the transaction; a plain
    ``SET ROLE`` (what authmodels never does) is inherited by the next client."""
    with (
        Session(authmodels_app_fresh_engine, expire_on_commit=False) as setup,
        setup.begin(),
        rls.service_role(setup, authmodels_roles.service),
    ):
        ada = ServicePathUserFactory(setup, authmodels_roles.service)()
    bouncer = PgBouncer(
        authmodels_test_server.url,
        {authmodels_roles.login: authmodels_roles.password},
        pool_size=1,
    ).start()
    try:
        url = bouncer.url(authmodels_roles.url(authmodels_fresh_database))
        first, second = create_db_engine(url), create_db_engine(url)
        try:
            with Session(first) as one, Session(second) as two:
                with one.begin():
                    rls.set_current_user(one, ada.id)
                    with rls.service_role(one, authmodels_roles.service):
                        pass
                    assert one.execute(text("SELECT count(*) FROM auth.users")).scalar() == 1
                    backend = one.execute(text("SELECT pg_backend_pid()")).scalar()
                with two.begin():  # the same server connection, the next transaction
                    assert two.execute(text("SELECT pg_backend_pid()")).scalar() == backend
                    seen = two.execute(text("SELECT auth.uid(), current_user")).one()
                    assert tuple(seen) == (None, authmodels_roles.login)
                    assert two.execute(text("SELECT count(*) FROM auth.users")).scalar() == 0
                with one.begin():
                    one.execute(text(f'SET ROLE "{authmodels_roles.service}"'))
                with two.begin():
                    leaked = two.execute(text("SELECT current_user")).scalar()
                    assert leaked == authmodels_roles.service
                    two.execute(text("RESET ROLE"))
        finally:
            first.dispose()
            second.dispose()
    finally:
        bouncer.stop()


# --- refusals: their second connection --------------------------------------------------------


def _failed_logins(engine: Engine, roles: TestRoles, settings: FlowSettings, email: str,
                   count: int) -> list[BaseException]:  # fmt: skip
    """``count`` concurrent wrong passwords, each in a service-path transaction; the
    unexpected errors."""
    barrier = threading.Barrier(count)
    unexpected: list[BaseException] = []

    def worker() -> None:
        with Session(engine) as db:
            use_settings(db, settings)
            barrier.wait()
            try:
                with db.begin(), rls.service_role(db, roles.service):
                    passwords.authenticate(db, email, "wrong", ip=None, user_agent=None)
            except (errors.InvalidCredentialsError, errors.AccountLockedError):
                pass
            except BaseException as exc:  # reported by the test
                unexpected.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return unexpected


def test_refusals_take_their_second_connection_from_a_pool_of_their_own(
    authmodels_test_server: TestServer,
    authmodels_roles: TestRoles,
    authmodels_fresh_database: URL,
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    """8 concurrent failed logins behind a pooler of 4 server connections: with one pool,
    every server connection is held by a caller waiting for its refusal's second connection,
    and PgBouncer gives up (``query_wait_timeout``); with ``durable_url`` on an entry of its
    own, every refusal is counted."""
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        ada = ServicePathUserFactory(owner, authmodels_roles.service)()
        bob = ServicePathUserFactory(owner, authmodels_roles.service)()
        owner.commit()
    name = authmodels_fresh_database.database
    assert name is not None
    bouncer = PgBouncer(
        authmodels_test_server.url,
        {authmodels_roles.login: authmodels_roles.password},
        pool_size=4,
        aliases={"auth_durable": name},
        query_wait_timeout=3,
    ).start()
    lenient = settings.replace(max_failed_logins=10)
    try:
        url = bouncer.url(authmodels_roles.url(authmodels_fresh_database))
        for engine in _engine(url, pool_size=8, max_overflow=0):
            stuck = _failed_logins(engine, authmodels_roles, lenient, ada.email, 8)
        assert stuck and all("query_wait_timeout" in str(e) for e in stuck), stuck[:2]
        durable_url = bouncer.url(authmodels_roles.url(authmodels_fresh_database),
                                  database="auth_durable")  # fmt: skip
        for engine in _engine(url, pool_size=8, max_overflow=0, durable_url=durable_url):
            assert _failed_logins(engine, authmodels_roles, lenient, bob.email, 8) == []
        assert _failures(authmodels_fresh_engine, bob.email) == 8
    finally:
        bouncer.stop()


def _failures(engine: Engine, email: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT failed_login_attempts FROM auth.users WHERE email = :e"), {"e": email}
            ).scalar_one()
        )


def test_the_plugin_fixtures_run_through_the_pooler(authmodels_server_url: URL) -> None:
    """A downstream suite run with ``--authmodels-pgbouncer``: every engine fixture, sync and
    async, goes through PgBouncer, and the isolation the fixtures promise holds there."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--authmodels-pgbouncer",
         f"--authmodels-db-url={authmodels_server_url.render_as_string(hide_password=False)}",
         "tests/test_plugin.py", "tests/aio/test_flows.py",
         "tests/aio/test_rls_locking_retention.py", "-k", "not slow and not password_server"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_psycopg_reports_the_pooler_as_the_server_it_reaches(
    authmodels_pgbouncer: PgBouncer, authmodels_server_url: URL
) -> None:
    """Why detection compares backend process ids: through PgBouncer 1.18 the login reports
    the server's version and parameters, so nothing else a client sees tells them apart."""
    url = authmodels_pgbouncer.url(authmodels_server_url)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                         prepare_threshold=None) as conn:  # fmt: skip
        reported, given = conn.info.server_version, conn.info.backend_pid
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        version = conn.execute("SHOW server_version_num").fetchone()
    assert pid is not None and pid[0] != given
    assert version is not None and int(str(version[0])) == reported
    [(version_line,)] = authmodels_pgbouncer.admin("SHOW VERSION")
    assert str(version_line).startswith("PgBouncer ")


def test_the_retention_purge_runs_through_the_pooler(
    authmodels_pgbouncer: PgBouncer,
    authmodels_fresh_database: URL,
    authmodels_fresh_engine: Engine,
    settings: FlowSettings,
) -> None:
    """The owner's purge, batch by batch, each batch a transaction of its own through PgBouncer
    (the purge functions take transaction-level locks only, revision 0020)."""
    with Session(authmodels_fresh_engine) as owner:
        use_settings(owner, settings)
        ada = UserFactory(owner)()
        for _ in range(5):
            sessions.create_session(owner, ada, ttl=timedelta(hours=1))
        owner.execute(
            text(
                "UPDATE auth.sessions SET created_at = now() - interval '401 days', "
                "expires_at = now() - interval '400 days'"
            )
        )
        owner.commit()
    engine = create_db_engine(authmodels_pgbouncer.url(authmodels_fresh_database))
    try:
        with engine.connect() as conn:
            assert pooler_of(conn) == "transaction"
            chosen = select_policies(load_policies(conn), only=["sessions"])
        report = purge(engine, policies=chosen, batch_size=2)
    finally:
        engine.dispose()
    [sessions_report] = report.policies
    assert (sessions_report.rows, sessions_report.batches) == (5, 3) and sessions_report.finished
    with authmodels_fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.sessions")).scalar() == 0
