"""Revision 0006 (row-level security), checked as the application would meet it: connected as a
role that is neither superuser nor the tables' owner, with real rows of two users."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from authmodels import rls
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import null_pool_engine
from tests.migrations.helpers import insert

REVISION = "0006_row_level_security"
FUTURE = "2999-01-01T00:00:00Z"

USER_TABLES = (
    "user_profiles",
    "sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "webauthn_credentials",
    "device_flows",
    "access_tokens",
    "audit_logs",
)


@dataclass
class World:
    runner: MigrationRunner
    app: Engine
    app_role: str
    a: str
    b: str
    rows: dict[str, dict[str, str]]
    conversation: str


def _seed_user(runner: MigrationRunner, email: str) -> tuple[str, dict[str, str]]:
    user = insert(runner, "users", email=email, password_hash="x")
    session = insert(
        runner, "sessions", user_id=user, token_hash=uuid.uuid4().bytes, expires_at=FUTURE
    )
    rows = {
        "user_profiles": insert(runner, "user_profiles", user_id=user, display_name=email),
        "sessions": session,
        "refresh_tokens": insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=session,
            token_hash=uuid.uuid4().bytes,
            expires_at=FUTURE,
        ),
        "password_reset_tokens": insert(
            runner,
            "password_reset_tokens",
            user_id=user,
            token_hash=uuid.uuid4().bytes,
            expires_at=FUTURE,
        ),
        "email_verification_tokens": insert(
            runner,
            "email_verification_tokens",
            user_id=user,
            email=email,
            token_hash=uuid.uuid4().bytes,
            expires_at=FUTURE,
        ),
        "webauthn_credentials": insert(
            runner,
            "webauthn_credentials",
            user_id=user,
            credential_id=uuid.uuid4().bytes,
            cose_public_key=b"k",
        ),
        "device_flows": insert(
            runner,
            "device_flows",
            user_id=user,
            device_code_hash=uuid.uuid4().bytes,
            user_code_hash=uuid.uuid4().bytes,
            client_id="tv",
            status="approved",
            expires_at=FUTURE,
        ),
        "access_tokens": insert(
            runner,
            "access_tokens",
            user_id=user,
            token_hash=uuid.uuid4().bytes,
            expires_at=FUTURE,
        ),
        "audit_logs": insert(runner, "audit_logs", user_id=user, event_type="login"),
    }
    return user, rows


def _create_role(runner: MigrationRunner, name: str, *, login: bool = True) -> None:
    runner.execute(f"CREATE ROLE {name} {'LOGIN' if login else 'NOLOGIN'}")


def _drop_role(runner: MigrationRunner, name: str) -> None:
    runner.execute(f"SELECT auth.revoke_service_role('{name}')")
    runner.execute(f"DROP OWNED BY {name}")
    runner.execute(f"DROP ROLE {name}")


@pytest.fixture
def world(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> Iterator[World]:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    a, a_rows = _seed_user(runner, "a@example.com")
    b, b_rows = _seed_user(runner, "b@example.com")
    insert(  # a pending device flow: nobody's yet
        runner,
        "device_flows",
        device_code_hash=b"pending-d",
        user_code_hash=b"pending-u",
        client_id="tv",
        expires_at=FUTURE,
    )
    conversation = insert(runner, "conversations", created_by=a, title="a's")
    runner.execute(
        "INSERT INTO auth.conversation_participants (conversation_id, user_id) VALUES (:c, :u)",
        {"c": conversation, "u": a},
    )
    insert(runner, "messages", conversation_id=conversation, sender_id=a, content="hello")

    role = f"rls_app_{uuid.uuid4().hex[:8]}"
    _create_role(runner, role)
    runner.execute("SELECT auth.grant_app_role(:r)", {"r": role})
    app = null_pool_engine(authmodels_empty_database.set(username=role))
    try:
        yield World(runner, app, role, a, b, {a: a_rows, b: b_rows}, conversation)
    finally:
        app.dispose()
        _drop_role(runner, role)


def _visible(conn: Connection, table: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(text(f"SELECT id FROM auth.{table}"))}


def test_the_application_role_is_not_exempt_from_the_policies(world: World) -> None:
    with world.app.connect() as conn:
        [(superuser, bypass, owner)] = conn.execute(
            text(
                "SELECT rolsuper, rolbypassrls, pg_has_role(current_user, "
                "(SELECT relowner FROM pg_class WHERE oid = 'auth.users'::regclass), 'USAGE') "
                "FROM pg_roles WHERE rolname = current_user"
            )
        ).all()
    assert (superuser, bypass, owner) == (False, False, False)


def test_a_user_reads_only_their_own_rows(world: World) -> None:
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.a)
        assert _visible(conn, "users") == {world.a}
        for table in USER_TABLES:
            assert _visible(conn, table) == {world.rows[world.a][table]}, table


def test_with_no_user_set_user_owned_tables_show_no_rows(world: World) -> None:
    with world.app.begin() as conn:
        assert rls.current_user_id(conn) is None
        for table in ("users", *USER_TABLES, "conversations", "messages"):
            assert _visible(conn, table) == set(), table


def test_a_user_cannot_update_or_delete_another_users_rows(world: World) -> None:
    other = world.rows[world.b]
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.a)
        for table in (
            "user_profiles",
            "sessions",
            "webauthn_credentials",
            "access_tokens",
            "refresh_tokens",
        ):
            deleted = conn.execute(
                text(f"DELETE FROM auth.{table} WHERE id = :i"), {"i": other[table]}
            )
            assert deleted.rowcount == 0, table
        updated = conn.execute(
            text("UPDATE auth.sessions SET is_active = false WHERE id = :i"),
            {"i": other["sessions"]},
        )
        assert updated.rowcount == 0
        assert (
            conn.execute(
                text("UPDATE auth.users SET role = 'admin' WHERE id = :i"), {"i": world.b}
            ).rowcount
            == 0
        )

    for table in ("user_profiles", "sessions", "webauthn_credentials", "access_tokens"):
        assert world.runner.execute(
            f"SELECT count(*) FROM auth.{table} WHERE id = :i", {"i": other[table]}
        ) == [(1,)]
    assert world.runner.execute(
        "SELECT is_active FROM auth.sessions WHERE id = :i", {"i": other["sessions"]}
    ) == [(True,)]


def test_a_user_cannot_write_a_row_for_another_user(world: World) -> None:
    with world.app.connect() as conn, conn.begin():
        rls.set_current_user(conn, world.a)
        with pytest.raises(DBAPIError, match="row-level security"):
            conn.execute(
                text(
                    "INSERT INTO auth.sessions (user_id, token_hash, expires_at) "
                    "VALUES (:u, '\\x01', now() + interval '1 hour')"
                ),
                {"u": world.b},
            )


def test_moving_a_row_to_another_user_is_refused(world: World) -> None:
    with world.app.connect() as conn, conn.begin():
        rls.set_current_user(conn, world.a)
        with pytest.raises(DBAPIError, match="row-level security"):
            conn.execute(
                text("UPDATE auth.webauthn_credentials SET user_id = :b WHERE id = :i"),
                {"b": world.b, "i": world.rows[world.a]["webauthn_credentials"]},
            )


def test_audit_logs_are_append_only_for_the_application(world: World) -> None:
    with world.app.connect() as conn, conn.begin():
        rls.set_current_user(conn, world.a)
        with pytest.raises(DBAPIError, match="permission denied"):
            conn.execute(text("DELETE FROM auth.audit_logs"))


def test_views_show_only_the_users_own_rows(world: World) -> None:
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.a)
        sessions = conn.execute(text("SELECT user_id::text FROM auth.active_sessions")).all()
        statuses = conn.execute(text("SELECT user_id::text FROM auth.user_security_status")).all()
    assert sessions == [(world.a,)]
    assert statuses == [(world.a,)]


def test_only_conversation_members_read_its_messages(world: World) -> None:
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.b)
        assert _visible(conn, "messages") == set()
        assert _visible(conn, "conversations") == set()
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.a)  # the creator adds b
        conn.execute(
            text(
                "INSERT INTO auth.conversation_participants (conversation_id, user_id) "
                "VALUES (:c, :u)"
            ),
            {"c": world.conversation, "u": world.b},
        )
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.b)
        messages = conn.execute(text("SELECT content FROM auth.messages")).all()
    assert messages == [("hello",)]


def test_as_user_restores_the_previous_user(world: World) -> None:
    with world.app.begin() as conn:
        rls.set_current_user(conn, world.a)
        with rls.as_user(conn, world.b):
            assert _visible(conn, "users") == {world.b}
        assert rls.current_user_id(conn) == uuid.UUID(world.a)
    with world.app.begin() as conn:  # transaction-local: gone with the transaction
        assert rls.current_user_id(conn) is None


def test_the_service_role_sees_every_row_for_one_transaction(world: World) -> None:
    service = f"rls_svc_{uuid.uuid4().hex[:8]}"
    _create_role(world.runner, service, login=False)
    try:
        world.runner.execute("SELECT auth.grant_service_role(:r)", {"r": service})
        world.runner.execute(f"GRANT {service} TO {world.app_role}")
        with world.app.begin() as conn:
            with rls.service_role(conn, service):
                assert len(_visible(conn, "sessions")) == 2
                assert len(_visible(conn, "device_flows")) == 3  # the pending one too
            assert _visible(conn, "sessions") == set()  # back to the application role
    finally:
        _drop_role(world.runner, service)


def test_grant_app_role_refuses_a_role_that_bypasses_the_policies(world: World) -> None:
    with pytest.raises(DBAPIError, match="bypasses row-level security"):
        world.runner.execute("SELECT auth.grant_app_role('postgres')")


def test_every_user_owned_table_has_rls_and_policies(world: World) -> None:
    tables = world.runner.execute(
        "SELECT c.relname, c.relrowsecurity, count(p.policyname) FROM pg_class c "
        "LEFT JOIN pg_policies p ON p.schemaname = 'auth' AND p.tablename = c.relname "
        "WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind = 'r' "
        "GROUP BY 1, 2 ORDER BY 1"
    )
    protected = {name for name, enabled, policies in tables if enabled and policies}
    assert protected == {
        "users",
        *USER_TABLES,
        "conversations",
        "conversation_participants",
        "messages",
    }
    assert {name for name, enabled, _ in tables if not enabled} == {
        "alembic_version",
        "app_logs",
        "quarantine",
    }


def test_downgrade_removes_policies_including_service_ones(world: World) -> None:
    service = f"rls_svc_{uuid.uuid4().hex[:8]}"
    _create_role(world.runner, service, login=False)
    try:
        world.runner.execute("SELECT auth.grant_service_role(:r)", {"r": service})
        world.runner.downgrade("0005_token_session_safety")
        assert world.runner.execute(
            "SELECT count(*) FROM pg_policies WHERE schemaname = 'auth'"
        ) == [(0,)]
        assert world.runner.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'auth'::regnamespace "
            "AND relrowsecurity"
        ) == [(0,)]
        world.runner.upgrade(REVISION)
    finally:
        _drop_role(world.runner, service)
