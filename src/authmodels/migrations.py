"""Alembic configuration for the packaged revisions, and the environment every chain runs in (the
helpers revisions call are in :mod:`authmodels.revision_ops`).

A service that only ``pip install``-ed authmodels migrates with::

    from alembic import command
    from authmodels.migrations import alembic_config

    command.upgrade(alembic_config("postgresql://app@db/app"), "head")

or composes our chain into its own Alembic environment, so that plain ``alembic`` runs both:
its ``alembic.ini`` lists :data:`VERSION_LOCATION` (a package resource, valid in any virtualenv)
beside its own ``versions/`` folder, and its ``env.py`` calls :func:`run_environment`. Our first
revision carries the branch label ``authmodels``: a service revision declares ``depends_on =
"authmodels"`` (our first revision, enough for ``auth.users``) or the id of the revision whose
schema it needs. ``docs/integration.md`` shows a whole service.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.engine import URL

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

#: Schema of every authmodels table, and of Alembic's version table.
SCHEMA = "auth"
VERSION_TABLE = "alembic_version"
#: Branch label of our first revision (``depends_on = "authmodels"``; ``authmodels@head``).
BRANCH_LABEL = "authmodels"
#: The packaged revisions as an Alembic package resource, for a service's ``version_locations``
#: (with ``path_separator = newline``: the default, ``os``, would split it at the colon).
VERSION_LOCATION = "authmodels:_alembic/versions"
#: Key of the PostgreSQL advisory lock held while migrating (two deployers never migrate at once).
ADVISORY_LOCK_KEY = 0x61757468_6D6F64  # "authmod"
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "30min"
#: A URL whose only use is to pick the dialect when rendering SQL (``--sql``): never connected to.
OFFLINE_URL = "postgresql+psycopg://localhost/authmodels"


def script_location() -> Path:
    """The folder holding ``env.py`` and ``versions/``.

    In an installed wheel this is ``authmodels/_alembic`` inside the package; in a source checkout
    (editable install) it is the repository's top-level ``alembic/`` folder.
    """
    packaged = Path(__file__).resolve().parent / "_alembic"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError(
        f"authmodels' migrations are missing: neither {packaged} nor {checkout} holds env.py"
    )


def version_locations() -> str:
    """The ``versions/`` folder, as a path (for a ``Config`` built in Python)."""
    return str(script_location() / "versions")


def alembic_config(
    url: str | URL | None = None,
    *,
    connection: Connection | None = None,
    **attributes: Any,
) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the packaged revision chain.

    Args:
        url: database URL; when None (and no ``connection``), :func:`run_environment` resolves
            one (environment, then the embedded server). Only read to render SQL (``--sql``)
            when a ``connection`` is given.
        connection: an open connection to run on (the CLI, tests, the pytest plugin): nothing
            is resolved again.
        **attributes: extra ``config.attributes``: ``lock_timeout``, ``statement_timeout``,
            ``cancel_autovacuum`` (False: leave autovacuum workers alone, see
            :func:`run_environment`), ``on_version_apply`` (Alembic's callback after each revision),
            ``ignore_other_revisions`` (run on a version table that also holds the revisions of
            a service's chain, leaving them alone).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("version_locations", version_locations())
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes.update(attributes)
    return cfg


def packaged_head() -> str:
    """The head revision of the packaged chain (``0035_replica_revocations`` today)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


# --- the environment (env.py) ---------------------------------------------------------------------


