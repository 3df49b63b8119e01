"""Fixtures of the report's tests: the owner's isolated session, and a report role.

The report role is a ``LOGIN`` role created on the test server for the run (random name and
password) and registered with ``auth.grant_report_role`` where a test needs it: in the test's
own transaction (``as_report_role``), or committed in a fresh database (``report_url``) for the
commands that connect with a URL.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.db import libpq_url
from authmodels.testing.database import TestServer


@dataclass(frozen=True)
class ReportRole:
    """A login role that may be registered as a report role."""

    name: str
    password: str

    def url(self, database_url: URL) -> URL:
        """``database_url`` connecting as this role."""
        return database_url.set(username=self.name, password=self.password)


@pytest.fixture(scope="session")
def report_role(authmodels_test_server: TestServer) -> Iterator[ReportRole]:
    """A ``LOGIN`` role for the run, not yet registered anywhere; dropped at the end."""
    role = ReportRole(f"authmodels_report_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(24))
    with authmodels_test_server.admin_connection() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role.name), sql.Literal(role.password)
            )
        )
    yield role
    with authmodels_test_server.admin_connection() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))


@pytest.fixture
def db(authmodels_session: Session) -> Session:
    """The owner's session, rolled back after the test."""
    return authmodels_session


@pytest.fixture
def as_report_role(db: Session, report_role: ReportRole):  # type: ignore[no-untyped-def]
    """A context manager: the block runs as the report role (registered in the test's
    transaction, which is rolled back with it)."""
    db.execute(text("SELECT auth.grant_report_role(:r)"), {"r": report_role.name})

    @contextmanager
    def switch() -> Iterator[Session]:
        db.execute(text(f'SET LOCAL ROLE "{report_role.name}"'))
        try:
            yield db
        finally:
            db.execute(text("RESET ROLE"))

    return switch


@pytest.fixture
def report_url(authmodels_fresh_database: URL, report_role: ReportRole) -> URL:
    """A fresh database (real commits) where the report role is registered; its URL as the
    report role."""
    import psycopg

    with psycopg.connect(libpq_url(authmodels_fresh_database), autocommit=True) as conn:
        conn.execute("SELECT auth.grant_report_role(%s)", (report_role.name,))
    return report_role.url(authmodels_fresh_database)
