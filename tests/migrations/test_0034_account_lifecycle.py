"""0034: the lifecycle's tables, events, session audit actions and policies; the downgrade keeps
what the previous schema cannot hold in quarantine (or refuses to drop rows), and a new upgrade
puts it back."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from authmodels.errors import MigrationError
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role, count, insert
from tests.migrations.migration_helpers import previous, user

REVISION = "0034_account_lifecycle"
BEFORE = previous(REVISION)
DIGEST = b"\x01\x01k" + bytes(32)


def test_lifecycle_events_and_refusal_audits_survive_a_round_trip(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    ada = user(runner, "ada@example.com")
    with pytest.raises(DBAPIError, match="ck_audit_logs_event_type_known"):
        insert(runner, "audit_logs", user_id=ada, event_type="signup")

    runner.upgrade(REVISION)

    insert(runner, "audit_logs", user_id=ada, event_type="signup")
    insert(runner, "session_audits", user_id=ada, action="reuse_detected")
    insert(runner, "session_audits", user_id=ada, action="created")
    assert runner.execute(
        "SELECT name, keep_for::text FROM auth.retention_policies "
        "WHERE name IN ('flow_requests', 'magic_link_tokens') ORDER BY 1"
    ) == [("flow_requests", "7 days"), ("magic_link_tokens", "7 days")]
    with pytest.raises(DBAPIError, match="ck_magic_link_tokens_lifetime"):
        insert(
            runner, "magic_link_tokens", user_id=ada, token_hash=DIGEST,
            expires_at="2999-01-01T00:00:00Z",
        )  # fmt: skip

    runner.downgrade(BEFORE)
    assert (
        runner.execute("SELECT event_type FROM auth.audit_logs WHERE user_id = :u", {"u": ada})
        == []
    )
    assert runner.execute("SELECT action::text FROM auth.session_audits") == [("created",)]
    assert count(runner, "quarantine") == 2
    assert runner.execute("SELECT to_regclass('auth.magic_link_tokens')") == [(None,)]

    runner.upgrade(REVISION)
    assert runner.execute(
        "SELECT event_type FROM auth.audit_logs WHERE user_id = CAST(:u AS uuid)", {"u": ada}
    ) == [("signup",)]
    assert sorted(runner.execute("SELECT action::text FROM auth.session_audits")) == [
        ("created",),
        ("reuse_detected",),
    ]
    assert count(runner, "quarantine") == 0


def test_the_downgrade_refuses_to_drop_magic_links_and_requests(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    insert(runner, "flow_requests", flow="password_reset", identifier_hash=DIGEST)
    with pytest.raises(MigrationError, match=r"auth\.flow_requests"):
        runner.downgrade(BEFORE)
    assert runner.current() == REVISION


def test_a_user_cancels_their_own_pending_recovery_and_nothing_else(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)
    ada, bob = user(runner, "ada@example.com"), user(runner, "bob@example.com")
    pending = insert(
        runner, "account_recovery", user_id=ada, method="email", token_hash=DIGEST,
        expires_at="2999-01-01T00:00:00Z",
    )  # fmt: skip
    second = insert(
        runner, "account_recovery", user_id=ada, method="backup_code",
        expires_at="2999-01-01T00:00:00Z",
    )  # fmt: skip
    bobs = insert(
        runner, "account_recovery", user_id=bob, method="backup_code",
        expires_at="2999-01-01T00:00:00Z",
    )  # fmt: skip
    with application_role(runner, authmodels_empty_database) as (_, engine), engine.begin() as conn:
        conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": ada})
        cancelled = conn.execute(
            text(
                "UPDATE auth.account_recovery SET status = 'cancelled' "
                "WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING id::text"
            ),
            {"ids": [pending, bobs]},
        ).all()
        assert cancelled == [(pending,)]  # Bob's request is not Ada's to touch
        with pytest.raises(DBAPIError, match="row-level security"), conn.begin_nested():
            conn.execute(  # a user cannot complete a recovery by themself
                text(
                    "UPDATE auth.account_recovery SET status = 'completed', "
                    "completed_at = now() WHERE id = CAST(:id AS uuid)"
                ),
                {"id": second},
            )
