"""A downstream app composes authmodels' chain into its own Alembic environment and uses the
``Versioned`` mixin for optimistic locking on a table of its own (seed 001's ``token_lending``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from lending_app.models import TokenLending
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from authmodels.db import sqlalchemy_url
from authmodels.errors import ConcurrentUpdateError
from authmodels.locking import RowNotFoundError, optimistic_update, update_versioned
from authmodels.migrations import version_locations
from authmodels.models import User

APP_ALEMBIC = Path(__file__).parent / "lending_app" / "alembic"


def _app_config(connection: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(APP_ALEMBIC))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option(
        "version_locations",
        f"{version_locations()}{os.pathsep}{APP_ALEMBIC / 'versions'}",
    )
    cfg.attributes["connection"] = connection
    return cfg


@pytest.fixture
def app_engine(authmodels_empty_database: URL) -> Iterator[Engine]:
    """The downstream app's database, migrated with its own environment (our chain included)."""
    engine = create_engine(sqlalchemy_url(authmodels_empty_database), pool_size=5)
    with engine.connect() as conn:
        command.upgrade(_app_config(conn), "heads")
        conn.commit()
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def lending(app_engine: Engine) -> TokenLending:
    with Session(app_engine, expire_on_commit=False) as db:
        lender = User(email="lender@example.test", password_hash="!unusable")
        borrower = User(email="borrower@example.test", password_hash="!unusable")
        db.add_all([lender, borrower])
        db.flush()
        row = TokenLending(lender_id=lender.id, borrower_id=borrower.id, token_count=5)
        db.add(row)
        db.commit()
        return row


def test_downstream_chain_runs_after_ours(app_engine: Engine) -> None:
    with app_engine.connect() as conn:
        tables = set(
            conn.scalars(
                text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema IN ('auth', 'lending')"
                )
            )
        )
    assert {"auth.users", "lending.token_lending"} <= tables


def test_downstream_downgrade_leaves_our_tables(app_engine: Engine) -> None:
    with app_engine.connect() as conn:
        command.downgrade(_app_config(conn), "lending@base")
        conn.commit()
        assert conn.scalar(text("SELECT to_regclass('lending.token_lending')")) is None
        assert conn.scalar(text("SELECT to_regclass('auth.users')")) is not None


def test_stale_version_is_refused_and_nothing_is_lost(
    app_engine: Engine, lending: TokenLending
) -> None:
    """Seed 001's scenario: two editors read version 1; the second write must fail."""
    factory = sessionmaker(app_engine, expire_on_commit=False)
    with factory() as first:
        updated = update_versioned(first, TokenLending, lending.id, 1, token_count=10)
        first.commit()
    assert updated.version == 2
    with factory() as second, pytest.raises(ConcurrentUpdateError) as info:
        update_versioned(second, TokenLending, lending.id, 1, token_count=20)
    assert f"TokenLending {lending.id} was modified by another transaction" in str(info.value)
    with factory() as db:
        row = db.get(TokenLending, lending.id)
        assert row is not None
        assert (row.token_count, row.version) == (10, 2)


def test_concurrent_updates_with_one_version_exactly_one_wins(
    app_engine: Engine, lending: TokenLending
) -> None:
    factory = sessionmaker(app_engine, expire_on_commit=False)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def edit(count: int) -> None:
        with factory() as db:
            barrier.wait()
            try:
                update_versioned(db, TokenLending, lending.id, 1, token_count=count)
                db.commit()
                outcomes.append(f"won:{count}")
            except ConcurrentUpdateError:
                db.rollback()
                outcomes.append("conflict")

    threads = [threading.Thread(target=edit, args=(n,)) for n in (10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "won"]
    winner = int(next(o for o in outcomes if o.startswith("won")).split(":")[1])
    with factory() as db:
        row = db.get(TokenLending, lending.id)
        assert row is not None
        assert (row.token_count, row.version) == (winner, 2)


def test_orm_update_of_a_stale_object_raises_concurrent_update_error(
    app_engine: Engine, lending: TokenLending
) -> None:
    factory = sessionmaker(app_engine, expire_on_commit=False)
    with factory() as slow, factory() as fast:
        stale = slow.get(TokenLending, lending.id)
        assert stale is not None
        fresh = fast.get(TokenLending, lending.id)
        assert fresh is not None
        fresh.token_count = 7
        fast.commit()
        stale.token_count = 9
        with (
            pytest.raises(ConcurrentUpdateError, match=f"TokenLending {lending.id} was modified"),
            optimistic_update(slow),
        ):
            pass
    with factory() as db:
        assert db.scalar(select(TokenLending.token_count)) == 7


def test_update_of_a_missing_row_says_so(app_engine: Engine, lending: TokenLending) -> None:
    with Session(app_engine) as db, pytest.raises(RowNotFoundError, match="does not exist"):
        update_versioned(db, TokenLending, lending.id + 1000, 1, token_count=1)


def test_version_cannot_be_set_by_hand(app_engine: Engine, lending: TokenLending) -> None:
    with Session(app_engine) as db, pytest.raises(ValueError, match="version is set by"):
        update_versioned(db, TokenLending, lending.id, 1, version=5)
