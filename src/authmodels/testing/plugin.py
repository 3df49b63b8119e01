"""pytest plugin: a migrated PostgreSQL per test run and an isolated session per test.

Installed with authmodels (``pytest11`` entry point ``authmodels``); disable with
``-p no:authmodels``. Fixtures:

===============================  ==========  ==================================================
fixture                          scope       what it gives
===============================  ==========  ==================================================
``authmodels_server_url``        session     admin URL of the test server
``authmodels_database_url``      session     URL of the test database, migrated to head
``authmodels_engine``            session     Engine on that database
``authmodels_session``           function    ORM Session inside a transaction rolled back at
                                             teardown; the code under test may ``commit()``
                                             (commits release a SAVEPOINT, nothing persists)
``authmodels_fresh_database``    function    URL of a new database cloned from the migrated
                                             template, dropped after: for tests that need real
                                             commits and concurrent connections
``authmodels_fresh_engine``      function    Engine (40 pooled connections) on a fresh database
``authmodels_empty_database``    function    URL of a new empty database, dropped after
                                             (migration tests)
``authmodels_migration_runner``  function    MigrationRunner on a new empty database
``authmodels_keys``              session     the key rings of the run (:class:`TestKeys`)
``authmodels_softhsm``           session     a fresh SoftHSM2 token for the run
                                             (:class:`~authmodels.testing.softhsm.SoftHsm`),
                                             ``SOFTHSM2_CONF`` pointing at it; fails (never
                                             skips) when SoftHSM2 is not installed
``authmodels_user_factory``      function    creates users in ``authmodels_session``
``authmodels_migrate``           session     callable migrating a URL to head; override it to
                                             run your own chain that depends on ours
``authmodels_roles``             session     the run's login, application and service roles
                                             (:class:`~authmodels.testing.roles.TestRoles`),
                                             registered in the template after the migration
``authmodels_app_engine``        session     Engine on the shared test database, connected as
                                             the login role: row-level security applies
``authmodels_app_session``       function    ``authmodels_session`` as the login role, on
                                             ``authmodels_app_engine``: rolled back at
                                             teardown; no user is named until the test calls
                                             ``rls.set_current_user``
``authmodels_app_user_factory``  function    creates users in ``authmodels_app_session`` on
                                             the service path, as a sign-up does
``authmodels_app_fresh_engine``  function    Engine (40 pooled connections) as the login role
                                             on ``authmodels_fresh_database``
``authmodels_pgbouncer``         session     a real PgBouncer in transaction mode in front of
                                             the test server, knowing the owner and the login
                                             role (:class:`~authmodels.testing.pgbouncer.
                                             PgBouncer`; ``.url(direct_url)``)
``authmodels_connect_url``       session     maps a direct URL to the one the engine fixtures
                                             connect to: itself, or through PgBouncer with
                                             ``--authmodels-pgbouncer``
===============================  ==========  ==================================================

With ``--authmodels-pgbouncer`` (or ``AUTHMODELS_TEST_PGBOUNCER=1``) every engine fixture above
connects through ``authmodels_pgbouncer``: a downstream suite runs as its service does behind a
transaction pooler (migrations still run on a direct connection: a transaction pooler cannot
hold their advisory lock). PgBouncer must be installed (``apt-get install pgbouncer``); a test
that needs it fails when it cannot start, it is never skipped.

Their async counterparts, for :mod:`authmodels.aio` (``authmodels_async_engine``,
``authmodels_async_session``, ``authmodels_app_async_engine``, ``authmodels_app_async_session``,
``authmodels_async_fresh_engine``, ``authmodels_app_async_fresh_engine``), are described in
:mod:`authmodels.testing.async_fixtures`: they work with pytest-asyncio in its strict and auto
modes, or with anyio's plugin.

The server: ``--authmodels-db-url`` / ``AUTHMODELS_TEST_DATABASE_URL``, else a testcontainers
PostgreSQL when Docker answers (``--authmodels-no-docker`` skips that), else an embedded PostgreSQL
in a temporary folder. Key rings: ``AUTHMODELS_HASH_KEYS`` and ``AUTHMODELS_ENCRYPTION_KEYS`` are
generated for the run (random, never written to disk) unless already set. When
``AUTHMODELS_KEY_PROVIDER`` names a ``file`` or ``pkcs11`` provider, nothing is generated: the run's
rings are the provider's, unwrapped once at the start (its store must have a hash and an
encryption ring).

The production roles: once per run, three roles with names unique to the run are created on the
server (so its user needs ``CREATEROLE``): ``app`` and ``service`` (``NOLOGIN``) and ``login``
(``LOGIN`` with a random password, a member of ``app``, whose privileges it inherits, and of
``service``, to which it can ``SET ROLE``). Right after ``authmodels_migrate`` has run on the
template, ``auth.grant_app_role(app)`` and ``auth.grant_service_role(service)`` register them, so
every database cloned from the template has them. A test written against the app fixtures runs as
a production service does: its queries see the rows of the user it names
(``rls.set_current_user(db, user.id)`` or ``with rls.as_user(db, user.id):``), nothing when it
names none, and every row on the service path
(``with rls.service_role(db, authmodels_roles.service):``). The roles are dropped at the end of
the run, after the databases that hold their grants.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, pool
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels import config as am_config
from authmodels.db import create_db_engine
from authmodels.testing.async_fixtures import (
    authmodels_app_async_engine,
    authmodels_app_async_fresh_engine,
    authmodels_app_async_session,
    authmodels_async_engine,
    authmodels_async_fresh_engine,
    authmodels_async_session,
)
from authmodels.testing.database import (
    TEST_URL_VAR,
    TestServer,
    resolve_test_server,
    rolled_back_session_options,
    temporary_database,
    unique_name,
    url_database,
)
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.pgbouncer import PgBouncer
from authmodels.testing.roles import (
    TestRoles,
    create_test_roles,
    drop_test_roles,
    grant_test_roles,
)
from authmodels.testing.softhsm import SoftHsm, SoftHsmUnavailable, start_softhsm

if TYPE_CHECKING:
    from authmodels.testing.factories import ServicePathUserFactory, UserFactory


@dataclass(frozen=True)
class TestKeys:
    """The key rings of a test run (also exported to the environment for the run)."""

    __test__ = False

    hash_keys: am_config.KeyRing
    encryption_keys: am_config.KeyRing


#: Environment variable turning ``--authmodels-pgbouncer`` on.
PGBOUNCER_VAR = "AUTHMODELS_TEST_PGBOUNCER"

_KEYS = pytest.StashKey[TestKeys]()
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("authmodels", "authmodels test database")
    group.addoption(
        "--authmodels-db-url",
        default=None,
        help=f"PostgreSQL URL of a server the run may create databases on (env {TEST_URL_VAR})",
    )
    group.addoption(
        "--authmodels-pgbouncer",
        action="store_true",
        default=os.environ.get(PGBOUNCER_VAR, "") not in ("", "0"),
        help=f"connect every engine fixture through a PgBouncer in transaction mode "
        f"(env {PGBOUNCER_VAR}=1)",
    )
    group.addoption(
        "--authmodels-no-docker",
        action="store_true",
        default=False,
        help="never start a testcontainers PostgreSQL; use the embedded server instead",
    )


def pytest_configure(config: pytest.Config) -> None:
    provider = (os.environ.get(am_config.KEY_PROVIDER_VAR) or "").strip()
    if provider not in ("", "env"):
        settings = am_config.Settings.from_env()
        config.stash[_KEYS] = TestKeys(
            hash_keys=settings.require_hash_keys(),
            encryption_keys=settings.require_encryption_keys(),
        )
        return
    saved: dict[str, str | None] = {}
    rings: dict[str, am_config.KeyRing] = {}
    for var, current_var in (
        (am_config.HASH_KEYS_VAR, am_config.HASH_KEY_CURRENT_VAR),
        (am_config.ENCRYPTION_KEYS_VAR, am_config.ENCRYPTION_KEY_CURRENT_VAR),
    ):
        value = os.environ.get(var)
        if not value:
            value = am_config.format_key_ring({"test-1": secrets.token_bytes(32)})
            saved[var] = None
            os.environ[var] = value
        rings[var] = am_config.parse_key_ring(
            value, source=var, current=os.environ.get(current_var) or None
        )
    config.stash[_SAVED_ENV] = saved
    config.stash[_KEYS] = TestKeys(
        hash_keys=rings[am_config.HASH_KEYS_VAR],
        encryption_keys=rings[am_config.ENCRYPTION_KEYS_VAR],
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    for var, previous in config.stash.get(_SAVED_ENV, {}).items():
        if previous is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = previous


@pytest.fixture(scope="session")
def authmodels_keys(pytestconfig: pytest.Config) -> TestKeys:
    """The key rings of this test run."""
    return pytestconfig.stash[_KEYS]


@pytest.fixture(scope="session")
def authmodels_softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A fresh SoftHSM2 token for this run; ``SOFTHSM2_CONF`` names it until the run ends.

    SoftHSM2 reads ``SOFTHSM2_CONF`` when its module is first loaded in the process, so one
    token serves the whole run: give each test KEKs of its own labels.
    """
    try:
        token = start_softhsm(tmp_path_factory.mktemp("softhsm"))
    except SoftHsmUnavailable as exc:
        pytest.fail(f"the PKCS#11 tests need SoftHSM2: {exc}", pytrace=False)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)
    try:
        yield token
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture(scope="session")
def authmodels_test_server(pytestconfig: pytest.Config) -> Iterator[TestServer]:
    """The PostgreSQL server of this run (given URL, testcontainers, or embedded)."""
    url = pytestconfig.getoption("--authmodels-db-url") or os.environ.get(TEST_URL_VAR)
    server = resolve_test_server(
        url, use_docker=not pytestconfig.getoption("--authmodels-no-docker")
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def authmodels_server_url(authmodels_test_server: TestServer) -> URL:
    """Admin URL of the test server (its maintenance database)."""
    return authmodels_test_server.url


@pytest.fixture(scope="session")
def authmodels_migrate() -> Callable[[URL], None]:
    """Migrate a database to head. Override to run a chain of your own that depends on ours."""

    def migrate(url: URL) -> None:
        runner = MigrationRunner(url)
        try:
            runner.upgrade("head")
        finally:
            runner.dispose()

    return migrate


@pytest.fixture(scope="session")
def authmodels_roles(authmodels_test_server: TestServer) -> Iterator[TestRoles]:
    """The run's login, application and service roles (see the module doc).

    Dropped at the end of the run: every database that holds their grants depends on this
    fixture, so it is gone by then.
    """
    roles = create_test_roles(authmodels_test_server)
    try:
        yield roles
    finally:
        drop_test_roles(authmodels_test_server, roles)


@pytest.fixture(scope="session")
def authmodels_template(
    authmodels_test_server: TestServer,
    authmodels_migrate: Callable[[URL], None],
    authmodels_roles: TestRoles,
) -> Iterator[str]:
    """Name of the template database, migrated to head once per run, the run's roles granted."""
    name = unique_name("authmodels_template")
    url = authmodels_test_server.create_database(name)
    try:
        authmodels_migrate(url)
        grant_test_roles(url, authmodels_roles)
        yield name
    finally:
        authmodels_test_server.drop_database(name)


@pytest.fixture(scope="session")
def authmodels_database_url(
    authmodels_test_server: TestServer, authmodels_template: str
) -> Iterator[URL]:
    """The run's shared test database (a clone of the template)."""
    with temporary_database(authmodels_test_server, template=authmodels_template) as url:
        yield url


@pytest.fixture(scope="session")
def authmodels_pgbouncer(
    authmodels_test_server: TestServer, authmodels_roles: TestRoles
) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test server, for the run.

    It knows the server's user (the tables' owner) and the run's login role. Starting it fails
    (:class:`~authmodels.errors.ConfigurationError`) when ``pgbouncer`` is not installed.
    """
    owner = authmodels_test_server.url.username or "postgres"
    bouncer = PgBouncer(
        authmodels_test_server.url,
        {
            owner: authmodels_test_server.url.password or secrets.token_urlsafe(16),
            authmodels_roles.login: authmodels_roles.password,
        },
    ).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def authmodels_connect_url(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Any:
    """The URL the engine fixtures connect to, for a direct one: itself, or the same database
    through :func:`authmodels_pgbouncer` with ``--authmodels-pgbouncer``."""
    if not pytestconfig.getoption("--authmodels-pgbouncer"):
        return lambda url: url
    bouncer: PgBouncer = request.getfixturevalue("authmodels_pgbouncer")
    return bouncer.url


@pytest.fixture(scope="session")
def authmodels_engine(
    authmodels_database_url: URL, authmodels_connect_url: Callable[[URL], URL]
) -> Iterator[Engine]:
    """Engine on the run's shared test database."""
    engine = create_db_engine(authmodels_connect_url(authmodels_database_url))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def authmodels_session(authmodels_engine: Engine) -> Iterator[Session]:
    """A Session whose work is rolled back at teardown, whatever the test commits.

    The session joins an outer transaction with ``join_transaction_mode="create_savepoint"``:
    ``session.commit()`` in the code under test releases a SAVEPOINT, and the outer transaction
    is rolled back when the test ends, so no test sees another's writes. The writes a flow
    makes in a transaction of its own (a refusal's counter, revocation or security event, see
    :mod:`authmodels.services.durable`) go to a SAVEPOINT of that transaction too.
    """
    yield from _rolled_back_session(authmodels_engine)


