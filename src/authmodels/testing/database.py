"""Test databases: which PostgreSQL server to use, and databases created and dropped on it.

Server resolution for a test run (:func:`resolve_test_server`):

1. ``--authmodels-db-url`` on the pytest command line, or ``AUTHMODELS_TEST_DATABASE_URL``;
2. a throwaway PostgreSQL container (testcontainers) when a Docker engine answers;
3. an embedded PostgreSQL in a temporary folder, deleted at the end of the run.

The URL given in 1. must let the user create and drop databases and roles (``CREATEDB``,
``CREATEROLE``): each run creates its own uniquely named databases next to the one named in the
URL, and the roles of :mod:`authmodels.testing.roles`, and drops them afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.errors import ConfigurationError
from authmodels.services.durable import CALLER_TRANSACTION, DURABLE_WRITES_KEY

_log = logging.getLogger(__name__)

TEST_URL_VAR = "AUTHMODELS_TEST_DATABASE_URL"


@dataclass
class TestServer:
    """A PostgreSQL server the test run may create databases on.

    Attributes:
        url: admin URL (SQLAlchemy form, psycopg driver) of a maintenance database.
        kind: ``"url"``, ``"testcontainers"`` or ``"embedded"``.
    """

    __test__ = False  # not a pytest test class

    url: URL
    kind: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def database_url(self, name: str) -> URL:
        """The URL of database ``name`` on this server."""
        return self.url.set(database=name)

    def admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection to the maintenance database (CREATE/DROP DATABASE)."""
        return psycopg.connect(libpq_url(self.url), autocommit=True)

    def create_database(self, name: str | None = None, *, template: str | None = None) -> URL:
        """Create a database (optionally cloned from ``template``) and return its URL."""
        name = name or unique_name("authmodels_test")
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            # PostgreSQL's default strategy (WAL_LOG): FILE_COPY forces a checkpoint per clone,
            # measured no faster (benchmarks/bench_test_databases.py), and stalls other sessions.
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with self.admin_connection() as conn:
            conn.execute(stmt)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending any connection still open on it."""
        with self.admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def tune_for_throwaway_data(self) -> None:
        """Trade durability for speed on a server whose data dies with the test run.

        ``fsync``, ``full_page_writes`` and ``synchronous_commit`` off: a crash could corrupt the
        data, which is thrown away anyway. Only ever called for the temporary embedded server.
        """
        with self.admin_connection() as conn:
            for setting in ("fsync", "full_page_writes", "synchronous_commit"):
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
            conn.execute("SELECT pg_reload_conf()")

    def stop(self) -> None:
        """Stop the server if this run started it."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


def unique_name(prefix: str) -> str:
    """A database name unique to this call (``prefix_<12 hex>``)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def docker_available() -> bool:
    """True when the testcontainers extra is installed and a Docker engine answers a ping."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "no Docker here"
        return False


def resolve_test_server(url: str | None = None, *, use_docker: bool = True) -> TestServer:
    """Pick the server for a test run: given URL → testcontainers → embedded (see module doc)."""
    if url:
        return TestServer(url=sqlalchemy_url(url), kind="url")
    if use_docker and docker_available():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:17-alpine", driver="psycopg")
        container.start()
        _log.info("authmodels tests: PostgreSQL container %s", container.get_container_host_ip())
        return TestServer(
            url=sqlalchemy_url(container.get_connection_url()),
            kind="testcontainers",
            _stop=container.stop,
        )
    if not EmbeddedServer.available():
        raise ConfigurationError(
            "authmodels tests need PostgreSQL: pass --authmodels-db-url, set "
            f"{TEST_URL_VAR}, start Docker, or install authmodels[embedded]"
        )
    home = Path(tempfile.mkdtemp(prefix="authmodels-test-"))
    server = EmbeddedServer(home, delete_on_exit=True)
    server.start()
    test_server = TestServer(url=sqlalchemy_url(server.url()), kind="embedded", _stop=server.stop)
    test_server.tune_for_throwaway_data()
    return test_server


@contextlib.contextmanager
def temporary_database(server: TestServer, *, template: str | None = None) -> Iterator[URL]:
    """A database that exists for the duration of the ``with`` block."""
    db_url = server.create_database(template=template)
    try:
        yield db_url
    finally:
        assert db_url.database is not None
        server.drop_database(db_url.database)


def url_database(url: str | URL) -> str:
    """The database name of ``url``."""
    name = make_url(url).database if isinstance(url, str) else url.database
    if not name:
        raise ConfigurationError(f"{url!s} names no database")
    return name


def rolled_back_session_options() -> dict[str, Any]:
    """How a test's session joins the transaction rolled back at teardown (sync and async): a
    commit in the code under test releases a SAVEPOINT, and the flows' own-transaction writes
    (refusals) become SAVEPOINTs too, which see the test's rows and are rolled back with them."""
    return {
        "join_transaction_mode": "create_savepoint",
        "expire_on_commit": False,
        "info": {DURABLE_WRITES_KEY: CALLER_TRANSACTION},
    }
