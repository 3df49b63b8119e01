"""Revision 0009 (seed 001): master admin designation on live data, audit columns, downgrade.

Seed rows at the revision before, upgrade, check where every row is; downgrade and check the
schema is back and nothing recorded was lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import columns, insert
from tests.migrations.migration_helpers import previous, schema_objects, user

REVISION = "0009_step_up_admin_safety"
BEFORE = previous(REVISION)


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(BEFORE)
    yield authmodels_migration_runner


def _masters(runner: MigrationRunner) -> list[str]:
    return [r[0] for r in runner.execute("SELECT id::text FROM auth.users WHERE is_master_admin")]


def test_earliest_active_admin_becomes_master_admin(runner: MigrationRunner) -> None:
    ids = {
        "deleted_first": user(
            runner,
            "gone@example.com",
            role="admin",
            created_at="2019-01-01T00:00:00Z",
            deleted_at="2020-01-01T00:00:00Z",
        ),
        "second": user(runner, "b@example.com", role="admin", created_at="2021-01-01T00:00:00Z"),
        "first": user(runner, "a@example.com", role="admin", created_at="2020-06-01T00:00:00Z"),
        "older_user": user(runner, "u@example.com", created_at="2018-01-01T00:00:00Z"),
    }

    runner.upgrade(REVISION)

    assert _masters(runner) == [ids["first"]]
    audit = runner.execute(
        "SELECT user_id::text, target_user_id::text, actor_user_id, event_type, action, "
        "correlation_id FROM auth.audit_logs"
    )
    assert audit == [
        (
            ids["first"],
            ids["first"],
            None,
            "master_admin_designated",
            "master_admin.designate",
            REVISION,
        )
    ]
    versions = dict(runner.execute("SELECT id::text, version FROM auth.users"))
    assert versions == {
        ids["deleted_first"]: 1,
        ids["second"]: 1,
        ids["first"]: 2,  # the designation was an update
        ids["older_user"]: 1,
    }


def test_without_an_admin_nothing_is_designated_until_one_exists(runner: MigrationRunner) -> None:
    plain = user(runner, "u@example.com")
    user(runner, "old-admin@example.com", role="admin", deleted_at="2020-01-01T00:00:00Z")

    runner.upgrade(REVISION)

    assert _masters(runner) == []
    assert runner.execute("SELECT count(*) FROM auth.audit_logs") == [(0,)]
    # the seed's "run the set-master-admin script" once an admin exists
    admin = user(runner, "admin@example.com", role="admin")
    assert runner.execute("SELECT auth.designate_master_admin()::text") == [(admin,)]
    assert runner.execute("SELECT auth.designate_master_admin()::text") == [(admin,)]  # idempotent
    assert _masters(runner) == [admin]
    assert plain not in _masters(runner)


def test_existing_json_keys_fill_the_new_audit_and_log_columns(runner: MigrationRunner) -> None:
    actor = user(runner, "actor@example.com")
    missing = "8b1d4c4e-0a52-4f38-9f0e-2f54b3c1d001"
    with_keys = insert(
        runner,
        "audit_logs",
        event_type="login",
        details=(
            f'{{"actor_user_id": "{actor}", "target_user_id": "{missing}", '
            '"action": "LENDING_UPDATE", "correlation_id": "req-1", "other": 1}'
        ),
    )
    plain = insert(runner, "audit_logs", event_type="logout")
    too_long = insert(
        runner, "audit_logs", event_type="login", details=f'{{"correlation_id": "{"x" * 300}"}}'
    )
    [(log_with,)] = runner.execute(
        "INSERT INTO auth.app_logs (message, context) "
        """VALUES ('m', '{"correlation_id": "req-1"}') RETURNING id"""
    )
    [(log_number,)] = runner.execute(
        "INSERT INTO auth.app_logs (message, context) "
        """VALUES ('m', '{"correlation_id": 42}') RETURNING id"""
    )

    runner.upgrade(REVISION)

    rows = {
        r[0]: r[1:]
        for r in runner.execute(
            "SELECT id::text, actor_user_id::text, target_user_id::text, action, correlation_id "
            "FROM auth.audit_logs"
        )
    }
    assert rows[with_keys] == (actor, None, "LENDING_UPDATE", "req-1")  # unknown account: NULL
    assert rows[plain] == (None, None, None, None)
    assert rows[too_long] == (None, None, None, None)  # would break the length CHECK: left out
    logs = dict(runner.execute("SELECT id, correlation_id FROM auth.app_logs"))
    assert logs == {log_with: "req-1", log_number: None}


def _round_trip_rows(runner: MigrationRunner) -> dict[str, Any]:
    return {
        "audit": runner.execute(
            "SELECT id::text, user_id::text, event_type, details FROM auth.audit_logs ORDER BY 1"
        ),
        "app": runner.execute("SELECT id, message, context FROM auth.app_logs ORDER BY 1"),
        "users": runner.execute("SELECT id::text, email, role FROM auth.users ORDER BY 1"),
    }


def test_downgrade_restores_the_schema_and_keeps_what_was_recorded(
    runner: MigrationRunner,
) -> None:
    admin = user(runner, "admin@example.com", role="admin")
    other = user(runner, "other@example.com", role="admin")
    insert(runner, "audit_logs", event_type="login", user_id=admin)
    columns_before = columns(runner, "users", "audit_logs", "app_logs")
    objects_before = schema_objects(runner)

    runner.upgrade(REVISION)
    # what the application writes at 0009
    role_change = insert(
        runner,
        "audit_logs",
        event_type="role_changed",
        user_id=other,
        actor_user_id=admin,
        target_user_id=other,
        action="admin.role_change",
        correlation_id="req-9",
    )
    step_up = insert(
        runner,
        "audit_logs",
        event_type="login",
        user_id=admin,
        actor_user_id=admin,
        correlation_id="req-8",
        created_at="2001-01-01T00:00:00Z",
    )
    runner.execute("INSERT INTO auth.app_logs (message, correlation_id) VALUES ('traced', 'req-7')")
    assert runner.execute("SELECT auth.archive_audit_logs(interval '1 year')") == [(1,)]
    runner.execute("DELETE FROM auth.users WHERE id = :o", {"o": other})  # a non-master admin
    snapshot = _round_trip_rows(runner)

    runner.downgrade(BEFORE)

    assert columns(runner, "users", "audit_logs", "app_logs") == columns_before
    assert [o for o in schema_objects(runner) if "quarantine" not in str(o[1])] == [
        o for o in objects_before if "quarantine" not in str(o[1])
    ]
    audit = {r[0]: r[1:] for r in runner.execute(
        "SELECT id::text, event_type, details FROM auth.audit_logs"
    )}  # fmt: skip
    # the designation row is gone with the designation; the archived row is back, folded
    assert [r[0] for r in audit.values()].count("master_admin_designated") == 0
    assert audit[step_up][1] == {"actor_user_id": admin, "correlation_id": "req-8"}
    assert role_change not in audit
    [(reason, data)] = runner.execute(
        "SELECT reason, row_data FROM auth.quarantine WHERE row_data->>'id' = :i",
        {"i": role_change},
    )
    assert "role_changed" in reason
    assert data["target_user_id"] is None  # the account was deleted (ON DELETE SET NULL)
    assert data["correlation_id"] == "req-9"
    assert runner.execute("SELECT context FROM auth.app_logs WHERE message = 'traced'") == [
        ({"correlation_id": "req-7"},)
    ]

    runner.upgrade(REVISION)

    # a second upgrade reads everything back: same rows, same values
    again = _round_trip_rows(runner)
    assert again["users"] == snapshot["users"]
    assert again["app"] == [
        (i, m, c | ({"correlation_id": "req-7"} if m == "traced" else {}))
        for i, m, c in snapshot["app"]
    ]
    designations = (
        "SELECT id::text FROM auth.audit_logs WHERE event_type = 'master_admin_designated'"
    )
    old_designation = {r[0] for r in snapshot["audit"] if r[2] == "master_admin_designated"}
    new_designation = {r[0] for r in runner.execute(designations)}
    # every row is back (the archived one in audit_logs); only the designation row was redone
    assert {r[0] for r in again["audit"]} == (
        {r[0] for r in snapshot["audit"]} - old_designation | new_designation | {step_up}
    )
    assert runner.execute(
        "SELECT action, correlation_id, target_user_id FROM auth.audit_logs WHERE id = :i",
        {"i": role_change},
    ) == [("admin.role_change", "req-9", None)]
    assert runner.execute(
        "SELECT actor_user_id::text, correlation_id FROM auth.audit_logs WHERE id = :i",
        {"i": step_up},
    ) == [(admin, "req-8")]
    assert runner.execute("SELECT count(*) FROM auth.quarantine") == [(0,)]
    assert _masters(runner) == [admin]


def test_downgrade_on_an_empty_database_leaves_the_previous_schema(
    runner: MigrationRunner,
) -> None:
    before = schema_objects(runner), columns(runner, "users", "audit_logs", "app_logs")
    runner.upgrade(REVISION)
    runner.downgrade(BEFORE)
    assert (schema_objects(runner), columns(runner, "users", "audit_logs", "app_logs")) == before
