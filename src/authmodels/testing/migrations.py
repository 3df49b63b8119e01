"""Drive the authmodels revision chain from tests: upgrade, downgrade, render SQL, inspect."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, pool, text
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.migrations import SCHEMA, VERSION_TABLE, alembic_config


class MigrationRunner:
    """Run revisions of the packaged chain against one database.

    Args:
        url: the database to migrate.
        **attributes: extra Alembic ``config.attributes`` (``lock_timeout``, ...).
    """

    def __init__(self, url: str | URL, **attributes: Any) -> None:
        self.url = url
        self.attributes = attributes
        self.engine: Engine = create_db_engine(url, poolclass=pool.NullPool)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        with self.engine.connect() as conn:
            cfg = alembic_config(connection=conn, **self.attributes)
            fn(cfg, *args, **kwargs)
            if conn.in_transaction():
                conn.commit()

    def upgrade(self, revision: str = "head") -> None:
        """``alembic upgrade <revision>``."""
        self._run(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """``alembic downgrade <revision>``."""
        self._run(command.downgrade, revision)

    def current(self) -> str | None:
        """The revision the database is at (None at base)."""
        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
            )
            return ctx.get_current_revision()

    def sql(self, revision_range: str, *, downgrade: bool = False) -> str:
        """The SQL Alembic renders for ``revision_range`` in offline mode (``--sql``)."""
        buffer = io.StringIO()
        cfg = alembic_config(url=self.engine.url, **self.attributes)
        cfg.output_buffer = buffer
        (command.downgrade if downgrade else command.upgrade)(cfg, revision_range, sql=True)
        return buffer.getvalue()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end of the block."""
        with self.engine.begin() as conn:
            yield conn

    def execute(self, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run one SQL statement in its own transaction; the rows it returns, if any."""
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params or {})
            return list(result.all()) if result.returns_rows else []

    def dispose(self) -> None:
        """Close the runner's engine."""
        self.engine.dispose()


def revision_ids() -> list[str]:
    """Every revision id of the chain, from the first to the head."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]
