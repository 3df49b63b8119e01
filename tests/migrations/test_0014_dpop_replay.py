"""Revision 0014 (DPoP replay store): ``auth.dpop_jtis`` closed to the application role,
``access_tokens.session_id``, full token-hash indexes, and the flows' audit event types."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role, constraints, indexes, insert, quarantined

BEFORE = "0013_device_keys"
REVISION = "0014_dpop_replay"
FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> MigrationRunner:
    authmodels_migration_runner.upgrade(BEFORE)
    return authmodels_migration_runner


def test_upgrade_adds_the_store_the_session_link_and_full_indexes(runner: MigrationRunner) -> None:
    user = insert(runner, "users", email="a@example.com", password_hash="x")
    token = insert(runner, "access_tokens", token_hash=b"t", user_id=user, expires_at=FUTURE)

    runner.upgrade(REVISION)

    assert runner.execute(
        "SELECT session_id FROM auth.access_tokens WHERE id = :i", {"i": token}
    ) == [(None,)]
    found = dict(indexes(runner))
    assert found["ix_sessions_token_hash"].endswith("USING btree (token_hash)")  # not partial
    assert found["ix_refresh_tokens_token_hash"].endswith("USING btree (token_hash)")
    assert "(session_id, created_at)" in found["ix_access_tokens_session_id_created_at"]
    assert "(expires_at)" in found["ix_dpop_jtis_expires_at"]
    names = {c[1] for c in constraints(runner, "dpop_jtis", "access_tokens")}
    assert {"pk_dpop_jtis", "fk_access_tokens_session_id_sessions"} <= names
    [(rls, policies)] = runner.execute(
        "SELECT relrowsecurity, (SELECT count(*) FROM pg_policies WHERE schemaname = 'auth' "
        "AND tablename = 'dpop_jtis') FROM pg_class WHERE oid = 'auth.dpop_jtis'::regclass"
    )
    assert rls and policies == 0


def test_audit_log_accepts_the_flows_events_and_a_downgrade_sets_them_aside(
    runner: MigrationRunner,
) -> None:
    runner.upgrade(REVISION)
    user = insert(runner, "users", email="a@example.com", password_hash="x")
    kept = insert(runner, "audit_logs", user_id=user, event_type="login")
    flow = insert(runner, "audit_logs", user_id=user, event_type="refresh_token_reused")
    with pytest.raises(Exception, match="ck_audit_logs_event_type_known"):
        insert(runner, "audit_logs", user_id=user, event_type="made_up")

    runner.downgrade(BEFORE)
    assert runner.execute("SELECT id::text FROM auth.audit_logs") == [(kept,)]
    assert set(quarantined(runner, "audit_logs")) == {flow}

    runner.upgrade(REVISION)
    assert {r[0] for r in runner.execute("SELECT id::text FROM auth.audit_logs")} == {kept, flow}
    assert quarantined(runner, "audit_logs") == {}


def test_replay_store_is_closed_to_the_application_role(
    runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner.upgrade(REVISION)
    runner.execute(
        "INSERT INTO auth.dpop_jtis (jkt, jti, expires_at) VALUES ('k', 'j', now() + '1 min')"
    )
    with application_role(runner, authmodels_empty_database) as (_, engine), engine.begin() as c:
        assert c.execute(text("SELECT count(*) FROM auth.dpop_jtis")).scalar_one() == 0
        with pytest.raises(ProgrammingError, match="row-level security"):
            c.execute(
                text(
                    "INSERT INTO auth.dpop_jtis (jkt, jti, expires_at) "
                    "VALUES ('k', 'j2', now() + '1 min')"
                )
            )


def test_purge_function_removes_expired_proofs_in_batches(runner: MigrationRunner) -> None:
    runner.upgrade(REVISION)
    runner.execute(
        "INSERT INTO auth.dpop_jtis (jkt, jti, expires_at) SELECT 'k', 'old-' || i, "
        "now() - interval '1 s' FROM generate_series(1, 5) AS i"
    )
    insert_live = "INSERT INTO auth.dpop_jtis (jkt, jti, expires_at) VALUES ('k', 'live', :e)"
    runner.execute(insert_live, {"e": FUTURE})
    assert runner.execute("SELECT auth.purge_expired_dpop_jtis(3)") == [(3,)]
    assert runner.execute("SELECT auth.purge_expired_dpop_jtis()") == [(2,)]
    assert runner.execute("SELECT jti FROM auth.dpop_jtis") == [("live",)]
