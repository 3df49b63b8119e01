"""Fixtures for tests of the schema at head: a connection whose work is rolled back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError


@pytest.fixture
def conn(authmodels_engine: Engine) -> Iterator[Connection]:
    """A connection to the shared test database inside a transaction rolled back at teardown."""
    with authmodels_engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def refused(conn: Connection) -> Callable[..., DBAPIError]:
    """Run a statement that must fail, in a SAVEPOINT; return the error."""

    def run(sql: str, **params: Any) -> DBAPIError:
        savepoint = conn.begin_nested()
        try:
            conn.execute(text(sql), params)
        except DBAPIError as error:
            savepoint.rollback()
            return error
        savepoint.rollback()
        raise AssertionError(f"not refused: {sql}")

    return run


@pytest.fixture
def make_user(conn: Connection) -> Callable[..., str]:
    """Insert a user (placeholder password hash) in :func:`conn`; its id as text."""
    counter = iter(range(1, 10_000))

    def make(role: str = "user", **values: Any) -> str:
        email = values.pop("email", f"user{next(counter)}@example.test")
        names = ", ".join(["email", "password_hash", "role", *values])
        params = ", ".join([":email", "'x'", ":role", *(f":{k}" for k in values)])
        return str(
            conn.execute(
                text(f"INSERT INTO auth.users ({names}) VALUES ({params}) RETURNING id"),
                {"email": email, "role": role, **values},
            ).scalar_one()
        )

    return make
