"""Alembic configuration for the packaged revisions (the helpers revisions call: ``revision_ops``).

A service that only ``pip install``-ed authmodels migrates with::

    from alembic import command
    from authmodels.migrations import alembic_config

    command.upgrade(alembic_config("postgresql://app@db/app"), "head")

or composes our chain into its own Alembic environment: our first revision carries
``branch_labels=("authmodels",)``, so a downstream revision can declare
``depends_on = "<the authmodels revision it needs>"`` (e.g. ``"0016_retention_policies"``), or
``depends_on = "authmodels"`` (our first revision, when ``auth.users`` is all it needs); see
:func:`version_locations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.engine import URL

#: Schema of every authmodels table, and of Alembic's version table.
SCHEMA = "auth"
VERSION_TABLE = "alembic_version"
#: Key of the PostgreSQL advisory lock held while migrating (two deployers never migrate at once).
ADVISORY_LOCK_KEY = 0x61757468_6D6F64  # "authmod"
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "30min"


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
    """The ``versions/`` folder, for a downstream ``version_locations`` setting."""
    return str(script_location() / "versions")


def alembic_config(
    url: str | URL | None = None,
    *,
    connection: Connection | None = None,
    **attributes: Any,
) -> Config:
    """An Alembic :class:`~alembic.config.Config` for the packaged revision chain.

    Args:
        url: database URL; when None, ``env.py`` resolves one (environment, then embedded server).
        connection: an open connection to run on instead (tests, the pytest plugin).
        **attributes: extra ``config.attributes`` (``lock_timeout``, ``statement_timeout``).
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
