"""Async engines resolve their URL as every entry point does, and run on psycopg's asyncio
driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from authmodels import db as am_db
from authmodels.db import ASYNC_DRIVER, EmbeddedServer, create_async_db_engine, libpq_url
from authmodels.errors import ConfigurationError
from authmodels.testing.database import TestServer


def test_an_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHMODELS_DATABASE_URL", "postgresql://env@host/envdb")
    assert create_async_db_engine("postgres://me@host/mine").url.database == "mine"
    engine = create_async_db_engine()
    assert (engine.url.database, engine.url.drivername) == ("envdb", ASYNC_DRIVER)


def test_database_url_is_the_fallback_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHMODELS_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://d@host/ddb")
    assert create_async_db_engine().url.database == "ddb"


def test_a_non_postgresql_url_is_refused_naming_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHMODELS_DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(
        ConfigurationError, match=r"from AUTHMODELS_DATABASE_URL\) is not a PostgreSQL URL"
    ):
        create_async_db_engine()


def test_without_greenlet_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = am_db.importlib.util.find_spec

    def no_greenlet(name: str, *args: Any) -> Any:
        return None if name == "greenlet" else real_find_spec(name, *args)

    monkeypatch.setattr(am_db.importlib.util, "find_spec", no_greenlet)
    with pytest.raises(ConfigurationError, match=r"install authmodels\[async\]"):
        create_async_db_engine("postgresql://me@host/mine")


@pytest.fixture
def embedded_home(authmodels_test_server: TestServer, tmp_path: Path) -> Iterator[Path]:
    """The folder of an embedded server: the run's own when it is one, else a new one."""
    if authmodels_test_server.kind == "embedded":
        with psycopg.connect(libpq_url(authmodels_test_server.url)) as conn:
            (data,) = conn.execute("SHOW data_directory").fetchone() or ("",)
        yield Path(str(data)).parent
        return
    server = EmbeddedServer(tmp_path / "embedded", delete_on_exit=True).start()
    try:
        yield server.home
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_with_nothing_configured_the_engine_is_on_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch, embedded_home: Path
) -> None:
    monkeypatch.delenv("AUTHMODELS_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AUTHMODELS_HOME", str(embedded_home))
    engine = create_async_db_engine()
    try:
        async with engine.connect() as conn:
            database = await conn.scalar(text("SELECT current_database()"))
            driver = (await conn.get_raw_connection()).driver_connection
    finally:
        await engine.dispose()
    assert (database, engine.url.drivername) == ("postgres", ASYNC_DRIVER)
    assert isinstance(driver, psycopg.AsyncConnection)