def run_environment(
    *,
    target_metadata: MetaData | Sequence[MetaData] | None = None,
    **configure: Any,
) -> None:
    """Run the migrations Alembic asked for: the whole body of an ``env.py``.

    authmodels' own ``env.py`` is one call of this; a service that composes our chain into its
    own Alembic environment calls it with its models' metadata::

        from authmodels.migrations import run_environment
        from shop.models import ShopBase

        run_environment(target_metadata=ShopBase.metadata)

    It gives every chain what authmodels' revisions are written for:

    - Alembic's version table in schema ``auth`` (created if missing), so a database migrated by
      ``authmodels db upgrade`` is recognised, and the service's revisions are a second head;
    - one transaction per revision (the batched backfills commit between steps);
    - before each DDL statement that takes a strong lock on a table of schema ``auth``, the
      autovacuum workers on that schema's tables are cancelled (when the role may: a superuser,
      or a member of ``pg_signal_autovacuum_worker``; ``-x cancel_autovacuum=false`` turns it
      off): PostgreSQL would cancel them after ``deadlock_timeout`` anyway, while the
      application's queries queued behind the waiting DDL (:mod:`authmodels._make_way`);
    - ``lock_timeout`` (default 5s, ``-x lock_timeout=...``), ``statement_timeout`` (default
      30min, ``-x statement_timeout=...``), and an advisory lock held for the whole run, shared
      with ``authmodels db``, so two migrators never run at once; so a connection through a
      transaction-mode pooler (PgBouncer) is refused
      (:class:`~authmodels.errors.TransactionPoolerError`): migrate on a direct connection;
    - autogenerate (``alembic check``, ``revision --autogenerate``) compares authmodels' models
      in schema ``auth`` and the service's metadata in the schemas its tables use, nothing else;
    - the logging sections of the ``.ini`` file, when it has them, configure logging (as the
      ``env.py`` of ``alembic init`` does), unless ``config.attributes["configure_logger"]`` is
      False.

    The connection: ``config.attributes["connection"]`` when the caller hands one over (the
    ``authmodels`` command, tests), else a URL from ``-x url=...``, the config's
    ``sqlalchemy.url``, ``AUTHMODELS_DATABASE_URL``, ``DATABASE_URL``, the embedded server
    (:func:`authmodels.db.locate_database`). A URL that does not work fails before anything runs,
    naming where it came from. Run by the ``alembic`` command, authmodels' typed errors (a missing
    key, a server that cannot be reached) print as one ``FAILED:`` line.

    Args:
        target_metadata: the service's metadata (one or several); authmodels' own is always
            compared too.
        **configure: more keyword arguments for ``context.configure`` (``include_object``,
            ``process_revision_directives``...).

    Raises:
        alembic.util.CommandError: authmodels' revisions are not in the config's
            ``version_locations``.
    """
    from alembic import context
    from alembic.util import CommandError

    from authmodels.errors import AuthModelsError

    config = context.config
    if (
        config.config_file_name is not None
        and config.attributes.get("configure_logger", True)
        and config.file_config.has_section("loggers")
    ):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    try:
        _require_our_chain(context.script)
        if context.is_offline_mode():
            _run_offline(_configure_options(target_metadata, configure))
        else:
            _run_online(_configure_options(target_metadata, configure))
    except AuthModelsError as exc:
        if config.cmd_opts is None:  # called from Python: keep the typed error
            raise
        raise CommandError(str(exc)) from exc


def _require_our_chain(script: ScriptDirectory) -> None:
    from alembic.util import CommandError

    try:
        script.get_revision(BRANCH_LABEL)
    except Exception as exc:  # Alembic's resolution errors have no common public base
        raise CommandError(
            "authmodels' revisions are not among this environment's version_locations: add "
            f"{VERSION_LOCATION} to version_locations in alembic.ini (with path_separator = "
            "newline)"
        ) from exc


def comparison_options(
    target_metadata: MetaData | Sequence[MetaData] | None = None,
) -> dict[str, Any]:
    """The ``context.configure`` options that make a chain compare what it owns, and only that.

    ``target_metadata`` is authmodels' models plus the given metadata; the schemas compared are
    ``auth`` and those the given metadata's tables live in (None: the default schema); Alembic's
    version table is ``auth.alembic_version``. :func:`run_environment` uses them, and so does
    ``authmodels db check``.
    """
    from authmodels.models import Base

    theirs = (
        []
        if target_metadata is None
        else [target_metadata]
        if isinstance(target_metadata, MetaData)
        else list(target_metadata)
    )
    schemas: set[str | None] = {SCHEMA}
    for metadata in theirs:
        schemas.update(table.schema for table in metadata.tables.values())
    return {
        "target_metadata": [Base.metadata, *theirs],
        "version_table": VERSION_TABLE,
        "version_table_schema": SCHEMA,
        "include_schemas": True,
        "include_name": _include_name(schemas),
        "compare_type": True,
        "compare_server_default": False,
    }


def _configure_options(
    target_metadata: MetaData | Sequence[MetaData] | None, extra: dict[str, Any]
) -> dict[str, Any]:
    from alembic import context

    options = comparison_options(target_metadata)
    options["transaction_per_migration"] = True
    on_version_apply = context.config.attributes.get("on_version_apply")
    if on_version_apply is not None:
        options["on_version_apply"] = on_version_apply
    options.update(extra)
    return options


def _include_name(schemas: set[str | None]) -> Callable[[str | None, str, Any], bool]:
    from authmodels.partitions import DEFAULT_PARTITION_NAME, PARTITION_NAME

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        """Compare the schemas of the chain's models only (None: the default schema), without
        the partitions of the partitioned logs: ``auth.ensure_monthly_partitions`` creates them
        at run time, and the default partitions (revision 0027) are the parent's too."""
        if type_ == "schema":
            return name in schemas
        if type_ == "table" and name is not None and parent_names.get("schema_name") == SCHEMA:
            return not (PARTITION_NAME.match(name) or DEFAULT_PARTITION_NAME.match(name))
        return True

    return include_name


