"""Alembic configuration for the packaged revisions, the environment every chain runs in, and
helpers the revisions share.

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
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import op
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.engine import URL

from authmodels.config import KeyRing, Settings

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
DEFAULT_BATCH_SIZE = 5000
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
            ``on_version_apply`` (Alembic's callback after each revision),
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
    """The head revision of the packaged chain (``0028_owner_maintenance``...)."""
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
    - ``lock_timeout`` (default 5s, ``-x lock_timeout=...``), ``statement_timeout`` (default
      30min, ``-x statement_timeout=...``), and an advisory lock held for the whole run, shared
      with ``authmodels db``, so two migrators never run at once;
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

    # Session-level (not SET LOCAL): these outlive each per-revision transaction.
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
        connection.commit()
        context.configure(connection=connection, **options)
        if context.config.attributes.get("ignore_other_revisions"):
            _see_only_this_chain(context.get_context(), context.script)
        with context.begin_transaction():
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


# --- helpers for revisions -----------------------------------------------------------------------


def is_offline() -> bool:
    """True when Alembic renders SQL (``--sql``) instead of running it."""
    return bool(op.get_context().as_sql)


def require_hash_keys(*, tables_with_rows: Sequence[str]) -> KeyRing | None:
    """The hash key ring a backfill needs, checked before the revision changes anything.

    Returns None when none of ``tables_with_rows`` (qualified names) holds a row, or in offline
    mode, so an empty database migrates without keys.

    Raises:
        MissingKeyError: rows need hashing and ``AUTHMODELS_HASH_KEYS`` is not set.
    """
    if is_offline():
        return None
    bind = op.get_bind()
    has_rows = any(
        # the table names are the revision's own constants, never user input
        bind.execute(text(f"SELECT EXISTS (SELECT 1 FROM {t})")).scalar()  # noqa: S608
        for t in tables_with_rows
    )
    if not has_rows:
        return Settings.from_env().hash_keys
    return Settings.from_env().require_hash_keys()


@dataclass
class BackfillReport:
    """What a batched backfill did."""

    rows: int = 0
    batches: int = 0
    seconds: float = 0.0


def batched(
    select_batch: str,
    apply_batch: Callable[[Connection, Sequence[Any]], None],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    params: dict[str, Any] | None = None,
) -> BackfillReport:
    """Run a backfill in short transactions, walking the table by key (keyset pagination).

    ``select_batch`` is a SELECT whose first column is the key, ordered by it, taking the bind
    parameters ``:after`` (the last key of the previous batch, NULL at first) and ``:limit``; e.g.
    ``SELECT id, email FROM auth.t WHERE (:after IS NULL OR id > :after) ORDER BY id LIMIT :limit``.
    ``apply_batch(connection, rows)`` writes one batch. Each batch commits on its own inside
    Alembic's autocommit block, so no lock outlives a batch and a crash loses at most one batch
    (the revision is re-run from the start, and every backfill is written to be idempotent).

    In offline mode (``--sql``) nothing runs: the backfill needs the data.
    """
    report = BackfillReport()
    if is_offline():
        op.execute(f"-- batched backfill runs online only: {select_batch.splitlines()[0]}")
        return report
    started = time.perf_counter()
    after: Any = None
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        while True:
            with explicit_transaction(bind):
                rows = bind.execute(
                    text(select_batch), {"after": after, "limit": batch_size, **(params or {})}
                ).all()
                if not rows:
                    break
                apply_batch(bind, rows)
            after = rows[-1][0]
            report.rows += len(rows)
            report.batches += 1
            if len(rows) < batch_size:
                break
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def explicit_transaction(bind: Connection) -> Iterator[None]:
    """One transaction on a connection inside Alembic's ``autocommit_block()``.

    There the connection autocommits each statement; an explicit ``BEGIN``/``COMMIT`` makes
    several statements (e.g. copy to quarantine, then delete) atomic, and ends their locks at
    the block's end.
    """
    bind.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        bind.exec_driver_sql("ROLLBACK")
        raise
    bind.exec_driver_sql("COMMIT")


def create_index_concurrently(
    name: str,
    table: str,
    columns: str,
    *,
    unique: bool = False,
    where: str | None = None,
    using: str | None = None,
) -> None:
    """``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` outside the revision's transaction.

    Writes keep flowing while the index builds; ``IF NOT EXISTS`` makes a re-run after a failed
    build idempotent (an invalid leftover index is dropped first).
    """
    with op.get_context().autocommit_block():
        if not is_offline() and _index_is_invalid(name):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")
        op.execute(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY IF NOT EXISTS {name} "
            f"ON {SCHEMA}.{table}{f' USING {using}' if using else ''} ({columns})"
            f"{f' WHERE {where}' if where else ''}"
        )


def create_partitioned_index_concurrently(
    name: str, table: str, columns: str, *, where: str | None = None
) -> None:
    """An index on a partitioned table, built one partition at a time without blocking writes.

    ``CREATE INDEX CONCURRENTLY`` does not work on a partitioned table, and a plain ``CREATE
    INDEX`` on one builds every partition's index under a lock that blocks writes. Instead
    (PostgreSQL's recipe): the index is created ``ON ONLY`` the parent (instant: it has no rows;
    it is invalid, and a partition created from now on gets its own index with it), each
    partition's index is built concurrently and attached, and the parent's index becomes valid
    when every partition has one. Each partition's index is named ``name`` with the table's name
    replaced by the partition's (``ix_audit_logs_p202611_...``). Idempotent: a re-run skips what
    exists and rebuilds an invalid leftover. Offline only the parent's statement is rendered.
    """
    where_sql = f" WHERE {where}" if where else ""
    op.execute(
        "-- squawk-ignore require-concurrent-index-creation -- ON ONLY a partitioned table: "
        "no rows to build (each partition's index is built concurrently, then attached)\n"
        f"CREATE INDEX IF NOT EXISTS {name} ON ONLY {SCHEMA}.{table} ({columns}){where_sql}"
    )
    if is_offline():
        op.execute(f"-- each partition of {SCHEMA}.{table} gets {name} concurrently (online only)")
        return
    bind = op.get_bind()
    partitions = [
        str(row[0])
        for row in bind.execute(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass) AND NOT i.inhdetachpending "
                "AND NOT EXISTS (SELECT 1 FROM pg_inherits AS x JOIN pg_class AS pi "
                "ON pi.oid = x.inhrelid JOIN pg_index AS ix ON ix.indexrelid = pi.oid "
                "WHERE x.inhparent = to_regclass(:parent_index) AND ix.indrelid = c.oid) "
                "ORDER BY c.relname"
            ),
            {"t": f"{SCHEMA}.{table}", "parent_index": f"{SCHEMA}.{name}"},
        )
    ]
    for partition in partitions:
        part_index = name.replace(table, partition, 1)
        create_index_concurrently(part_index, partition, columns, where=where)
        with op.get_context().autocommit_block():  # its locks end with the statement
            op.execute(f"ALTER INDEX {SCHEMA}.{name} ATTACH PARTITION {SCHEMA}.{part_index}")


def _index_is_invalid(name: str) -> bool:
    return bool(
        op.get_bind()
        .execute(
            text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = :name"
            ),
            {"schema": SCHEMA, "name": name},
        )
        .scalar()
    )


def drop_index_concurrently(name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS`` outside the revision's transaction."""
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")
