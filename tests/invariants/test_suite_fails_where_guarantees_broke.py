"""The invariant suite can fail: run on revision 0015, it reports the view that 0015 re-created
without ``security_invoker``; on a database at head where a table, view, column, function or
grant breaking a guarantee is added, each check names the new object."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, pool, text

from authmodels.db import create_db_engine
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.roles import TestRoles, grant_test_roles
from tests.invariants.catalog import relations
from tests.invariants.checks import (
    application_role_privileges_beyond_the_documented,
    definer_functions_the_application_may_run,
    definer_functions_without_pinned_search_path,
    raw_ip_or_user_agent_columns,
    raw_recipient_columns,
    report_aggregates_open_beyond_report_roles,
    secret_columns_without_shape_check,
    tables_without_row_level_security,
    views_without_invoker_rights,
)
from tests.invariants.isolation import (
    other_users_rows_reachable,
    probed_tables,
    rows_naming_another_user_writable,
    rows_visible_without_a_user,
    tables_without_rows_of,
    views_showing_other_users,
    world_rows,
)
from tests.invariants.seeds import create_world, seed_world


def test_the_suite_fails_at_revision_0015_on_user_security_status(
    authmodels_migration_runner: MigrationRunner, authmodels_roles: TestRoles
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0015_partitioned_logs")
    grant_test_roles(runner.engine.url, authmodels_roles)
    with runner.connect() as owner:
        assert any("auth.user_security_status " in v for v in views_without_invoker_rights(owner))
        a, b = create_world(owner, "A"), create_world(owner, "B")
    app = create_db_engine(authmodels_roles.url(runner.engine.url), poolclass=pool.NullPool)
    try:
        with app.connect() as conn, conn.begin():
            leaks = views_showing_other_users(conn, a, b)
            unnamed = rows_visible_without_a_user(conn)
    finally:
        app.dispose()
    # as user A, the view shows B's e-mail; with no user named, every user's row
    assert [v for v in leaks if v.startswith("auth.user_security_status shows user A")]
    assert [v for v in unnamed if v.startswith("auth.user_security_status shows 4 rows")]


# --- each check names an object added at head that breaks its guarantee ------------------------


@pytest.fixture
def scratch(authmodels_fresh_engine: Engine) -> Iterator[Connection]:
    """An owner's connection to a fresh database at head, in a transaction rolled back after."""
    with authmodels_fresh_engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


def test_view_check_names_a_new_view_without_invoker_rights(scratch: Connection) -> None:
    scratch.execute(text("CREATE VIEW auth.emails AS SELECT id, email FROM auth.users"))
    scratch.execute(
        text("CREATE MATERIALIZED VIEW auth.email_counts AS SELECT count(*) FROM auth.users")
    )
    named = " ".join(views_without_invoker_rights(scratch))
    assert "auth.emails runs with its owner's rights" in named
    assert "auth.email_counts is a materialized view" in named


def test_row_security_check_names_a_new_table_of_user_rows(scratch: Connection) -> None:
    scratch.execute(text("CREATE TABLE auth.notes (id uuid PRIMARY KEY, owner_user_id uuid)"))
    scratch.execute(
        text("CREATE TABLE auth.note_tags (note_id uuid REFERENCES auth.notes (id), tag text)")
    )
    scratch.execute(text("CREATE TABLE auth.closed (id int)"))
    scratch.execute(text("ALTER TABLE auth.closed ENABLE ROW LEVEL SECURITY"))
    named = " ".join(tables_without_row_level_security(scratch))
    assert "auth.notes holds per-user rows (column owner_user_id holds a user id)" in named
    assert "auth.note_tags holds per-user rows (foreign key" in named  # through auth.notes
    assert "auth.closed has row-level security but no policy for users" in named


def test_shape_check_names_a_new_unclassified_bytea_column(scratch: Connection) -> None:
    scratch.execute(text("ALTER TABLE auth.users ADD COLUMN recovery_digest bytea"))
    scratch.execute(text("ALTER TABLE auth.users ADD COLUMN opaque bytea"))
    scratch.execute(
        text(
            "ALTER TABLE auth.users ADD COLUMN checked_hash bytea, ADD CONSTRAINT "
            "ck_checked CHECK (auth.is_token_digest(checked_hash)) NOT VALID"
        )
    )
    named = " ".join(secret_columns_without_shape_check(scratch))
    assert "auth.users.recovery_digest (bytea): no CHECK verifies its shape" in named
    assert "auth.users.opaque (bytea): no CHECK" in named  # unclassified bytea
    assert "auth.users.checked_hash: CHECK ck_checked is NOT VALID" in named


