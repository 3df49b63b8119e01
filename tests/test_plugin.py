"""The pytest plugin keeps tests apart and hands out real, migrated databases."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.db import sqlalchemy_url
from authmodels.models import User
from authmodels.security.hashing import TokenHasher
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER
from authmodels.testing.migrations import revision_ids
from authmodels.testing.plugin import TestKeys

ISOLATION_EMAIL = "isolation-probe@example.test"


def _count_probe(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User).where(User.email == ISOLATION_EMAIL))


# The next two tests run in file order: the first commits a user, the second must not see it.
def test_isolation_first_test_commits_a_user(authmodels_session: Session) -> None:
    authmodels_session.add(User(email=ISOLATION_EMAIL, password_hash="!unusable"))
    authmodels_session.commit()  # what application code does; here it releases a SAVEPOINT
    assert _count_probe(authmodels_session) == 1


def test_isolation_second_test_does_not_see_it(
    authmodels_session: Session, authmodels_engine: Engine
) -> None:
    assert _count_probe(authmodels_session) == 0
    with authmodels_engine.connect() as other:  # nor does any other connection
        count = other.scalar(
            text("SELECT count(*) FROM auth.users WHERE email = :e"), {"e": ISOLATION_EMAIL}
        )
    assert count == 0


def test_rollback_inside_a_test_keeps_the_session_usable(authmodels_session: Session) -> None:
    authmodels_session.add(User(email="rolled-back@example.test", password_hash="x"))
    authmodels_session.flush()
    authmodels_session.rollback()
    assert authmodels_session.scalar(select(func.count()).select_from(User)) == 0


def test_user_factory_makes_users_with_verifiable_passwords(authmodels_user_factory) -> None:  # type: ignore[no-untyped-def]
    user = authmodels_user_factory(email="ada@example.test")
    assert user.id is not None
    assert TEST_PASSWORD_HASHER.verify(user.password_hash, DEFAULT_PASSWORD)
    assert not TEST_PASSWORD_HASHER.verify(user.password_hash, "wrong")


def test_fresh_database_is_migrated_and_shared_between_connections(
    authmodels_fresh_database: URL, authmodels_engine: Engine
) -> None:
    engine = create_engine(sqlalchemy_url(authmodels_fresh_database))
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO auth.users (email, password_hash) VALUES ('c@example.test', 'x')")
            )
        seen: list[int] = []

        def read() -> None:
            with engine.connect() as conn:
                seen.append(conn.scalar(text("SELECT count(*) FROM auth.users")) or 0)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert seen == [1]
        with engine.connect() as conn:
            version = conn.scalar(text("SELECT version_num FROM auth.alembic_version"))
        assert version == revision_ids()[-1]
    finally:
        engine.dispose()
    # the shared test database did not receive the committed row
    with authmodels_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM auth.users")) == 0


_FRESH_NAMES: list[str] = []


# File order again: the first test records its fresh database, the second checks it is gone.
def test_fresh_database_records_its_name(authmodels_fresh_database: URL) -> None:
    assert authmodels_fresh_database.database
    _FRESH_NAMES.append(authmodels_fresh_database.database)


def test_fresh_database_was_dropped_after_the_previous_test(authmodels_server_url: URL) -> None:
    assert _FRESH_NAMES, "run the whole file: the previous test records the name"
    admin = create_engine(sqlalchemy_url(authmodels_server_url))
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": _FRESH_NAMES[0]}
            )
    finally:
        admin.dispose()
    assert exists == 0


def test_empty_database_has_no_schema(authmodels_empty_database: URL) -> None:
    engine = create_engine(sqlalchemy_url(authmodels_empty_database))
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT to_regnamespace('auth')")) is None
    finally:
        engine.dispose()


def test_key_rings_are_generated_and_exported(authmodels_keys: TestKeys) -> None:
    import os

    from authmodels.config import Settings

    settings = Settings.from_env()
    assert settings.require_hash_keys().keys == authmodels_keys.hash_keys.keys
    assert (
        settings.require_encryption_keys().current_key
        == authmodels_keys.encryption_keys.current_key
    )
    assert len(authmodels_keys.hash_keys.current_key) == 32
    hasher = TokenHasher(authmodels_keys.hash_keys.keys)
    assert hasher.matches("t", hasher.digest("t"))
    assert "AUTHMODELS_HASH_KEYS" in os.environ
