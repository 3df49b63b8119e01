"""0023: one live account per e-mail address, whatever its case; conflicts stop the upgrade."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authmodels.db import libpq_url
from authmodels.email_identity import resolve_conflicts
from authmodels.errors import EmailConflictError
from authmodels.security.passwords import PasswordHasher
from authmodels.services import passwords
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import count, indexes
from tests.migrations.migration_helpers import previous, user

REVISION = "0023_email_identity"
BEFORE = previous(REVISION)
INDEX = "uq_users_email_identity"


def _index(runner: MigrationRunner) -> list[tuple[object, ...]]:
    return runner.execute(
        "SELECT indisvalid, indisunique, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indexrelid = to_regclass(:i)",
        {"i": f"auth.{INDEX}"},
    )


def test_case_variant_duplicates_stop_the_upgrade_before_any_change(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    older = user(runner, "ADA@example.com", created_at="2024-01-02T03:04:00Z")
    newer = user(runner, "ada@example.com", last_login_at="2025-06-07T08:09:00Z")
    user(runner, "bob@example.com")
    user(runner, "Bob@example.com", deleted_at="2025-01-01T00:00:00Z")  # deleted: no conflict
    before = count(runner, "users")

    with pytest.raises(EmailConflictError) as refused:
        runner.upgrade(REVISION)

    message = str(refused.value)
    assert "2 accounts share 1 addresses" in message
    for expected in (
        older,
        newer,
        "ADA@example.com  created 2024-01-02 03:04  last login never",
        "ada@example.com",
        "last login 2025-06-07 08:09",
        "authmodels users email-conflicts --resolve --keep <user_id>",
        "Nothing was changed",
    ):
        assert expected in message
    assert "bob@example.com" not in message.lower()
    assert runner.current() == BEFORE
    assert _index(runner) == []
    assert count(runner, "users") == before


def test_resolved_conflicts_let_the_upgrade_build_the_identity(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    older = user(runner, "ADA@example.com", email_verified=True)
    newer = user(runner, "ada@example.com")
    with runner.connect() as conn:
        [done] = resolve_conflicts(conn, keep=[newer])
    assert (str(done.user_id), done.old_email) == (older, "ADA@example.com")

    runner.upgrade(REVISION)

    assert _index(runner) == [
        (
            True,
            True,
            "CREATE UNIQUE INDEX uq_users_email_identity ON auth.users USING btree "
            "(lower(email)) WHERE (deleted_at IS NULL)",
        )
    ]
    assert runner.execute(
        "SELECT email, email_verified FROM auth.users WHERE id = CAST(:u AS uuid)", {"u": older}
    ) == [(f"conflict-{older}@email-conflict.invalid", False)]
    with pytest.raises(IntegrityError, match=INDEX):
        user(runner, "Ada@Example.COM")
    # a deleted account frees its address; a new live one may take it in any case
    runner.execute(
        "UPDATE auth.users SET deleted_at = now() WHERE id = CAST(:u AS uuid)", {"u": newer}
    )
    user(runner, "Ada@Example.COM")

    runner.downgrade(BEFORE)
    assert _index(runner) == []
    assert [name for name, _ in indexes(runner) if name.startswith("ix_users_email")] == [
        "ix_users_email",
        "ix_users_email_lower",
    ]


def _waiting_build(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%uq_users_email_identity%'"
        ).fetchone()
    return bool(row and row[0])


def test_a_case_variant_written_during_the_build_fails_it_without_an_invalid_index(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    """The check runs before the account is committed, the build after: it fails cleanly."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    user(runner, "ada@example.com")
    conninfo = libpq_url(authmodels_empty_database)
    outcome: list[BaseException] = []

    def upgrade() -> None:
        try:
            runner.upgrade(REVISION)
        except BaseException as exc:
            outcome.append(exc)

    with psycopg.connect(conninfo) as writer:
        writer.execute(
            "INSERT INTO auth.users (email, password_hash) VALUES ('ADA@example.com', 'x')"
        )
        migration = threading.Thread(target=upgrade)
        migration.start()
        deadline = time.monotonic() + 20
        while not _waiting_build(conninfo):  # the build waits for the writer's transaction
            assert migration.is_alive(), outcome
            assert time.monotonic() < deadline, "the index build never waited for the writer"
            time.sleep(0.02)
        writer.commit()
        migration.join(timeout=60)

    [error] = outcome
    assert isinstance(error, EmailConflictError)
    assert "written while the unique index was being built" in str(error)
    assert "ADA@example.com" in str(error)
    assert _index(runner) == []  # no INVALID index left behind
    assert runner.current() == BEFORE


def test_login_finds_the_live_account_whatever_the_case_typed(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade("head")
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, allow_weak=True)
    # an older deleted account with the same address does not win any more
    user(runner, "ada@example.com", deleted_at="2024-01-01T00:00:00Z", created_at="2023-01-01Z")
    live = user(runner, "Ada@Example.com")
    runner.execute(
        "UPDATE auth.users SET password_hash = :h WHERE id = CAST(:u AS uuid)",
        {"h": hasher.hash("correct horse"), "u": live},
    )
    with Session(runner.engine) as db:
        found = passwords.authenticate(
            db, "  ADA@example.COM ", "correct horse", ip=None, user_agent=None
        )
        found_id = found.id
        db.commit()
    assert str(found_id) == live