def _rolled_back_session(engine: Engine) -> Iterator[Session]:
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, **rolled_back_session_options())
    try:
        yield session
    finally:
        session.close()
        if transaction.is_active:
            transaction.rollback()
        connection.close()


@pytest.fixture
def authmodels_fresh_database(
    authmodels_test_server: TestServer, authmodels_template: str
) -> Iterator[URL]:
    """URL of a new database at head, cloned from the template and dropped after the test."""
    with temporary_database(authmodels_test_server, template=authmodels_template) as url:
        yield url


@pytest.fixture
def authmodels_fresh_engine(
    authmodels_fresh_database: URL, authmodels_connect_url: Callable[[URL], URL]
) -> Iterator[Engine]:
    """Engine (pool of real connections) on :func:`authmodels_fresh_database`."""
    engine = create_db_engine(
        authmodels_connect_url(authmodels_fresh_database), pool_size=40, max_overflow=0
    )
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def authmodels_empty_database(authmodels_test_server: TestServer) -> Iterator[URL]:
    """URL of a new empty database (no schema), dropped after the test."""
    with temporary_database(authmodels_test_server) as url:
        yield url


@pytest.fixture
def authmodels_migration_runner(authmodels_empty_database: URL) -> Iterator[MigrationRunner]:
    """A :class:`MigrationRunner` on a new empty database."""
    runner = MigrationRunner(authmodels_empty_database)
    try:
        yield runner
    finally:
        runner.dispose()