def test_ip_check_names_raw_addresses_and_user_agents(scratch: Connection) -> None:
    scratch.execute(text("CREATE DOMAIN auth.addresses AS inet[]"))
    scratch.execute(text("ALTER TABLE auth.users ADD COLUMN seen_from auth.addresses"))
    scratch.execute(text("ALTER TABLE auth.users ADD COLUMN last_user_agent text"))
    scratch.execute(text("ALTER TABLE auth.users ADD COLUMN signup_ip_hash bytea"))
    named = " ".join(raw_ip_or_user_agent_columns(scratch))
    assert "auth.users.seen_from (table column of type auth.addresses) stores raw" in named
    assert "auth.users.last_user_agent (table column of type text) is named like" in named
    assert (
        "auth.users.signup_ip_hash is a keyed hash of an IP address or user agent without" in named
    )


def test_recipient_check_names_raw_addresses_and_unchecked_masks(scratch: Connection) -> None:
    scratch.execute(text("ALTER TABLE auth.sms_delivery_logs ADD COLUMN to_phone text"))
    scratch.execute(text("ALTER TABLE auth.email_delivery_logs ADD COLUMN recipient_cc text"))
    scratch.execute(text("ALTER TABLE auth.email_delivery_logs ADD COLUMN reply_to_masked text"))
    scratch.execute(text("ALTER TABLE auth.email_delivery_logs ADD COLUMN to_masked text"))
    named = " ".join(raw_recipient_columns(scratch))
    assert "auth.sms_delivery_logs.to_phone (text) is named like a message recipient" in named
    assert "auth.email_delivery_logs.recipient_cc (text) is named like" in named
    assert "auth.email_delivery_logs.to_masked (text) is named like" in named  # no CHECK
    assert "reply_to_masked" not in named  # not a recipient's name
    assert "recipient_masked" not in named and "recipient_hash" not in named  # head is clean


def test_definer_check_names_a_function_without_a_safe_search_path(scratch: Connection) -> None:
    for name, setting in (
        ("unpinned", ""),
        ("public_first", "SET search_path = public, pg_temp"),
        ("temp_unlisted", "SET search_path = pg_catalog"),
    ):
        scratch.execute(
            text(
                f"CREATE FUNCTION auth.{name}() RETURNS int LANGUAGE sql SECURITY DEFINER "
                f"{setting} AS 'SELECT 1'"
            )
        )
    named = " ".join(definer_functions_without_pinned_search_path(scratch))
    assert "auth.unpinned() is SECURITY DEFINER without a pinned search_path" in named
    assert "auth.public_first() is SECURITY DEFINER with search_path public, pg_temp" in named
    assert "auth.temp_unlisted() is SECURITY DEFINER with search_path pg_catalog: list" in named


def test_maintenance_check_names_a_writing_definer_function_open_to_the_application(
    scratch: Connection, authmodels_roles: TestRoles
) -> None:
    scratch.execute(
        text(
            "CREATE FUNCTION auth.wipe_audit() RETURNS void LANGUAGE sql SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp AS 'DELETE FROM auth.audit_logs'"
        )
    )
    scratch.execute(
        text(
            "CREATE FUNCTION auth.peek() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp AS 'SELECT count(*) FROM auth.users'"
        )
    )
    named = definer_functions_the_application_may_run(
        scratch, {"application": authmodels_roles.app}
    )
    assert named == [
        "the application role may execute auth.wipe_audit(), which runs as the owner and can "
        "write: revoke EXECUTE from PUBLIC (the owner's maintenance)"
    ]


