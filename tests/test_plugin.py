"""The pytest plugin keeps tests apart and hands out real, migrated databases."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from authmodels import rls
from authmodels.db import EmbeddedServer, libpq_url, pooler_of, sqlalchemy_url
from authmodels.models import User
from authmodels.security.hashing import TokenHasher
from authmodels.testing.factories import (
    DEFAULT_PASSWORD,
    TEST_PASSWORD_HASHER,
    ServicePathUserFactory,
)
from authmodels.testing.migrations import revision_ids
from authmodels.testing.plugin import TestKeys
from authmodels.testing.roles import TestRoles

ISOLATION_EMAIL = "isolation-probe@example.test"


def _count_probe(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User).where(User.email == ISOLATION_EMAIL))


# The next two tests run in file order: the first commits a user, the second must not see it.
def test_isolation_first_test_commits_a_user(authmodels_session: Session) -> None:
    authmodels_session.add(User(email=ISOLATION_EMAIL, password_hash="!unusable"))
    authmodels_session.commit()  # what application code does; here it releases a SAVEPOINT
    assert _count_probe(authmodels_session) == 1


def test_isolation_second_test_does_not_see_it(
    authmodels_session: Session, authmodels_engine: Engine
) -> None:
    assert _count_probe(authmodels_session) == 0
    with authmodels_engine.connect() as other:  # nor does any other connection
        count = other.scalar(
            text("SELECT count(*) FROM auth.users WHERE email = :e"), {"e": ISOLATION_EMAIL}
        )
    assert count == 0


def test_rollback_inside_a_test_keeps_the_session_usable(authmodels_session: Session) -> None:
    authmodels_session.add(User(email="rolled-back@example.test", password_hash="x"))
    authmodels_session.flush()
    authmodels_session.rollback()
    assert authmodels_session.scalar(select(func.count()).select_from(User)) == 0


def test_user_factory_makes_users_with_verifiable_passwords(authmodels_user_factory) -> None:  # type: ignore[no-untyped-def]
    user = authmodels_user_factory(email="ada@example.test")
    assert user.id is not None
    assert TEST_PASSWORD_HASHER.verify(user.password_hash, DEFAULT_PASSWORD)
    assert not TEST_PASSWORD_HASHER.verify(user.password_hash, "wrong")


def test_fresh_database_is_migrated_and_shared_between_connections(
    authmodels_fresh_database: URL, authmodels_engine: Engine
) -> None:
    engine = create_engine(sqlalchemy_url(authmodels_fresh_database))
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO auth.users (email, password_hash) VALUES ('c@example.test', 'x')")
            )
        seen: list[int] = []

        def read() -> None:
            with engine.connect() as conn:
                seen.append(conn.scalar(text("SELECT count(*) FROM auth.users")) or 0)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert seen == [1]
        with engine.connect() as conn:
            version = conn.scalar(text("SELECT version_num FROM auth.alembic_version"))
        assert version == revision_ids()[-1]
    finally:
        engine.dispose()
    # the shared test database did not receive the committed row
    with authmodels_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM auth.users")) == 0


_FRESH_NAMES: list[str] = []


# File order again: the first test records its fresh database, the second checks it is gone.
def test_fresh_database_records_its_name(authmodels_fresh_database: URL) -> None:
    assert authmodels_fresh_database.database
    _FRESH_NAMES.append(authmodels_fresh_database.database)


def test_fresh_database_was_dropped_after_the_previous_test(authmodels_server_url: URL) -> None:
    assert _FRESH_NAMES, "run the whole file: the previous test records the name"
    admin = create_engine(sqlalchemy_url(authmodels_server_url))
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": _FRESH_NAMES[0]}
            )
    finally:
        admin.dispose()
    assert exists == 0


def test_empty_database_has_no_schema(authmodels_empty_database: URL) -> None:
    engine = create_engine(sqlalchemy_url(authmodels_empty_database))
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT to_regnamespace('auth')")) is None
    finally:
        engine.dispose()


def test_key_rings_are_generated_and_exported(authmodels_keys: TestKeys) -> None:
    import os

    from authmodels.config import Settings

    settings = Settings.from_env()
    assert settings.require_hash_keys().keys == authmodels_keys.hash_keys.keys
    assert (
        settings.require_encryption_keys().current_key
        == authmodels_keys.encryption_keys.current_key
    )
    assert len(authmodels_keys.hash_keys.current_key) == 32
    hasher = TokenHasher(authmodels_keys.hash_keys.keys)
    assert hasher.matches("t", hasher.digest("t"))
    assert "AUTHMODELS_HASH_KEYS" in os.environ


# --- the production roles: authmodels_roles and the app fixtures -------------------------------


def test_roles_are_those_of_a_production_service(
    authmodels_roles: TestRoles, authmodels_engine: Engine
) -> None:
    with authmodels_engine.connect() as conn:
        attributes = {
            name: tuple(flags)
            for name, *flags in conn.execute(
                text(
                    "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles "
                    "WHERE rolname = ANY(:r)"
                ),
                {"r": [authmodels_roles.login, authmodels_roles.app, authmodels_roles.service]},
            )
        }
        server_version = conn.dialect.server_version_info or (0,)
        inherits_app, inherits_service, can_set_service = conn.execute(
            text(
                "SELECT pg_has_role(:login, :app, 'USAGE'), pg_has_role(:login, :svc, 'USAGE'), "
                "pg_has_role(:login, :svc, 'MEMBER')"
            ),
            {
                "login": authmodels_roles.login,
                "app": authmodels_roles.app,
                "svc": authmodels_roles.service,
            },
        ).one()
    assert attributes == {
        authmodels_roles.login: (True, False, False),
        authmodels_roles.app: (False, False, False),
        authmodels_roles.service: (False, False, False),
    }
    assert inherits_app and can_set_service
    if server_version >= (16,):
        assert not inherits_service  # a member to SET ROLE, not to inherit


def test_app_url_carries_the_login_roles_password(
    authmodels_roles: TestRoles, authmodels_app_engine: Engine, authmodels_database_url: URL
) -> None:
    # The embedded server trusts local connections: the password must be in the URL anyway,
    # or the fixtures would fail on a server that checks it.
    assert authmodels_roles.password
    assert authmodels_app_engine.url.username == authmodels_roles.login
    assert authmodels_app_engine.url.password == authmodels_roles.password
    assert authmodels_app_engine.url.database == authmodels_database_url.database
    assert authmodels_roles.password not in repr(authmodels_roles)


def test_app_session_connects_as_the_login_role_with_no_user_named(
    authmodels_app_session: Session, authmodels_roles: TestRoles
) -> None:
    who, uid = authmodels_app_session.execute(text("SELECT current_user, auth.uid()")).one()
    assert (who, uid) == (authmodels_roles.login, None)


def test_app_session_reads_nothing_without_a_user(
    authmodels_app_session: Session, authmodels_app_user_factory: ServicePathUserFactory
) -> None:
    authmodels_app_user_factory(email="ada@example.test")
    assert authmodels_app_session.scalar(select(func.count()).select_from(User)) == 0


def test_app_session_cannot_read_another_users_row(
    authmodels_app_session: Session, authmodels_app_user_factory: ServicePathUserFactory
) -> None:
    ada = authmodels_app_user_factory(email="ada@example.test")
    bob = authmodels_app_user_factory(email="bob@example.test")
    rls.set_current_user(authmodels_app_session, ada.id)
    assert authmodels_app_session.scalars(select(User.email)).all() == ["ada@example.test"]
    assert authmodels_app_session.get(User, bob.id, populate_existing=True) is None
    updated = authmodels_app_session.execute(
        text("UPDATE auth.users SET email = email WHERE id = :b"), {"b": bob.id}
    )
    assert updated.rowcount == 0  # type: ignore[attr-defined]


def test_app_session_reaches_every_row_on_the_service_path(
    authmodels_app_session: Session,
    authmodels_app_user_factory: ServicePathUserFactory,
    authmodels_roles: TestRoles,
) -> None:
    authmodels_app_user_factory.batch(3)
    with rls.service_role(authmodels_app_session, authmodels_roles.service):
        assert (
            authmodels_app_session.scalar(text("SELECT current_user")) == authmodels_roles.service
        )
        assert authmodels_app_session.scalar(select(func.count()).select_from(User)) == 3
    assert authmodels_app_session.scalar(text("SELECT current_user")) == authmodels_roles.login
    assert authmodels_app_session.scalar(select(func.count()).select_from(User)) == 0


def test_app_user_factory_returns_to_the_login_role_and_the_named_user(
    authmodels_app_session: Session,
    authmodels_app_user_factory: ServicePathUserFactory,
    authmodels_roles: TestRoles,
) -> None:
    ada = authmodels_app_user_factory(email="ada@example.test")
    rls.set_current_user(authmodels_app_session, ada.id)
    bob = authmodels_app_user_factory(email="bob@example.test", role="admin")
    who, uid = authmodels_app_session.execute(text("SELECT current_user, auth.uid()")).one()
    assert (who, uid) == (authmodels_roles.login, ada.id)
    # server-made columns were read on the service path: nothing left to load as Ada
    assert bob.created_at is not None and bob.role.value == "admin"
    assert TEST_PASSWORD_HASHER.verify(bob.password_hash, DEFAULT_PASSWORD)


APP_ISOLATION_EMAIL = "app-isolation-probe@example.test"


# File order: the first test commits through the app session, the second must not see it.
def test_app_isolation_first_test_commits_a_user(
    authmodels_app_session: Session,
    authmodels_app_user_factory: ServicePathUserFactory,
) -> None:
    user = authmodels_app_user_factory(email=APP_ISOLATION_EMAIL)
    authmodels_app_session.commit()  # releases a SAVEPOINT only
    rls.set_current_user(authmodels_app_session, user.id)
    assert authmodels_app_session.scalars(select(User.email)).all() == [APP_ISOLATION_EMAIL]


def test_app_isolation_second_test_does_not_see_it(authmodels_engine: Engine) -> None:
    with authmodels_engine.connect() as owner:  # the owner sees every row there is
        count = owner.scalar(
            text("SELECT count(*) FROM auth.users WHERE email = :e"), {"e": APP_ISOLATION_EMAIL}
        )
    assert count == 0


def test_app_fresh_engine_isolates_users_on_concurrent_connections(
    authmodels_app_fresh_engine: Engine,
    authmodels_fresh_engine: Engine,
    authmodels_roles: TestRoles,
) -> None:
    with authmodels_fresh_engine.begin() as owner:  # setup as the owner, committed
        ids = owner.scalars(
            text(
                "INSERT INTO auth.users (email, password_hash) VALUES "
                "('a@example.test', '!unusable'), ('b@example.test', '!unusable') RETURNING id"
            )
        ).all()
    barrier = threading.Barrier(len(ids))
    seen: dict[object, list[str]] = {}

    def read_as(user_id: object) -> None:
        with authmodels_app_fresh_engine.begin() as conn:
            rls.set_current_user(conn, str(user_id))
            barrier.wait(timeout=10)  # both transactions open at once, on their own connections
            seen[user_id] = list(conn.scalars(text("SELECT email FROM auth.users")))

    threads = [threading.Thread(target=read_as, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {ids[0]: ["a@example.test"], ids[1]: ["b@example.test"]}
    with authmodels_app_fresh_engine.begin() as conn:
        assert conn.scalar(text("SELECT count(*) FROM auth.users")) == 0
        with rls.service_role(conn, authmodels_roles.service):
            assert conn.scalar(text("SELECT count(*) FROM auth.users")) == 2


_PASSWORD_SERVER_TEST = """
from sqlalchemy import func, select, text

