"""``python -m authservice.provision [--admin EMAIL]``: the operator's step before the first run.

As the database's owner (the URL authmodels resolves: ``AUTHMODELS_DATABASE_URL``,
``DATABASE_URL``, else the embedded server): migrate authmodels to head, create the service's
roles if they are missing -- ``authservice_app`` and ``authservice_service`` (``NOLOGIN``), and
the login role ``authservice_login``, a member of the first and allowed to ``SET ROLE`` to the
second -- and register them (``auth.grant_app_role``, ``auth.grant_service_role``). Run it
again after an upgrade: every step is idempotent. ``--admin EMAIL`` makes that account an
administrator (the first one becomes the master admin).

``AUTHSERVICE_DATABASE_PASSWORD`` sets the login role's password (the embedded server trusts
local connections and needs none).
"""

from __future__ import annotations

import argparse
import os
import sys

import psycopg
from alembic import command
from psycopg import sql

from authmodels.db import libpq_url, locate_database
from authmodels.migrations import alembic_config
from authservice.config import APP_ROLE, LOGIN_ROLE, SERVICE_ROLE


def provision(*, admin: str | None = None) -> None:
    """Migrate, create and register the roles, optionally promote ``admin`` (see the module)."""
    location = locate_database()
    command.upgrade(alembic_config(location.url), "head")
    password = os.environ.get("AUTHSERVICE_DATABASE_PASSWORD")
    login, app, service = (sql.Identifier(r) for r in (LOGIN_ROLE, APP_ROLE, SERVICE_ROLE))
    with psycopg.connect(libpq_url(location.url), autocommit=True) as conn, conn.transaction():
        existing = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        for name, role in ((APP_ROLE, app), (SERVICE_ROLE, service)):
            if name not in existing:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
        if LOGIN_ROLE not in existing:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(login))
        if password:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(login, sql.Literal(password)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(app, login))
        if conn.info.server_version >= 160000:  # SET ROLE only, without its privileges
            conn.execute(
                sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(service, login)
            )
        else:
            conn.execute(sql.SQL("GRANT {} TO {}").format(service, login))
        conn.execute("SELECT auth.grant_app_role(%s)", (APP_ROLE,))
        conn.execute("SELECT auth.grant_service_role(%s)", (SERVICE_ROLE,))
        if admin is not None:
            promoted = conn.execute(
                "UPDATE auth.users SET role = 'admin' "
                "WHERE lower(email) = lower(%s) AND deleted_at IS NULL RETURNING id",
                (admin,),
            ).fetchone()
            if promoted is None:
                raise SystemExit(f"no account has the address {admin}: sign up first")
    print(
        f"authservice: {location.shown} is at head; roles {LOGIN_ROLE}, {APP_ROLE}, "
        f"{SERVICE_ROLE} ready" + (f"; {admin} is an administrator" if admin else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m authservice.provision", description=__doc__)
    parser.add_argument("--admin", metavar="EMAIL", help="make this account an administrator")
    args = parser.parse_args(argv)
    provision(admin=args.admin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