@pytest.fixture
def authmodels_user_factory(authmodels_session: Session) -> UserFactory:
    """Create users in :func:`authmodels_session` (see :class:`UserFactory`)."""
    from authmodels.testing.factories import UserFactory

    return UserFactory(authmodels_session)


@pytest.fixture(scope="session")
def authmodels_app_engine(
    authmodels_database_url: URL,
    authmodels_roles: TestRoles,
    authmodels_connect_url: Callable[[URL], URL],
) -> Iterator[Engine]:
    """Engine on the run's shared test database, connected as the login role."""
    engine = create_db_engine(authmodels_connect_url(authmodels_roles.url(authmodels_database_url)))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def authmodels_app_session(authmodels_app_engine: Engine) -> Iterator[Session]:
    """:func:`authmodels_session` as the login role: row-level security applies.

    Its work is rolled back at teardown, whatever the code under test commits. No user is named
    (``auth.uid()`` is NULL, the user-owned tables show nothing) until the test calls
    ``rls.set_current_user(session, user_id)`` or enters ``rls.as_user(session, user_id)``; the
    service path is ``rls.service_role(session, authmodels_roles.service)``.
    """
    yield from _rolled_back_session(authmodels_app_engine)


@pytest.fixture
def authmodels_app_user_factory(
    authmodels_app_session: Session, authmodels_roles: TestRoles
) -> ServicePathUserFactory:
    """Create users in :func:`authmodels_app_session` on the service path, as a sign-up does
    (see :class:`~authmodels.testing.factories.ServicePathUserFactory`)."""
    from authmodels.testing.factories import ServicePathUserFactory

    return ServicePathUserFactory(authmodels_app_session, authmodels_roles.service)


