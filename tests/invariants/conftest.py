"""Fixtures of the invariant suite: its database, the owner's and the login role's engines, and
two seeded users.

The suite's database is migrated to head, or to the revision named by the environment variable
``AUTHMODELS_INVARIANTS_REVISION`` (any revision id of the chain), so the same guarantees can be
read at any point of the chain::

    AUTHMODELS_INVARIANTS_REVISION=0015_partitioned_logs python -m pytest tests/invariants

At head the database is a clone of the run's template (the run's roles are registered there);
at another revision it is migrated from empty and the roles are registered with
``auth.grant_app_role`` / ``auth.grant_service_role`` when the revision has them (0006 on).
The probes connect as the run's login role (:func:`authmodels_roles`), as a production service
does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine
from authmodels.testing.database import TestServer, temporary_database
from authmodels.testing.migrations import MigrationRunner, revision_ids
from authmodels.testing.roles import TestRoles, grant_test_roles
from tests.invariants.catalog import relations
from tests.invariants.isolation import probed_tables, world_rows
from tests.invariants.seeds import World, create_world, seed_world

REVISION_VAR = "AUTHMODELS_INVARIANTS_REVISION"


@pytest.fixture(scope="session")
def invariants_revision() -> str:
    """The revision the suite reads: ``$AUTHMODELS_INVARIANTS_REVISION``, else the head."""
    chosen = os.environ.get(REVISION_VAR) or "head"
    known = revision_ids()
    if chosen != "head" and chosen not in known:
        pytest.fail(f"{REVISION_VAR}={chosen!r} names no revision of the chain: one of {known}")
    return known[-1] if chosen == "head" else chosen


@pytest.fixture(scope="session")
def invariants_database(
    authmodels_test_server: TestServer,
    authmodels_template: str,
    authmodels_roles: TestRoles,
    invariants_revision: str,
) -> Iterator[URL]:
    """The suite's database, at :func:`invariants_revision`, the run's roles registered."""
    if invariants_revision == revision_ids()[-1]:
        with temporary_database(authmodels_test_server, template=authmodels_template) as url:
            yield url
        return
    with temporary_database(authmodels_test_server) as url:
        runner = MigrationRunner(url)
        try:
            runner.upgrade(invariants_revision)
            registered = runner.execute("SELECT to_regprocedure('auth.grant_app_role(text)')")
        finally:
            runner.dispose()
        if registered != [(None,)]:
            grant_test_roles(url, authmodels_roles)
        yield url


@pytest.fixture(scope="session")
def invariants_owner_engine(invariants_database: URL) -> Iterator[Engine]:
    """Engine on the suite's database as its owner (seeding, reading every row)."""
    engine = create_db_engine(invariants_database)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def invariants_app_engine(
    invariants_database: URL, authmodels_roles: TestRoles
) -> Iterator[Engine]:
    """Engine on the suite's database as the run's login role."""
    engine = create_db_engine(authmodels_roles.url(invariants_database))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def owner(invariants_owner_engine: Engine) -> Iterator[Connection]:
    """A connection of the owner, in a transaction rolled back after the test."""
    with invariants_owner_engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


@pytest.fixture
def app(invariants_app_engine: Engine, authmodels_roles: TestRoles) -> Iterator[Connection]:
    """A connection of the login role, in a transaction rolled back after the test; no user
    named."""
    with invariants_app_engine.connect() as conn:
        transaction = conn.begin()
        try:
            assert conn.scalar(text("SELECT current_user")) == authmodels_roles.login
            yield conn
        finally:
            transaction.rollback()


@dataclass(frozen=True, repr=False)
class Seeded:
    """Two users' worlds, seeded and committed, and the rows found for each."""

    a: World
    b: World
    failures: list[str]
    """Seed entries that could not be written (sentences)."""
    a_rows: dict[str, list[dict[str, Any]]]
    b_rows: dict[str, list[dict[str, Any]]]

    def __repr__(self) -> str:  # shown in failure reports: counts, not every row
        counts = {t: (len(self.a_rows[t]), len(self.b_rows.get(t, []))) for t in self.a_rows}
        return f"Seeded(A={self.a.user}, B={self.b.user}, rows of (A, B) per table={counts})"


@pytest.fixture(scope="session")
def seeded(invariants_owner_engine: Engine) -> Seeded:
    """Users A and B, each with a peer and a row in every per-user table (committed, as the
    owner); their rows, read back from the database."""
    with invariants_owner_engine.begin() as conn:
        tables = set(relations(conn))
        a, b = create_world(conn, "A"), create_world(conn, "B")
        failures = seed_world(conn, a, tables) + seed_world(conn, b, tables)
    with invariants_owner_engine.connect() as conn:
        probed = probed_tables(conn)
        return Seeded(
            a, b, failures, world_rows(conn, probed, a, b), world_rows(conn, probed, b, a)
        )
