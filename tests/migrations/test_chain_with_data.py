"""The whole chain on a database seeded with legacy rows in every baseline table.

Base → head: every row is either in its table (converted) or in ``auth.quarantine`` with the
reason. Head → 0001: every row is back in its table, with the values the downgrades can restore
(plaintext secrets cannot come back; see each revision's docstring). Then down to base.
"""

from __future__ import annotations

import hashlib

import bcrypt
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.db import create_db_engine
from authmodels.services import FlowSettings, passwords, use_settings
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import count, insert

FUTURE = "2999-01-01T00:00:00Z"

#: baseline table -> its name at head
RENAMED = {"biometric_credentials": "webauthn_credentials"}
#: rows the revisions themselves write into baseline tables (and their downgrades remove):
#: 0009 records the designation of the master admin in audit_logs.
WRITTEN_BY_REVISIONS = {"audit_logs": 1}


def _hex(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _password(i: int) -> str:
    return f"seed 004 password {i}"


#: Seed 004's password hashes: bcrypt, 12 rounds.
BCRYPT = [bcrypt.hashpw(_password(i).encode(), bcrypt.gensalt(12)).decode() for i in range(3)]


def _seed(runner: MigrationRunner) -> None:
    users = [
        insert(runner, "users", email=f"user{i}@example.com", password_hash=BCRYPT[i], role=role)
        for i, role in enumerate(["user", "admin", "user"])
    ]
    for i, user in enumerate(users):
        email = f"user{i}@example.com"
        session = insert(
            runner,
            "sessions",
            user_id=user,
            token_hash=_hex(f"s{i}"),
            refresh_token_hash=_hex(f"r{i}"),
            ip_address="192.0.2.1",
            user_agent="UA",
            expires_at=FUTURE,
        )
        insert(
            runner,
            "refresh_tokens",
            user_id=user,
            session_id=session,
            token_hash=_hex(f"rt{i}"),
            expires_at=FUTURE,
        )
        insert(
            runner,
            "password_reset_tokens",
            user_id=user,
            token_hash=_hex(f"p{i}"),
            expires_at=FUTURE,
        )
        insert(
            runner,
            "email_verification_tokens",
            user_id=user,
            email=email,
            token_hash=_hex(f"v{i}"),
            expires_at=FUTURE,
        )
        insert(runner, "audit_logs", user_id=user, event_type="login")
        insert(runner, "user_profiles", email=email.upper(), display_name=f"User {i}")
        insert(
            runner,
            "biometric_credentials",
            user_email=email,
            credential_id=f"0{i}ab",
            public_key="AQID",
        )
        insert(
            runner,
            "device_flows",
            device_code=f"dc{i}",
            user_code=f"BCD{i}-FGHJ",
            client_id="tv",
            status="approved",
            user_email=email,
            expires_at=FUTURE,
        )
        insert(runner, "access_tokens", token=f"at{i}", user_email=email, expires_at=FUTURE)
        conversation = insert(runner, "conversations", created_by=user, title=f"c{i}")
        runner.execute(
            "INSERT INTO auth.conversation_participants (conversation_id, user_id) VALUES (:c, :u)",
            {"c": conversation, "u": user},
        )
        insert(runner, "messages", conversation_id=conversation, sender_id=user, content="hi")
    # rows that some revision cannot convert
    insert(runner, "user_profiles", email="ghost@example.com")
    insert(
        runner,
        "biometric_credentials",
        user_email="user0@example.com",
        credential_id="zz",
        public_key="AQID",
    )
    insert(
        runner, "access_tokens", token="orphan", user_email="ghost@example.com", expires_at=FUTURE
    )
    insert(
        runner,
        "device_flows",
        device_code="dcx",
        user_code="XXXX-XXXX",
        client_id="tv",
        status="approved",
        expires_at=FUTURE,
    )  # approved without a user
    runner.execute("INSERT INTO auth.app_logs (level, message) VALUES ('info', 'started')")


BASELINE_TABLES = [
    "users", "sessions", "refresh_tokens", "password_reset_tokens",
    "email_verification_tokens", "audit_logs", "user_profiles", "biometric_credentials",
    "device_flows", "access_tokens", "app_logs", "conversations", "conversation_participants",
    "messages",
]  # fmt: skip


def test_no_row_is_lost_from_base_to_head_and_back(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0001_baseline")
    _seed(runner)
    seeded = {t: count(runner, t) for t in BASELINE_TABLES}

    runner.upgrade("head")

    quarantined = dict(
        runner.execute("SELECT source_table, count(*) FROM auth.quarantine GROUP BY 1")
    )
    assert set(quarantined) == {
        "user_profiles",
        "biometric_credentials",
        "access_tokens",
        "device_flows",
    }
    assert all(reason for (reason,) in runner.execute("SELECT reason FROM auth.quarantine"))
    for table, n in seeded.items():
        kept = count(runner, RENAMED.get(table, table))
        assert kept + quarantined.get(table, 0) == n + WRITTEN_BY_REVISIONS.get(table, 0), table

    runner.downgrade("0001_baseline")

    assert {t: count(runner, t) for t in BASELINE_TABLES} == seeded
    assert runner.execute("SELECT to_regclass('auth.quarantine')") == [(None,)]

    runner.downgrade("base")
    assert runner.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'auth'::regnamespace "
        "AND relkind = 'r' AND relname <> 'alembic_version'"
    ) == [(0,)]


def test_a_seed_004_user_signs_in_with_their_bcrypt_password_after_upgrade_head(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("0001_baseline")
    _seed(runner)
    runner.upgrade("head")

    engine = create_db_engine(authmodels_empty_database)
    try:
        with Session(engine) as db:
            use_settings(db, FlowSettings.from_env())
            assert passwords.password_hash_schemes(db)["bcrypt"] == 3
            user = passwords.authenticate(
                db, "user1@example.com", _password(1), ip="192.0.2.1", user_agent="UA"
            )
            db.commit()
            stored = db.execute(
                text("SELECT password_hash FROM auth.users WHERE id = :u"), {"u": user.id}
            ).scalar_one()
            assert stored.startswith("$argon2id$") and stored != BCRYPT[1]
            assert passwords.password_hash_schemes(db) == {"bcrypt": 2, "argon2": 1}
    finally:
        engine.dispose()