def _setting(name: str, default: str) -> str:
    from alembic import context

    x_args = context.get_x_argument(as_dictionary=True)
    return str(x_args.get(name) or context.config.attributes.get(name) or default)


def _enabled(name: str) -> bool:
    """An on-by-default switch: off with ``-x name=false`` (or ``0``, ``no``, ``off``) or the
    config attribute ``name`` set to one of those or False."""
    from alembic import context

    value = context.get_x_argument(as_dictionary=True).get(name)
    if value is None:
        value = context.config.attributes.get(name, True)
    return str(value).strip().lower() not in {"0", "false", "no", "off"}


def _run_offline(options: dict[str, Any]) -> None:
    from alembic import context

    from authmodels.db import sqlalchemy_url

    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or context.config.get_main_option("sqlalchemy.url")
        or OFFLINE_URL
    )
    context.configure(
        url=sqlalchemy_url(url), literal_binds=True, dialect_opts={"paramstyle": "named"}, **options
    )
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{_setting('lock_timeout', DEFAULT_LOCK_TIMEOUT)}'")
        context.execute(
            f"SET statement_timeout = '{_setting('statement_timeout', DEFAULT_STATEMENT_TIMEOUT)}'"
        )
        context.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        context.run_migrations()


def _run_online(options: dict[str, Any]) -> None:
    from alembic import context
    from sqlalchemy import Engine, pool

    from authmodels.db import locate_database, open_engine

    injected = context.config.attributes.get("connection")
    if isinstance(injected, Engine):  # pytest-alembic hands over its engine
        with injected.connect() as connection:
            _run_on(connection, options)
        return
    if injected is not None:
        _run_on(injected, options)
        return
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    ini_url = context.config.get_main_option("sqlalchemy.url")
    ini = context.config.config_file_name
    location = locate_database(
        x_url or ini_url,
        source="-x url" if x_url else f"sqlalchemy.url in {ini or 'the Alembic config'}",
    )
    engine = open_engine(location, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_on(connection, options)
    finally:
        engine.dispose()


def _run_on(connection: Connection, options: dict[str, Any]) -> None:
    from alembic import context
    from sqlalchemy.exc import DBAPIError

    from authmodels._make_way import make_way_for_ddl, may_cancel_autovacuum
    from authmodels.db import require_direct_connection

    # Session-level (not SET LOCAL): these outlive each per-revision transaction, which a
    # transaction-mode pooler would run on different server connections.
    require_direct_connection(connection, "migrating schema auth")
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    try:
        connection.execute(
            text(f"SET lock_timeout = '{_setting('lock_timeout', DEFAULT_LOCK_TIMEOUT)}'")
        )
        connection.execute(
            text(
                "SET statement_timeout = "
                f"'{_setting('statement_timeout', DEFAULT_STATEMENT_TIMEOUT)}'"
            )
        )
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        make_way = _enabled("cancel_autovacuum") and may_cancel_autovacuum(connection)
        connection.commit()
        context.configure(connection=connection, **options)
        if context.config.attributes.get("ignore_other_revisions"):
            _see_only_this_chain(context.get_context(), context.script)
        with make_way_for_ddl(connection, enabled=make_way), context.begin_transaction():
            context.run_migrations()
    except BaseException:
        # the revision's own error is the one to report, not a failure to clean up after it
        with contextlib.suppress(DBAPIError):
            connection.rollback()
            _release(connection)
        raise
    if connection.in_transaction():
        connection.commit()
    _release(connection)


def _see_only_this_chain(migration_context: MigrationContext, script: ScriptDirectory) -> None:
    """Hide the version table's rows that belong to another chain (a service's).

    Alembic resolves every row of the version table, and stops at one its script directory does
    not hold. ``authmodels db`` runs our chain alone on a database composed with a service's:
    with the service's rows hidden, Alembic plans, inserts, updates and deletes our row alone.
    """
    known = {revision.revision for revision in script.walk_revisions()}
    every_row = migration_context.get_current_heads

    def our_rows() -> tuple[str, ...]:
        return tuple(row for row in every_row() if row in known)

    setattr(migration_context, "get_current_heads", our_rows)  # noqa: B010 (on this instance)


def _release(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
    connection.execute(text("RESET lock_timeout"))
    connection.execute(text("RESET statement_timeout"))
    connection.commit()