@pytest.fixture
def authmodels_app_fresh_engine(
    authmodels_fresh_database: URL,
    authmodels_roles: TestRoles,
    authmodels_connect_url: Callable[[URL], URL],
) -> Iterator[Engine]:
    """Engine (40 pooled connections) as the login role on :func:`authmodels_fresh_database`.

    For tests that need real commits and concurrent connections under row-level security; the
    owner's :func:`authmodels_fresh_engine` on the same database stays available for setup and
    checks.
    """
    engine = create_db_engine(
        authmodels_connect_url(authmodels_roles.url(authmodels_fresh_database)),
        pool_size=40,
        max_overflow=0,
    )
    try:
        yield engine
    finally:
        engine.dispose()


def null_pool_engine(url: URL, **kwargs: Any) -> Engine:
    """An Engine without pooling: each connection is a real, separate server connection."""
    return create_db_engine(url, poolclass=pool.NullPool, **kwargs)


__all__ = [
    "PgBouncer",
    "SoftHsm",
    "TestKeys",
    "TestRoles",
    "authmodels_app_async_engine",
    "authmodels_app_async_fresh_engine",
    "authmodels_app_async_session",
    "authmodels_async_engine",
    "authmodels_async_fresh_engine",
    "authmodels_async_session",
    "null_pool_engine",
    "url_database",
]
