"""Revision 0008 (type hygiene) on a database holding rows of every converted column, and rows
that break the new checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authmodels.errors import MigrationError
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import columns, constraints, count, indexes, insert, quarantined

BEFORE = "0007_privacy_retention"
REVISION = "0008_type_hygiene"
FUTURE = "2999-01-01T00:00:00Z"
OLD = "2020-01-01T00:00:00Z"
TABLES = (
    "users",
    "user_profiles",
    "sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
    "access_tokens",
    "device_flows",
    "audit_logs",
    "app_logs",
    "conversations",
)
ENUMS = {
    "user_role": ["user", "admin"],
    "device_flow_status": ["pending", "approved", "denied", "expired", "consumed"],
    "audit_event_status": ["success", "failure", "blocked", "pending"],
    "log_level": ["debug", "info", "warning", "error", "critical"],
}


def _triggers(runner: MigrationRunner) -> list[tuple[object, ...]]:
    return runner.execute(
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'auth'::regnamespace) "
        "ORDER BY 1, 2"
    )


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    admin = insert(
        runner,
        "users",
        email="admin@example.com",
        password_hash="x",
        role="admin",
        updated_at="2021-02-03T04:05:06Z",
    )
    user = insert(runner, "users", email="u@example.com", password_hash="x")

    def flow(status: str, user_id: str | None, tag: str) -> str:
        return insert(
            runner,
            "device_flows",
            device_code_hash=tag.encode(),
            user_code_hash=tag.encode(),
            client_id="tv",
            status=status,
            user_id=user_id,
            expires_at=FUTURE,
        )

    good_session = insert(runner, "sessions", user_id=user, token_hash=b"s1", expires_at=FUTURE)
    bad_session = insert(  # expired before it was created
        runner,
        "sessions",
        user_id=user,
        token_hash=b"s2",
        expires_at=OLD,
        created_at="2021-01-01T00:00:00Z",
    )
    ids = {
        "admin": admin,
        "user": user,
        "pending": flow("pending", None, "p"),
        "approved": flow("approved", user, "a"),
        "orphan_approved": flow("approved", None, "o"),  # approved, yet nobody approved it
        "good_session": good_session,
        "bad_session": bad_session,
        "bad_refresh": insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=bad_session,
            token_hash=b"r",
            expires_at=FUTURE,
        ),
        "profile": insert(
            runner,
            "user_profiles",
            user_id=user,
            display_name="U",
            updated_at="2021-02-03T04:05:06Z",
        ),
        "audit": insert(
            runner, "audit_logs", user_id=user, event_type="login", event_status="blocked"
        ),
    }
    runner.execute(
        "INSERT INTO auth.app_logs (level, message) VALUES ('warning', 'w'), ('error', 'e')"
    )
    yield ids


def test_values_move_to_enum_types_without_touching_updated_at(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy

    runner.upgrade(REVISION)

    types = {
        name: labels
        for name, labels in runner.execute(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
            "JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'auth'::regnamespace "
            "GROUP BY 1"
        )
    }
    assert types == ENUMS
    udt = {
        (t, c): u
        for t, c, u in runner.execute(
            "SELECT table_name, column_name, udt_name FROM information_schema.columns "
            "WHERE table_schema = 'auth'"
        )
    }
    assert udt[("users", "role")] == "user_role"
    assert udt[("device_flows", "status")] == "device_flow_status"
    assert udt[("audit_logs", "event_status")] == "audit_event_status"
    assert udt[("app_logs", "level")] == "log_level"
    assert runner.execute(
        "SELECT role::text, updated_at::text FROM auth.users WHERE id = :i", {"i": ids["admin"]}
    ) == [("admin", "2021-02-03 04:05:06+00")]
    assert dict(runner.execute("SELECT id::text, status::text FROM auth.device_flows")) == {
        ids["pending"]: "pending",
        ids["approved"]: "approved",
    }
    assert runner.execute("SELECT event_status::text FROM auth.audit_logs") == [("blocked",)]
    assert sorted(runner.execute("SELECT level::text FROM auth.app_logs")) == [
        ("error",),
        ("warning",),
    ]
    assert not [c for _, c, *_ in columns(runner, *TABLES) if c.endswith("__new")]
    defs = dict(indexes(runner))
    assert (
        "WHERE (status = 'pending'::auth.device_flow_status)"
        in (defs["uq_device_flows_user_code_hash_pending"])
    )
    assert "(event_status, event_type)" in defs["ix_audit_logs_event_status_event_type"]


def test_unknown_role_values_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner = authmodels_migration_runner
    insert(runner, "users", email="m@example.com", password_hash="x", role="moderator")
    shape = columns(runner, *TABLES)

    with pytest.raises(MigrationError, match=r"'moderator' \(1 rows\)"):
        runner.upgrade(REVISION)

    assert runner.current() == BEFORE
    assert columns(runner, *TABLES) == shape
    assert runner.execute("SELECT count(*) FROM pg_type WHERE typname = 'user_role'") == [(0,)]


def test_every_table_with_updated_at_has_a_trigger_that_bumps_it(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    runner.upgrade(REVISION)

    assert [t for t in _triggers(runner) if t[1].startswith("trg_") and "updated_at" in t[1]] == [
        ("auth.conversations", "trg_conversations_updated_at"),
        ("auth.device_flows", "trg_device_flows_updated_at"),
        ("auth.user_profiles", "trg_user_profiles_updated_at"),
        ("auth.users", "trg_users_updated_at"),
    ]
    runner.execute("UPDATE auth.user_profiles SET bio = 'new' WHERE id = :i", {"i": ids["profile"]})
    [(recent,)] = runner.execute(
        "SELECT updated_at > now() - interval '1 minute' FROM auth.user_profiles WHERE id = :i",
        {"i": ids["profile"]},
    )
    assert recent


def test_rows_breaking_the_new_checks_are_quarantined_with_their_dependents(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    before = {t: count(runner, t) for t in ("sessions", "refresh_tokens", "device_flows")}

    runner.upgrade(REVISION)

    sessions = quarantined(runner, "sessions")
    refresh = quarantined(runner, "refresh_tokens")
    flows = quarantined(runner, "device_flows")
    assert set(sessions) == {ids["bad_session"]}
    assert sessions[ids["bad_session"]][0] == "expires_at is not after created_at"
    assert set(refresh) == {ids["bad_refresh"]}
    assert refresh[ids["bad_refresh"]][0].startswith("its parent row in sessions was quarantined")
    assert set(flows) == {ids["orphan_approved"]}
    assert flows[ids["orphan_approved"]][0] == "an approved or consumed flow without a user"
    for table, n in before.items():
        assert count(runner, table) + len(quarantined(runner, table)) == n

    checks = {
        name: valid for _, name, _, valid in constraints(runner, *TABLES) if name.startswith("ck_")
    }
    for name in (
        "ck_sessions_expires_after_created",
        "ck_refresh_tokens_expires_after_created",
        "ck_access_tokens_expires_after_created",
        "ck_device_flows_expires_after_created",
        "ck_device_flows_interval_seconds_range",
        "ck_device_flows_poll_count_nonnegative",
        "ck_device_flows_retention_after_expiry",
        "ck_device_flows_approved_has_user",
    ):
        assert checks[name] is True, name
    assert not {"ck_device_flows_status_known", "ck_app_logs_level_known"} & set(checks)
    with pytest.raises(Exception, match="approved_has_user"):
        runner.execute(
            "UPDATE auth.device_flows SET status = 'approved' WHERE id = :i", {"i": ids["pending"]}
        )
    with pytest.raises(Exception, match="expires_after_created"):
        insert(runner, "sessions", user_id=ids["user"], token_hash=b"x", expires_at=OLD)


def test_downgrade_restores_text_columns_checks_triggers_and_rows(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    shape = (
        columns(runner, *TABLES),
        indexes(runner),
        constraints(runner, *TABLES),
        _triggers(runner),
    )
    before = {t: count(runner, t) for t in TABLES}
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert (
        columns(runner, *TABLES),
        indexes(runner),
        constraints(runner, *TABLES),
        _triggers(runner),
    ) == shape
    assert {t: count(runner, t) for t in TABLES} == before
    assert runner.execute("SELECT count(*) FROM auth.quarantine") == [(0,)]
    assert runner.execute(
        "SELECT count(*) FROM pg_type WHERE typnamespace = 'auth'::regnamespace AND typtype = 'e'"
    ) == [(0,)]
    assert runner.execute("SELECT role FROM auth.users WHERE id = :i", {"i": ids["admin"]}) == [
        ("admin",)
    ]
