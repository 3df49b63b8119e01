"""Revision 0002 (identity unification) on a database holding legacy rows keyed by e-mail.

Every row either ends up attached to the right account through ``user_id`` or sits in
``auth.quarantine`` with its full content and the reason; nothing is lost, and the downgrade puts
the e-mail keys (and the quarantined rows) back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from authmodels.testing.migrations import MigrationRunner

BEFORE = "0001_baseline"
REVISION = "0002_identity_unification"

TABLES = ("user_profiles", "biometric_credentials", "device_flows", "access_tokens")


def _insert(runner: MigrationRunner, table: str, **values: Any) -> str:
    columns = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    [(row_id,)] = runner.execute(
        f"INSERT INTO auth.{table} ({columns}) VALUES ({params}) RETURNING id::text", values
    )
    return str(row_id)


def _columns(runner: MigrationRunner) -> list[tuple[Any, ...]]:
    return runner.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'auth' AND table_name = ANY(:t) ORDER BY 1, 2",
        {"t": list(TABLES)},
    )


def _indexes(runner: MigrationRunner) -> list[tuple[Any, ...]]:
    return runner.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'auth' ORDER BY 1"
    )


@pytest.fixture
def legacy(authmodels_migration_runner: MigrationRunner) -> Iterator[dict[str, str]]:
    """A database at 0001 with accounts and e-mail-keyed rows covering every matching case."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    ids: dict[str, str] = {}
    for name, email, deleted in [
        ("alice", "alice@example.com", None),
        ("bob", "Bob@Example.com", None),
        ("carol", "carol@example.com", "2024-01-01T00:00:00Z"),
        ("dan_upper", "Dan@example.com", None),
        ("dan_lower", "dan@example.com", None),
        ("erin_old", "erin@example.com", "2024-01-01T00:00:00Z"),
        ("erin", "erin@example.com", None),
    ]:
        ids[name] = _insert(runner, "users", email=email, password_hash="x", deleted_at=deleted)
    profile = "user_profiles"
    ids["p_alice"] = _insert(
        runner,
        profile,
        email="ALICE@EXAMPLE.COM",
        display_name="Alice",
        updated_at="2025-06-01T00:00:00Z",
    )
    ids["p_alice_old"] = _insert(
        runner,
        profile,
        email="alice@example.com",
        display_name="Old Alice",
        updated_at="2020-06-01T00:00:00Z",
    )
    ids["p_bob"] = _insert(runner, profile, email="bob@example.com", display_name="Bob")
    ids["p_carol"] = _insert(runner, profile, email="carol@example.com", display_name="Carol")
    ids["p_dan"] = _insert(runner, profile, email="dan@example.com", display_name="Dan")
    ids["p_erin"] = _insert(runner, profile, email="Erin@example.com", display_name="Erin")
    ids["p_ghost"] = _insert(
        runner, profile, email="ghost@example.com", display_name="Ghost", bio="who am I"
    )
    ids["c_alice"] = _insert(
        runner,
        "biometric_credentials",
        user_email="alice@example.com",
        credential_id="a1b2",
        public_key="pk",
        device_name="Alice's key",
    )
    ids["c_ghost"] = _insert(
        runner,
        "biometric_credentials",
        user_email="ghost@example.com",
        credential_id="c3d4",
        public_key="pk",
        sign_count=7,
    )
    flow = {"client_id": "tv", "expires_at": "2999-01-01T00:00:00Z"}
    ids["f_pending"] = _insert(runner, "device_flows", device_code="d1", user_code="U1", **flow)
    ids["f_alice"] = _insert(
        runner,
        "device_flows",
        device_code="d2",
        user_code="U2",
        status="approved",
        user_email="Alice@Example.com",
        **flow,
    )
    ids["f_ghost"] = _insert(
        runner,
        "device_flows",
        device_code="d3",
        user_code="U3",
        status="approved",
        user_email="ghost@example.com",
        **flow,
    )
    token = {"expires_at": "2999-01-01T00:00:00Z", "scope": "read"}
    ids["t_bob"] = _insert(
        runner, "access_tokens", token="tok-bob", user_email="BOB@example.com", **token
    )
    ids["t_ghost"] = _insert(
        runner, "access_tokens", token="tok-ghost", user_email="ghost@example.com", **token
    )
    yield ids


