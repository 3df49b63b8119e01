"""The roles a production service connects with, created on the test server for one run.

A service built on authmodels does not connect as the tables' owner (row-level security does not
apply to the owner): it connects as a *login role* that is a member of the *application role*
(registered with ``auth.grant_app_role``), and switches to a *service role* (registered with
``auth.grant_service_role``) for the transactions that must look a row up before its user is known
(:func:`authmodels.rls.service_role`). :func:`create_test_roles` makes such a trio on the test
server, :func:`grant_test_roles` registers it in a migrated database (as the owner), and
:func:`drop_test_roles` removes it once no database holds its grants any more.

The server's user must be allowed to create roles (``CREATEROLE``, or a superuser): the embedded
and testcontainers servers are; a server given by URL must be too.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from authmodels.db import libpq_url
from authmodels.errors import ConfigurationError
from authmodels.testing.database import TestServer

__all__ = ["TestRoles", "create_test_roles", "drop_test_roles", "grant_test_roles"]


@dataclass(frozen=True)
class TestRoles:
    """The roles of a test run, named uniquely for the run.

    Attributes:
        login: the role the application connects as (``LOGIN``, with :attr:`password`); a member
            of :attr:`app`, whose privileges it inherits, and of :attr:`service`, so that it can
            ``SET ROLE`` to it.
        app: the application role (``NOLOGIN``), registered with ``auth.grant_app_role``.
        service: the service role (``NOLOGIN``), registered with ``auth.grant_service_role``:
            ``rls.service_role(db, roles.service)``.
        password: the login role's password (random, for this run only).
    """

    __test__ = False  # not a pytest test class

    login: str
    app: str
    service: str
    password: str = field(repr=False)

    def url(self, database_url: URL) -> URL:
        """``database_url`` with the login role's credentials (user and password).

        The password is always set, even on a server that trusts local connections (the
        embedded one), so that the same URL works on a server that checks it.
        """
        return database_url.set(username=self.login, password=self.password)


def create_test_roles(server: TestServer, *, prefix: str = "authmodels") -> TestRoles:
    """Create a login, an application and a service role with names unique to this call.

    Args:
        server: the test server (its admin URL's user needs ``CREATEROLE``).
        prefix: start of the role names (``<prefix>_login_<hex>``, ...).

    Raises:
        ConfigurationError: the server's user may not create roles.
    """
    suffix = uuid.uuid4().hex[:12]
    roles = TestRoles(
        login=f"{prefix}_login_{suffix}",
        app=f"{prefix}_app_{suffix}",
        service=f"{prefix}_service_{suffix}",
        password=secrets.token_urlsafe(24),
    )
    login, app, service = (sql.Identifier(r) for r in (roles.login, roles.app, roles.service))
    with server.admin_connection() as conn:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(app))
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(service))
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        login, sql.Literal(roles.password)
                    )
                )
                conn.execute(sql.SQL("GRANT {} TO {}").format(app, login))
                # The login role only needs to SET ROLE to the service role; where the server
                # can say so (PostgreSQL 16+), it does not inherit its privileges as well.
                if conn.info.server_version >= 160000:
                    conn.execute(
                        sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
                            service, login
                        )
                    )
                else:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(service, login))
        except psycopg.errors.InsufficientPrivilege as exc:
            user = server.url.username or "the server's user"
            raise ConfigurationError(
                f"{user} may not create roles, which the application-role fixtures need: "
                f"run ALTER ROLE {user} CREATEROLE on the test server, or use a server where "
                f"it can ({exc.diag.message_primary})"
            ) from exc
    return roles


def grant_test_roles(database_url: URL, roles: TestRoles) -> None:
    """Register ``roles`` in a migrated database, as its owner.

    Runs ``auth.grant_app_role(app)`` and ``auth.grant_service_role(service)`` (revisions 0006
    and 0019). Both are idempotent: run it again after migrating further.

    Args:
        database_url: URL of the database, connecting as the owner of schema ``auth``.
        roles: the run's roles.
    """
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT auth.grant_app_role(%s)", (roles.app,))
        conn.execute("SELECT auth.grant_service_role(%s)", (roles.service,))


def drop_test_roles(server: TestServer, roles: TestRoles) -> None:
    """Drop the roles (the databases that hold their grants and policies must be gone)."""
    with server.admin_connection() as conn, conn.transaction():
        for role in (roles.login, roles.service, roles.app):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