def test_report_check_names_an_aggregate_open_to_the_application(
    scratch: Connection, authmodels_roles: TestRoles
) -> None:
    scratch.execute(
        text(
            "CREATE FUNCTION auth.report_emails() RETURNS bigint LANGUAGE sql STABLE "
            "SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
            "AS 'SELECT count(*) FROM auth.users'"
        )
    )
    scratch.execute(
        text(
            f"REVOKE EXECUTE ON FUNCTION auth.report_brute_force(interval, integer) "
            f"FROM PUBLIC; GRANT EXECUTE ON FUNCTION "
            f"auth.report_brute_force(interval, integer) TO {authmodels_roles.app}"
        )
    )
    named = report_aggregates_open_beyond_report_roles(
        scratch, {"application": authmodels_roles.app}
    )
    assert named == [
        "the application role may execute auth.report_brute_force(interval,integer), which "
        "reads every user's rows as the owner: revoke it (only report roles run the "
        "aggregates)",
        "PUBLIC may execute auth.report_emails(), which reads every user's rows as the owner: "
        "REVOKE EXECUTE ... FROM PUBLIC (auth.grant_report_role grants it)",
        "the application role may execute auth.report_emails(), which reads every user's rows "
        "as the owner: revoke it (only report roles run the aggregates)",
    ]


def test_privilege_check_names_grants_beyond_the_documented(
    scratch: Connection, authmodels_roles: TestRoles
) -> None:
    app = authmodels_roles.app
    for statement in (
        f"GRANT TRUNCATE ON auth.sessions TO {app}",
        f"GRANT SELECT ON auth.quarantine TO {app}",
        f"GRANT UPDATE ON auth.audit_logs TO {app}",
        f"GRANT DELETE ON auth.audit_logs_archive TO {app}",
        f"GRANT CREATE ON SCHEMA auth TO {app}",
        "CREATE TABLE auth.owned_by_app (id int)",
        f"ALTER TABLE auth.owned_by_app OWNER TO {app}",
    ):
        scratch.execute(text(statement))
    partition = scratch.scalar(
        text(
            "SELECT min(relname) FROM pg_class "
            "WHERE relispartition AND relnamespace = 'auth'::regnamespace"
        )
    )
    scratch.execute(text(f"GRANT SELECT ON auth.{partition} TO {app}"))
    named = " ".join(
        application_role_privileges_beyond_the_documented(scratch, {"application": app})
    )
    assert "holds TRUNCATE on auth.sessions" in named
    assert "holds SELECT on auth.quarantine" in named
    assert "holds UPDATE on auth.audit_logs (append-only" in named
    assert "holds DELETE on auth.audit_logs_archive (read-only" in named
    assert f"holds SELECT on auth.{partition} (a partition" in named
    assert "may CREATE objects in schema auth" in named
    assert "owns auth.owned_by_app" in named


def test_seed_check_names_a_new_per_user_table_without_a_seed(scratch: Connection) -> None:
    scratch.execute(
        text(
            "CREATE TABLE auth.notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
            "user_id uuid NOT NULL REFERENCES auth.users (id))"
        )
    )
    a, b = create_world(scratch, "A"), create_world(scratch, "B")
    rows = world_rows(scratch, probed_tables(scratch), b, a)
    assert "auth.notes holds per-user rows but has no seeded row of user B" in " ".join(
        tables_without_rows_of(rows, b)
    )


def test_isolation_checks_name_a_table_whose_policy_lets_every_user_in(
    authmodels_fresh_engine: Engine, authmodels_app_fresh_engine: Engine
) -> None:
    with authmodels_fresh_engine.begin() as owner:  # committed: the login role must see it
        owner.execute(
            text("CREATE POLICY everyone ON auth.password_history USING (true) WITH CHECK (true)")
        )
        tables = set(relations(owner))
        a, b = create_world(owner, "A"), create_world(owner, "B")
        assert not seed_world(owner, a, tables) + seed_world(owner, b, tables)
    with authmodels_fresh_engine.connect() as owner, authmodels_app_fresh_engine.connect() as app:
        probed = probed_tables(owner)
        a_rows, b_rows = world_rows(owner, probed, a, b), world_rows(owner, probed, b, a)
        with app.begin():
            reached = other_users_rows_reachable(app, owner, a, b_rows)
            forged = rows_naming_another_user_writable(app, owner, a, b, a_rows)
    assert reached == [
        "A reads 1 of B's 1 rows of auth.password_history",
        "A updates 1 of B's rows of auth.password_history",
        "A deletes 1 of B's rows of auth.password_history",
        "A inserts into auth.password_history a copy of B's row (user B's id kept): no policy or "
        "privilege refuses it",
    ]
    assert [
        v for v in forged if v.startswith("A writes a row of auth.password_history naming user B")
    ]