def test_rows_are_attached_to_their_account_or_quarantined_with_reason(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    counts_before = {t: runner.execute(f"SELECT count(*) FROM auth.{t}")[0][0] for t in TABLES}

    runner.upgrade(REVISION)

    owners = dict(
        runner.execute(
            "SELECT id::text, user_id::text FROM auth.user_profiles UNION ALL "
            "SELECT id::text, user_id::text FROM auth.biometric_credentials UNION ALL "
            "SELECT id::text, user_id::text FROM auth.device_flows UNION ALL "
            "SELECT id::text, user_id::text FROM auth.access_tokens"
        )
    )
    assert owners == {
        ids["p_alice"]: ids["alice"],  # case-insensitive match
        ids["p_bob"]: ids["bob"],
        ids["p_carol"]: ids["carol"],  # the only (deleted) account keeps its rows
        ids["p_erin"]: ids["erin"],  # the live account wins over a deleted one
        ids["c_alice"]: ids["alice"],
        ids["f_pending"]: None,  # pending flows have no user yet
        ids["f_alice"]: ids["alice"],
        ids["t_bob"]: ids["bob"],
    }

    quarantined = {
        row[0]: row[1:]
        for row in runner.execute(
            "SELECT row_data->>'id', source_table, reason, revision, row_data FROM auth.quarantine"
        )
    }
    assert set(quarantined) == {
        ids["p_alice_old"],
        ids["p_dan"],
        ids["p_ghost"],
        ids["c_ghost"],
        ids["f_ghost"],
        ids["t_ghost"],
    }
    source, reason, revision, row = quarantined[ids["p_ghost"]]
    assert (source, revision) == ("user_profiles", REVISION)
    assert reason == "no account has this e-mail address"
    assert row["email"] == "ghost@example.com"
    assert row["display_name"] == "Ghost"
    assert row["bio"] == "who am I"
    assert "matches 2 accounts" in quarantined[ids["p_dan"]][1]
    assert "more recently updated profile" in quarantined[ids["p_alice_old"]][1]
    assert quarantined[ids["c_ghost"]][3]["sign_count"] == 7
    assert quarantined[ids["t_ghost"]][3]["token"] == "tok-ghost"

    # nothing lost: every row is in its table or in quarantine
    for table in TABLES:
        [(kept,)] = runner.execute(f"SELECT count(*) FROM auth.{table}")
        [(moved,)] = runner.execute(
            "SELECT count(*) FROM auth.quarantine WHERE source_table = :t", {"t": table}
        )
        assert kept + moved == counts_before[table], table


def test_user_id_is_a_validated_not_null_foreign_key_and_email_keys_are_gone(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(REVISION)

    columns = {(t, c): nullable for t, c, _, nullable in _columns(runner)}
    assert columns[("user_profiles", "user_id")] == "NO"
    assert columns[("biometric_credentials", "user_id")] == "NO"
    assert columns[("access_tokens", "user_id")] == "NO"
    assert columns[("device_flows", "user_id")] == "YES"
    assert not {("user_profiles", "email"), ("access_tokens", "user_email")} & set(columns)
    assert not [c for (_, c) in columns if c in ("email", "user_email")]

    foreign_keys = runner.execute(
        "SELECT conrelid::regclass::text, convalidated, confdeltype FROM pg_constraint "
        "WHERE contype = 'f' AND conname LIKE 'fk_%_user_id_users' "
        "AND conrelid = ANY(CAST(:t AS regclass[])) ORDER BY 1",
        {"t": [f"auth.{t}" for t in TABLES]},
    )
    assert foreign_keys == [(f"auth.{t}", True, "c") for t in sorted(TABLES)]
    leftovers = runner.execute(
        "SELECT conname FROM pg_constraint WHERE conname LIKE 'ck_%_not_null'"
    )
    assert leftovers == []
    with pytest.raises(Exception, match="unique"):
        runner.execute(
            "INSERT INTO auth.user_profiles (user_id) "
            "SELECT user_id FROM auth.user_profiles LIMIT 1"
        )


def test_downgrade_restores_email_keys_and_quarantined_rows(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    columns_before, indexes_before = _columns(runner), _indexes(runner)
    counts_before = {t: runner.execute(f"SELECT count(*) FROM auth.{t}")[0][0] for t in TABLES}
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert _columns(runner) == columns_before
    assert [
        i for i in _indexes(runner) if not i[0].startswith(("pk_quarantine", "ix_quarantine"))
    ] == indexes_before
    # Alice's older profile cannot come back: its address is the one her kept profile got back
    # from users.email, and 0001 allows one profile per address. It stays in quarantine.
    assert runner.execute("SELECT row_data->>'id' FROM auth.quarantine") == [(ids["p_alice_old"],)]
    for table in TABLES:
        [(kept,)] = runner.execute(f"SELECT count(*) FROM auth.{table}")
        [(moved,)] = runner.execute(
            "SELECT count(*) FROM auth.quarantine WHERE source_table = :t", {"t": table}
        )
        assert kept + moved == counts_before[table], table
    emails = dict(
        runner.execute(
            "SELECT id::text, email FROM auth.user_profiles UNION ALL "
            "SELECT id::text, user_email FROM auth.access_tokens UNION ALL "
            "SELECT id::text, user_email FROM auth.device_flows"
        )
    )
    assert emails[ids["p_alice"]] == "alice@example.com"  # from users.email
    assert emails[ids["t_bob"]] == "Bob@Example.com"
    assert emails[ids["p_ghost"]] == "ghost@example.com"  # restored from quarantine
    assert emails[ids["t_ghost"]] == "ghost@example.com"
    assert emails[ids["f_pending"]] is None


def test_downgrade_without_conflicts_leaves_the_baseline_schema(
    authmodels_migration_runner: MigrationRunner, legacy: dict[str, str]
) -> None:
    runner, ids = authmodels_migration_runner, legacy
    runner.execute("DELETE FROM auth.user_profiles WHERE id = :i", {"i": ids["p_alice_old"]})
    columns_before, indexes_before = _columns(runner), _indexes(runner)
    runner.upgrade(REVISION)

    runner.downgrade(BEFORE)

    assert _columns(runner) == columns_before
    assert _indexes(runner) == indexes_before
    assert runner.execute("SELECT to_regclass('auth.quarantine')") == [(None,)]