from authmodels import rls
from authmodels.models import User


def test_app_fixtures_work_where_passwords_are_checked(
    authmodels_app_session, authmodels_app_user_factory, authmodels_roles,
    authmodels_app_fresh_engine,
):
    ada = authmodels_app_user_factory(email="ada@example.test")
    authmodels_app_user_factory(email="bob@example.test")
    assert authmodels_app_session.scalar(text("SELECT current_user")) == authmodels_roles.login
    assert authmodels_app_session.scalar(select(func.count()).select_from(User)) == 0
    rls.set_current_user(authmodels_app_session, ada.id)
    assert authmodels_app_session.scalars(select(User.email)).all() == ["ada@example.test"]
    with authmodels_app_fresh_engine.connect() as conn:
        assert conn.scalar(text("SELECT current_user")) == authmodels_roles.login
"""


@pytest.mark.slow
def test_app_fixtures_work_on_a_server_given_by_url_that_checks_passwords(
    tmp_path: Path,
) -> None:
    """A server reached by URL (``--authmodels-db-url``) whose every local connection must
    present a password (scram-sha-256): the login role's URL must carry its password."""
    server = EmbeddedServer(tmp_path / "pg", delete_on_exit=True)
    server.start()
    try:
        admin_password = secrets.token_urlsafe(16)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(admin_password))
            )
            hba_file = str(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            Path(hba_file).write_text("local all all scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(server.url()).close()  # no password: refused from now on
        url = make_url(server.url()).set(password=admin_password)
        (tmp_path / "test_on_password_server.py").write_text(_PASSWORD_SERVER_TEST)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--authmodels-db-url={url.render_as_string(hide_password=False)}",
                str(tmp_path / "test_on_password_server.py"),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout
        with psycopg.connect(libpq_url(url)) as conn:  # the run dropped its roles and databases
            left = conn.execute(
                "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'authmodels\\_%'), "
                "(SELECT count(*) FROM pg_database WHERE datname LIKE 'authmodels\\_%')"
            ).fetchone()
        assert left == (0, 0)
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_engine_fixtures_connect_where_the_options_say(
    request: pytest.FixtureRequest,
    authmodels_engine: Engine,
    authmodels_app_engine: Engine,
    authmodels_async_engine: AsyncEngine,
    authmodels_app_async_engine: AsyncEngine,
) -> None:
    """Directly, or through PgBouncer in transaction mode with ``--authmodels-pgbouncer``
    (``tests/test_pooler.py`` runs this file so), sync and async alike."""
    expected = "transaction" if request.config.getoption("--authmodels-pgbouncer") else "direct"
    for engine in (authmodels_engine, authmodels_app_engine):
        with engine.connect() as conn:
            assert pooler_of(conn) == expected
    for async_engine in (authmodels_async_engine, authmodels_app_async_engine):
        async with async_engine.connect() as aconn:
            assert await aconn.run_sync(pooler_of) == expected
