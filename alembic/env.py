"""Alembic environment of authmodels (shipped in the wheel as ``authmodels/_alembic/env.py``).

Connection: ``config.attributes["connection"]`` when a caller injects one (the pytest plugin,
pytest-alembic), else a URL: ``-x url=...`` → ``sqlalchemy.url`` in the config →
``AUTHMODELS_DATABASE_URL`` → ``DATABASE_URL`` → the embedded server under ``./.authmodels/``.

Safety settings on every run: one transaction per revision; ``lock_timeout`` (default 5s, ``-x
lock_timeout=...``) so a DDL statement queued behind a long transaction fails fast instead of
blocking every query behind it; ``statement_timeout`` (default 30min, ``-x statement_timeout=``);
and a session-level advisory lock so two deployers never migrate the same database at once (the
second one waits, then finds the work done).
"""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine, pool, text

from authmodels import db, migrations
from authmodels.models import Base
from authmodels.partitions import DEFAULT_PARTITION_NAME
from authmodels.partitions import PARTITION_NAME as MONTHLY_PARTITION

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

log = logging.getLogger("authmodels.migrations")
target_metadata = Base.metadata


def _setting(name: str, default: str) -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    return str(x_args.get(name) or config.attributes.get(name) or default)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Compare schema ``auth`` only, without the partitions of the partitioned logs.

    A downstream app's own tables are none of our business; the partitions (``audit_logs_p202611``)
    are created at run time by ``auth.ensure_monthly_partitions``, and the default partitions
    (``audit_logs_default``, revision 0027) are the parent's too: none has a model.
    """
    if type_ == "schema":
        return name == migrations.SCHEMA
    if type_ == "table" and name is not None:
        return not (MONTHLY_PARTITION.match(name) or DEFAULT_PARTITION_NAME.match(name))
    return True


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=migrations.VERSION_TABLE,
        version_table_schema=migrations.SCHEMA,
        include_schemas=True,
        include_name=include_name,
        transaction_per_migration=True,
        compare_type=True,
        compare_server_default=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _prepare_session(connection: Connection) -> None:
    # Session-level (not SET LOCAL): these outlive each per-revision transaction.
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrations.ADVISORY_LOCK_KEY})
    connection.execute(
        text(f"SET lock_timeout = '{_setting('lock_timeout', migrations.DEFAULT_LOCK_TIMEOUT)}'")
    )
    connection.execute(
        text(
            f"SET statement_timeout = "
            f"'{_setting('statement_timeout', migrations.DEFAULT_STATEMENT_TIMEOUT)}'"
        )
    )
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {migrations.SCHEMA}"))
    connection.commit()


def _release_session(connection: Connection) -> None:
    if connection.in_transaction():
        connection.commit()
    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrations.ADVISORY_LOCK_KEY})
    connection.execute(text("RESET lock_timeout"))
    connection.execute(text("RESET statement_timeout"))
    connection.commit()


def _run(connection: Connection) -> None:
    _prepare_session(connection)
    try:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        _release_session(connection)


def run_migrations_offline() -> None:
    """Render the SQL of the requested revisions (``alembic upgrade head --sql``)."""
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or "postgresql+psycopg://localhost/authmodels"
    )
    _configure(url=db.sqlalchemy_url(url), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        lock_timeout = _setting("lock_timeout", migrations.DEFAULT_LOCK_TIMEOUT)
        statement_timeout = _setting("statement_timeout", migrations.DEFAULT_STATEMENT_TIMEOUT)
        context.execute(f"SET lock_timeout = '{lock_timeout}'")
        context.execute(f"SET statement_timeout = '{statement_timeout}'")
        context.execute(f"CREATE SCHEMA IF NOT EXISTS {migrations.SCHEMA}")
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the requested revisions against a live database."""
    injected = config.attributes.get("connection")
    if isinstance(injected, Engine):  # pytest-alembic hands over its engine
        with injected.connect() as connection:
            _run(connection)
        return
    if injected is not None:
        _run(injected)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = db.create_db_engine(url, poolclass=pool.NullPool)
    log.info("migrating %s", engine.url.render_as_string(hide_password=True))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
