"""0028: the owner's maintenance functions are closed to the application role, and a user's own
requests may append their security events and password history."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError

from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role
from tests.migrations.migration_helpers import previous

REVISION = "0028_owner_maintenance"
BEFORE = previous(REVISION)
HISTORY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"


def _archive_everything(app: Engine) -> int:
    with app.begin() as conn:
        return int(conn.execute(text("SELECT auth.archive_audit_logs(interval '0')")).scalar_one())


def _append_own_rows(app: Engine, user: str) -> None:
    with app.begin() as conn:
        conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": user})
        conn.execute(
            text(
                "INSERT INTO auth.security_events (user_id, event_type, severity) "
                "VALUES (CAST(:u AS uuid), 'mfa.totp_replayed', 'high')"
            ),
            {"u": user},
        )
        conn.execute(
            text(
                "INSERT INTO auth.password_history (user_id, password_hash) "
                "VALUES (CAST(:u AS uuid), :h)"
            ),
            {"u": user, "h": HISTORY_HASH},
        )


def test_maintenance_is_the_owners_and_users_append_their_own_logs(
    authmodels_migration_runner: MigrationRunner, authmodels_empty_database: URL
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE)
    [(ada,)] = runner.execute(
        "INSERT INTO auth.users (email, password_hash) VALUES ('ada@example.com', 'x') "
        "RETURNING id::text"
    )
    runner.execute(
        "INSERT INTO auth.audit_logs (user_id, event_type) VALUES (CAST(:u AS uuid), 'login')",
        {"u": ada},
    )
    with application_role(runner, authmodels_empty_database) as (_, app):
        # before: the application role moves the whole live audit trail to the archive, and a
        # user's own refusal cannot be recorded while the request runs as them
        assert _archive_everything(app) == 1
        with pytest.raises(ProgrammingError, match="row-level security"):
            _append_own_rows(app, ada)

        runner.upgrade(REVISION)

        with pytest.raises(ProgrammingError, match="permission denied for function"):
            _archive_everything(app)
        for function in ("purge_expired_data()", "designate_master_admin('x')"):
            with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
                conn.execute(text(f"SELECT auth.{function}"))
        _append_own_rows(app, ada)
        [(bob,)] = runner.execute(
            "INSERT INTO auth.users (email, password_hash) VALUES ('bob@example.com', 'x') "
            "RETURNING id::text"
        )
        with pytest.raises(ProgrammingError, match="row-level security"), app.begin() as conn:
            # as Ada, for Bob: refused
            conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": ada})
            conn.execute(
                text(
                    "INSERT INTO auth.security_events (user_id, event_type, severity) "
                    "VALUES (CAST(:u AS uuid), 'x.y', 'low')"
                ),
                {"u": bob},
            )
        # the owner still runs its maintenance
        assert runner.execute("SELECT auth.archive_audit_logs(interval '0')") == [(0,)]

        runner.downgrade(BEFORE)
        assert _archive_everything(app) == 0
        with pytest.raises(ProgrammingError, match="row-level security"):
            _append_own_rows(app, ada)
    assert runner.execute(
        "SELECT count(*) FROM auth.security_events WHERE user_id = CAST(:u AS uuid)", {"u": ada}
    ) == [(1,)]
