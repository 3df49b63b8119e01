"""Revision 0012 (seed 003 #119): validation only -- existing messages pass, gaps are named."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from authmodels.errors import MigrationError
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import constraints, insert
from tests.migrations.migration_helpers import previous, schema_objects, user

REVISION = "0012_message_encryption"
BEFORE = previous(REVISION)


@pytest.fixture
def runner(authmodels_migration_runner: MigrationRunner) -> Iterator[MigrationRunner]:
    authmodels_migration_runner.upgrade(BEFORE)
    yield authmodels_migration_runner


def _conversation(runner: MigrationRunner) -> tuple[str, str]:
    sender = user(runner, "ada@example.com")
    return sender, insert(runner, "conversations", created_by=sender, title="t")


def _message(runner: MigrationRunner, conversation: str, sender: str, **values: object) -> str:
    return insert(runner, "messages", conversation_id=conversation, sender_id=sender, **values)


def test_existing_plaintext_and_encrypted_messages_pass_the_new_constraints(
    runner: MigrationRunner,
) -> None:
    sender, conversation = _conversation(runner)
    plain = _message(runner, conversation, sender, content="hello")
    sealed = _message(
        runner,
        conversation,
        sender,
        encryption_version=2,
        content_encrypted=os.urandom(48),
        content_nonce=os.urandom(12),
    )
    before = runner.execute("SELECT * FROM auth.messages ORDER BY id")

    runner.upgrade(REVISION)

    assert runner.execute("SELECT * FROM auth.messages ORDER BY id") == before
    checks = {
        name: (definition, validated)
        for _, name, definition, validated in constraints(runner, "messages")
        if name in ("chk_messages_encryption_version_valid", "ck_messages_version_2_is_encrypted")
    }
    assert checks["chk_messages_encryption_version_valid"] == (
        "CHECK ((encryption_version = ANY (ARRAY[1, 2])))",
        True,
    )
    assert checks["ck_messages_version_2_is_encrypted"][1] is True
    stats = runner.execute("SELECT * FROM auth.get_message_encryption_stats()")
    assert [(v, n, float(p)) for v, n, p in stats] == [(1, 1, 50.0), (2, 1, 50.0)]
    assert plain and sealed


@pytest.mark.parametrize(
    "dropped", [["content_nonce"], ["content_encrypted", "encryption_version"]]
)
def test_a_missing_encryption_column_is_named_and_nothing_changes(
    runner: MigrationRunner, dropped: list[str]
) -> None:
    for column in dropped:
        runner.execute(f"ALTER TABLE auth.messages DROP COLUMN {column}")
    before = schema_objects(runner)

    with pytest.raises(MigrationError) as refused:
        runner.upgrade(REVISION)

    for column in dropped:
        assert f"{column} (" in str(refused.value) and "is missing" in str(refused.value)
    assert runner.current() == BEFORE
    assert schema_objects(runner) == before


def test_a_column_of_another_type_is_named(runner: MigrationRunner) -> None:
    runner.execute("ALTER TABLE auth.messages ALTER COLUMN content_nonce TYPE text")
    with pytest.raises(MigrationError, match="content_nonce is text, not bytea"):
        runner.upgrade(REVISION)
    assert runner.current() == BEFORE


def test_messages_that_would_break_the_constraints_stop_the_revision(
    runner: MigrationRunner,
) -> None:
    sender, conversation = _conversation(runner)
    leaky = _message(
        runner,
        conversation,
        sender,
        encryption_version=2,
        content="plaintext next to the ciphertext",
        content_encrypted=os.urandom(48),
        content_nonce=os.urandom(12),
    )
    _message(runner, conversation, sender, encryption_version=3, content="from the future")
    before = schema_objects(runner)

    with pytest.raises(MigrationError, match=r"1 messages .* and 1 version-2 messages"):
        runner.upgrade(REVISION)
    assert schema_objects(runner) == before

    runner.execute("UPDATE auth.messages SET content = '' WHERE id = :i", {"i": leaky})
    runner.execute("UPDATE auth.messages SET encryption_version = 1 WHERE encryption_version = 3")
    runner.upgrade(REVISION)
    assert runner.current() == REVISION


def test_new_rows_are_checked(runner: MigrationRunner) -> None:
    sender, conversation = _conversation(runner)
    runner.upgrade(REVISION)
    with pytest.raises(Exception, match="ck_messages_version_2_is_encrypted"):
        _message(runner, conversation, sender, encryption_version=2, content_encrypted=b"x")
    with pytest.raises(Exception, match="chk_messages_encryption_version_valid"):
        _message(runner, conversation, sender, encryption_version=99)


def test_downgrade_removes_only_what_the_revision_added(runner: MigrationRunner) -> None:
    sender, conversation = _conversation(runner)
    _message(runner, conversation, sender, content="hello")
    before = schema_objects(runner)
    comments_before = runner.execute(
        "SELECT col_description('auth.messages'::regclass, attnum) FROM pg_attribute "
        "WHERE attrelid = 'auth.messages'::regclass AND attnum > 0 ORDER BY attnum"
    )
    runner.upgrade(REVISION)
    runner.downgrade(BEFORE)
    assert schema_objects(runner) == before
    assert (
        runner.execute(
            "SELECT col_description('auth.messages'::regclass, attnum) FROM pg_attribute "
            "WHERE attrelid = 'auth.messages'::regclass AND attnum > 0 ORDER BY attnum"
        )
        == comments_before
    )
    assert runner.execute("SELECT content FROM auth.messages") == [("hello",)]
