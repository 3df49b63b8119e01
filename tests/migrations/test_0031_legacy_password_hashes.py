"""0031: the password history accepts every scheme the hasher reads; the downgrade sets aside
(never deletes) what 0028's CHECK refuses, and a new upgrade puts it back."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import count
from tests.migrations.migration_helpers import previous

REVISION = "0031_legacy_password_hashes"
BEFORE = previous(REVISION)
DJANGO = "pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs="
BCRYPT = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def _keep(runner: MigrationRunner, user: str, stored: str) -> None:
    runner.execute(
        "INSERT INTO auth.password_history (user_id, password_hash) VALUES (CAST(:u AS uuid), :h)",
        {"u": user, "h": stored},
    )


def test_history_takes_legacy_schemes_and_the_downgrade_loses_none(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    [(user,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash) VALUES ('moved@example.com', :h) "
        "RETURNING id::text",
        {"h": DJANGO},
    )
    _keep(runner, user, BCRYPT)
    with pytest.raises(IntegrityError, match="ck_password_history_password_hash_format"):
        _keep(runner, user, DJANGO)

    runner.upgrade(REVISION)
    _keep(runner, user, DJANGO)
    with pytest.raises(IntegrityError, match="ck_password_history_password_hash_format"):
        _keep(runner, user, "md5$x")
    assert count(runner, "password_history") == 2

    runner.downgrade(BEFORE)
    assert runner.execute("SELECT password_hash FROM auth.password_history") == [(BCRYPT,)]
    assert runner.execute(
        "SELECT row_data->>'password_hash' FROM auth.quarantine WHERE revision = :r",
        {"r": REVISION},
    ) == [(DJANGO,)]

    runner.upgrade(REVISION)
    assert sorted(runner.execute("SELECT password_hash FROM auth.password_history")) == sorted(
        [(BCRYPT,), (DJANGO,)]
    )
    assert count(runner, "quarantine") == 0
