"""Catalog tests of what revisions 0009-0013 add and the DDL comparison cannot see.

pytest-alembic's model comparison covers tables, columns, indexes, unique constraints and
foreign keys. It is blind to CHECK constraints, functions, triggers, ENUM labels and policies, so
they are checked here against the catalog of the database at head.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import CheckConstraint, Connection, Engine, text

from authmodels.models import metadata

#: Tables created by 0009-0013, and existing tables they changed.
CREATED = {
    "step_up_tokens", "audit_logs_archive", "login_attempts", "security_events",
    "password_history", "email_delivery_logs", "sms_delivery_logs", "user_devices",
    "two_factor_auth", "two_factor_backup_codes", "oauth_connections", "api_keys",
    "account_recovery", "session_audits", "device_keys", "key_exchanges", "device_key_events",
}  # fmt: skip
CHANGED = {"users", "audit_logs", "app_logs", "messages"}

#: function -> (SECURITY DEFINER, volatility)
FUNCTIONS = {
    "is_token_digest(value bytea)": (False, "i"),
    "is_field_envelope(value bytea)": (False, "i"),
    "guard_master_admin()": (False, "v"),
    "guard_last_admin()": (True, "v"),
    "lock_admin_changes()": (False, "v"),
    "bump_row_version()": (False, "v"),
    "guard_users_truncate()": (True, "v"),
    "designate_master_admin(audit_correlation_id text)": (True, "v"),
    "transfer_master_admin(new_master uuid, audit_correlation_id text)": (False, "v"),
    "archive_audit_logs(older_than interval, batch_size integer)": (True, "v"),
    "update_oauth_connections_updated_at()": (False, "v"),
    "count_old_oauth_tokens()": (True, "s"),
    "get_message_encryption_stats()": (True, "s"),
    "device_key_fingerprint(public_key text)": (False, "i"),
    "update_device_keys_updated_at()": (False, "v"),
    "record_device_key_event()": (True, "v"),
    "get_device_key_stats()": (True, "s"),
    "get_peer_public_keys(peer uuid)": (True, "s"),
}

#: (table, trigger) -> (timing and events, level, function)
TRIGGERS = {
    ("users", "users_guard_master_admin"): ("BEFORE UPDATE OR DELETE", "ROW", "guard_master_admin"),
    ("users", "users_lock_admin_changes"): (
        "BEFORE UPDATE OR DELETE",
        "STATEMENT",
        "lock_admin_changes",
    ),
    ("users", "users_guard_last_admin"): ("AFTER UPDATE OR DELETE", "ROW", "guard_last_admin"),
    ("users", "users_bump_version"): ("BEFORE UPDATE", "ROW", "bump_row_version"),
    **{
        (table, f"trg_{table}_updated_at"): ("BEFORE UPDATE", "ROW", "update_updated_at_column")
        for table in (
            "email_delivery_logs",
            "sms_delivery_logs",
            "user_devices",
            "two_factor_auth",
            "account_recovery",
        )
    },
    ("oauth_connections", "trg_oauth_connections_updated_at"): (
        "BEFORE UPDATE",
        "ROW",
        "update_oauth_connections_updated_at",
    ),
    ("device_keys", "trg_device_keys_updated_at"): (
        "BEFORE UPDATE",
        "ROW",
        "update_device_keys_updated_at",
    ),
    ("device_keys", "trg_device_keys_registered"): (
        "AFTER INSERT",
        "ROW",
        "record_device_key_event",
    ),
    ("device_keys", "trg_device_keys_rotated"): ("AFTER UPDATE", "ROW", "record_device_key_event"),
    ("device_keys", "trg_device_keys_deleted"): ("AFTER DELETE", "ROW", "record_device_key_event"),
}

ENUMS = {
    "login_attempt_result": [
        "success", "failed_password", "failed_unknown_identifier", "failed_second_factor",
        "failed_locked", "failed_unverified", "blocked",
    ],
    "security_event_severity": ["low", "medium", "high", "critical"],
    "delivery_status": ["pending", "sent", "delivered", "failed", "bounced"],
    "account_recovery_method": ["email", "sms", "backup_code", "admin"],
    "account_recovery_status": ["pending", "completed", "expired", "cancelled"],
    "session_audit_action": [
        "created", "refreshed", "rotated", "stepped_up", "ip_changed", "revoked", "expired",
        "reuse_detected", "dpop_mismatch",  # 0034
    ],
    "oauth_refresh_status": ["success", "failed", "skipped"],
    "device_key_event_type": ["registered", "rotated", "deleted", "exchange_failed"],
}  # fmt: skip

#: table -> its policies (name, command)
POLICIES = {
    "step_up_tokens": {("step_up_tokens_owner", "ALL")},
    "audit_logs_archive": {("audit_logs_archive_owner_read", "SELECT")},
    **{t: {(f"{t}_owner_read", "SELECT")} for t in ("login_attempts", "sms_delivery_logs")},
    # a user's own requests log their mails, audit their sessions, cancel a recovery (0034)
    **{
        t: {(f"{t}_owner_read", "SELECT"), (f"{t}_owner_insert", "INSERT")}
        for t in ("email_delivery_logs", "session_audits")
    },
    "account_recovery": {
        ("account_recovery_owner_read", "SELECT"),
        ("account_recovery_owner_cancel", "UPDATE"),
    },
    **{
        t: {(f"{t}_owner", "ALL")}
        for t in (
            "user_devices",
            "two_factor_auth",
            "two_factor_backup_codes",
            "oauth_connections",
            "api_keys",
            "device_keys",
        )
    },
    # a user's own requests append their refusals and their replaced hashes (0028)
    **{
        t: {(f"{t}_owner_read", "SELECT"), (f"{t}_owner_insert", "INSERT")}
        for t in ("security_events", "password_history")
    },
    "key_exchanges": {
        ("key_exchanges_party_read", "SELECT"),
        ("key_exchanges_initiator_insert", "INSERT"),
    },
    "device_key_events": {
        ("device_key_events_owner_read", "SELECT"),
        ("device_key_events_owner_report_failure", "INSERT"),
    },
}


@pytest.fixture(scope="module")
def catalog(authmodels_engine: Engine) -> dict[str, Any]:
    with authmodels_engine.connect() as conn:
        return _read(conn)


def _read(conn: Connection) -> dict[str, Any]:
    functions = {
        f"{r[0]}({r[1]})": (r[2], r[3])
        for r in conn.execute(
            text(
                "SELECT proname, pg_get_function_identity_arguments(oid), prosecdef, provolatile "
                "FROM pg_proc WHERE pronamespace = 'auth'::regnamespace"
            )
        )
    }
    configs = {
        r[0]: r[1]
        for r in conn.execute(
            text(
                "SELECT proname, proconfig FROM pg_proc "
                "WHERE pronamespace = 'auth'::regnamespace AND prosecdef"
            )
        )
    }
    triggers = {
        (r[0], r[1]): (r[2], r[3], r[4])
        for r in conn.execute(
            text(
                "SELECT event_object_table, trigger_name, "
                "action_timing || ' ' || string_agg(event_manipulation, ' OR ' "
                "ORDER BY event_manipulation DESC), action_orientation, "
                "substring(action_statement from 'auth\\.([a-z_]+)\\(') "
                "FROM information_schema.triggers WHERE trigger_schema = 'auth' "
                "GROUP BY 1, 2, action_timing, action_orientation, action_statement"
            )
        )
    }
    enums = {
        r[0]: list(r[1])
        for r in conn.execute(
            text(
                "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
                "JOIN pg_enum e ON e.enumtypid = t.oid "
                "WHERE t.typnamespace = 'auth'::regnamespace GROUP BY t.typname"
            )
        )
    }
    checks: dict[str, dict[str, bool]] = {}
    for table, name, validated in conn.execute(
        text(
            "SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint "
            "WHERE connamespace = 'auth'::regnamespace AND contype = 'c'"
        )
    ):
        checks.setdefault(table.removeprefix("auth."), {})[name] = validated
    policies: dict[str, set[tuple[str, str]]] = {}
    for table, name, command in conn.execute(
        text("SELECT tablename, policyname, cmd FROM pg_policies WHERE schemaname = 'auth'")
    ):
        policies.setdefault(table, set()).add((name, command))
    rls = {
        r[0]: r[1]
        for r in conn.execute(
            text(
                "SELECT relname, relrowsecurity FROM pg_class "
                "WHERE relnamespace = 'auth'::regnamespace AND relkind IN ('r', 'p')"
            )
        )
    }
    definitions = {
        r[0]: r[1]
        for r in conn.execute(
            text(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE tgrelid = 'auth.users'::regclass AND NOT tgisinternal"
            )
        )
    }
    return {
        "definitions": definitions,
        "functions": functions,
        "configs": configs,
        "triggers": triggers,
        "enums": enums,
        "checks": checks,
        "policies": policies,
        "rls": rls,
    }


def test_every_function_exists_with_its_security_and_volatility(catalog: dict[str, Any]) -> None:
    for signature, expected in FUNCTIONS.items():
        assert catalog["functions"].get(signature) == expected, signature


def test_security_definer_functions_pin_their_search_path(catalog: dict[str, Any]) -> None:
    definers = {s.split("(")[0] for s, (definer, _) in FUNCTIONS.items() if definer}
    for name in definers:
        assert catalog["configs"][name] == ["search_path=pg_catalog, pg_temp"], name


def test_every_trigger_is_attached_with_its_timing_and_function(catalog: dict[str, Any]) -> None:
    for key, expected in TRIGGERS.items():
        assert catalog["triggers"].get(key) == expected, key


def test_truncating_users_is_guarded(catalog: dict[str, Any]) -> None:
    # information_schema.triggers does not list TRUNCATE triggers
    assert catalog["definitions"]["users_guard_truncate"] == (
        "CREATE TRIGGER users_guard_truncate BEFORE TRUNCATE ON auth.users "
        "FOR EACH STATEMENT EXECUTE FUNCTION auth.guard_users_truncate()"
    )


def test_every_enum_has_its_labels_in_order(catalog: dict[str, Any]) -> None:
    for name, labels in ENUMS.items():
        assert catalog["enums"].get(name) == labels, name


def test_every_check_the_models_declare_exists_and_is_validated(catalog: dict[str, Any]) -> None:
    for table in sorted(CREATED | CHANGED):
        declared = {
            str(c.name) for c in metadata.tables[f"auth.{table}"].constraints
            if isinstance(c, CheckConstraint)
        }  # fmt: skip
        in_database = catalog["checks"].get(table, {})
        assert declared == set(in_database), table
        assert all(in_database.values()), f"{table}: a CHECK is still NOT VALID"


def test_seed_named_objects_keep_the_seeds_names(catalog: dict[str, Any]) -> None:
    assert "chk_messages_encryption_version_valid" in catalog["checks"]["messages"]
    assert "update_oauth_connections_updated_at()" in catalog["functions"]
    assert "update_device_keys_updated_at()" in catalog["functions"]


def test_every_new_table_has_row_level_security_and_its_policies(
    catalog: dict[str, Any],
) -> None:
    for table in CREATED:
        assert catalog["rls"][table] is True, table
        mine = {p for p in catalog["policies"].get(table, set()) if not p[0].startswith("service_")}
        assert mine == POLICIES[table], table
