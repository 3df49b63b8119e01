"""Users cannot reach each other's rows, probed as the application's login role on every table
and view the catalog shows (tests/invariants/isolation.py says how) -- connected directly, then
through PgBouncer in transaction mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine, pooler_of
from authmodels.testing.roles import TestRoles
from tests.invariants.conftest import Seeded
from tests.invariants.isolation import (
    other_users_rows_reachable,
    own_rows_hidden,
    rows_naming_another_user_writable,
    rows_visible_without_a_user,
    tables_without_rows_of,
    views_showing_other_users,
)


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def invariants_app_engine(
    request: pytest.FixtureRequest, invariants_database: URL, authmodels_roles: TestRoles
) -> Iterator[Engine]:
    """The suite's engine of the login role, direct and through the run's PgBouncer."""
    url = authmodels_roles.url(invariants_database)
    if request.param == "pgbouncer":
        url = request.getfixturevalue("authmodels_pgbouncer").url(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert pooler_of(conn) == ("transaction" if request.param == "pgbouncer" else "direct")
        yield engine
    finally:
        engine.dispose()


def _report(violations: list[str]) -> str:
    return f"{len(violations)} violation(s):\n- " + "\n- ".join(violations)


def test_every_per_user_table_has_seeded_rows_of_both_users(seeded: Seeded) -> None:
    violations = [
        *seeded.failures,
        *tables_without_rows_of(seeded.a_rows, seeded.a),
        *tables_without_rows_of(seeded.b_rows, seeded.b),
    ]
    assert not violations, _report(violations)


def test_a_user_reads_their_own_rows(app: Connection, owner: Connection, seeded: Seeded) -> None:
    violations = own_rows_hidden(app, owner, seeded.a, seeded.a_rows)
    assert not violations, _report(violations)


def test_a_user_cannot_read_change_delete_or_add_another_users_rows(
    app: Connection, owner: Connection, seeded: Seeded
) -> None:
    violations = other_users_rows_reachable(app, owner, seeded.a, seeded.b_rows)
    assert not violations, _report(violations)


def test_a_user_cannot_write_a_row_naming_another_user(
    app: Connection, owner: Connection, seeded: Seeded
) -> None:
    violations = rows_naming_another_user_writable(app, owner, seeded.a, seeded.b, seeded.a_rows)
    assert not violations, _report(violations)


def test_views_show_a_user_nothing_of_another_user(app: Connection, seeded: Seeded) -> None:
    violations = views_showing_other_users(app, seeded.a, seeded.b)
    assert not violations, _report(violations)


def test_nothing_is_readable_when_no_user_is_named(app: Connection, seeded: Seeded) -> None:
    violations = rows_visible_without_a_user(app)
    assert not violations, _report(violations)
