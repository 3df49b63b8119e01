"""Who sees what: the application role runs the detection functions under row-level security
(its user's rows, or none), may not run the report's aggregates; the report role runs the
aggregates, which hold no e-mail address, user id or hash, and reads nothing else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from authmodels import rls
from authmodels.errors import ReportAccessError
from authmodels.models import User
from authmodels.report import collect
from authmodels.testing.factories import ServicePathUserFactory, UserFactory
from authmodels.testing.roles import TestRoles
from tests.report import rows
from tests.report.conftest import ReportRole

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def report_functions(db: Session) -> list[str]:
    return list(
        db.execute(
            text(
                "SELECT p.proname FROM pg_proc AS p WHERE p.pronamespace = 'auth'::regnamespace "
                "AND p.proname LIKE 'report\\_%' ORDER BY 1"
            )
        ).scalars()
    )


def _attack(db: Session, a: User, b: User) -> None:
    """Failed logins against A (12) and B (150) from two addresses, live sessions of each."""
    rows.login_attempts(db, 12, user=a, ip="192.0.2.1", identifiers=[a.email])
    stuffed = [f"leaked{n}@example.org" for n in range(30)]
    rows.login_attempts(db, 120, user=b, ip="192.0.2.2", identifiers=[b.email, *stuffed])
    rows.login_attempts(db, 30, user=b, ip="192.0.2.2", identifiers=[b.email])
    rows.sessions(db, a, 2)
    rows.sessions(db, b, 12)
    rows.security_events(db, 3, "refresh_token.reused", "high", user=b)


@pytest.fixture
def app(
    authmodels_app_session: Session,
    authmodels_app_user_factory: ServicePathUserFactory,
    authmodels_roles: TestRoles,
) -> Iterator[tuple[Session, User, User]]:
    """The login role's session, with users A and B and their rows (written on the service
    path, in the test's transaction)."""
    db = authmodels_app_session
    a, b = authmodels_app_user_factory(), authmodels_app_user_factory()
    with rls.service_role(db, authmodels_roles.service):
        _attack(db, a, b)
    yield db, a, b


def one(db: Session, sql: str) -> Any:
    return db.execute(text(sql)).one()


def test_the_application_role_sees_only_its_users_rows(app: tuple[Session, User, User]) -> None:
    db, a, b = app
    assert one(db, "SELECT * FROM auth.brute_force()").failed_attempts == 0  # no user named
    with rls.as_user(db, a.id):
        found = one(db, "SELECT * FROM auth.brute_force(more_than => 10)")
        assert (found.failed_attempts, found.detected) == (12, True)
        assert db.execute(text("SELECT * FROM auth.credential_stuffing()")).all() == []
        assert db.execute(text("SELECT * FROM auth.session_anomalies(more_than => 1)")).all() == [
            (a.id, 2)
        ]
        assert db.execute(text("SELECT * FROM auth.security_events_summary()")).all() == []
    with rls.as_user(db, b.id):
        assert one(db, "SELECT * FROM auth.brute_force()").failed_attempts == 150
        [(_, identifiers, *_)] = db.execute(text("SELECT * FROM auth.credential_stuffing()"))
        assert identifiers == 31
        [(user_id, live)] = db.execute(text("SELECT * FROM auth.session_anomalies()"))
        assert (user_id, live) == (b.id, 12)


def test_the_service_role_sees_every_row(
    app: tuple[Session, User, User], authmodels_roles: TestRoles
) -> None:
    db, _, _ = app
    with rls.service_role(db, authmodels_roles.service):
        assert one(db, "SELECT * FROM auth.brute_force()").failed_attempts == 162


def test_the_application_and_service_roles_may_not_run_the_report_aggregates(
    app: tuple[Session, User, User], authmodels_roles: TestRoles
) -> None:
    db, a, _ = app
    for function in report_functions(db):
        for role in (None, authmodels_roles.service):
            # the savepoint's rollback also undoes the SET LOCAL of the role or user
            with (
                pytest.raises(ProgrammingError, match="permission denied for function"),
                db.begin_nested(),
            ):
                if role:
                    db.execute(text(f'SET LOCAL ROLE "{role}"'))
                else:
                    rls.set_current_user(db, a.id)
                db.execute(text(f"SELECT * FROM auth.{function}()"))
    with pytest.raises(ReportAccessError, match="grant_report_role"), db.begin_nested():
        collect(db.connection())


def test_the_report_role_reads_aggregates_with_no_address_id_or_hash(
    db: Session, authmodels_user_factory: UserFactory, as_report_role: Any
) -> None:
    a, b = authmodels_user_factory(), authmodels_user_factory()
    _attack(db, a, b)
    secrets = {a.email, b.email, str(a.id), str(b.id)}
    functions = report_functions(db)
    assert len(functions) == 18
    with as_report_role() as conn:
        for function in functions:
            result = conn.execute(text(f"SELECT * FROM auth.{function}()"))
            types = {c.name: c.type_code for c in result.cursor.description}  # type: ignore[union-attr]
            values = [v for row in result for v in row]
            # no uuid (2950) nor bytea (17) column; no value naming a user
            assert not {2950, 17} & set(types.values()), (function, types)
            shown = " ".join(map(str, values))
            assert not secrets & set(re.findall(r"\S+@\S+|" + UUID.pattern, shown)), function
            assert not any(isinstance(v, bytes | memoryview) for v in values), function
        report = collect(conn.connection())
    assert report.brute_force.failed_attempts == 162 and report.brute_force.detected
    assert report.credential_stuffing.sources == 1
    assert report.credential_stuffing.most_identifiers == 31
    assert report.session_anomalies.users == 1
    dumped = str(report.as_dict())
    assert not secrets & set(re.findall(r"[\w.+-]+@[\w.-]+|" + UUID.pattern, dumped))


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM auth.login_attempts",
        "SELECT count(*) FROM auth.users",
        "SELECT * FROM auth.brute_force()",  # invoker rights: its tables are closed to the role
        "SELECT * FROM auth.active_sessions",
        "SELECT auth.grant_report_role(current_user)",
    ],
)
def test_the_report_role_reads_nothing_but_the_aggregates(
    db: Session, as_report_role: Any, statement: str
) -> None:
    with (
        as_report_role() as conn,
        pytest.raises(DBAPIError, match="permission denied"),
        conn.begin_nested(),
    ):
        conn.execute(text(statement))


def test_grant_report_role_refuses_a_role_that_would_see_more_than_aggregates(
    db: Session, authmodels_roles: TestRoles
) -> None:
    owner = db.execute(text("SELECT current_user")).scalar_one()
    refused = {
        authmodels_roles.app: "may read auth",
        authmodels_roles.service: "may read auth",
        authmodels_roles.login: "may read auth",  # a member of the application role
        owner: "superuser or BYPASSRLS",
        "no_such_role_x": "does not exist",
    }
    for role, reason in refused.items():
        with pytest.raises(ProgrammingError, match=reason), db.begin_nested():
            db.execute(text("SELECT auth.grant_report_role(:r)"), {"r": role})


def test_revoke_report_role_takes_the_aggregates_back(db: Session, report_role: ReportRole) -> None:
    db.execute(text("SELECT auth.grant_report_role(:r)"), {"r": report_role.name})
    executable = text(
        "SELECT count(*) FROM pg_proc AS p WHERE p.pronamespace = 'auth'::regnamespace "
        "AND p.proname LIKE 'report\\_%' AND has_function_privilege(:r, p.oid, 'EXECUTE')"
    )
    assert db.execute(executable, {"r": report_role.name}).scalar_one() == 18
    db.execute(text("SELECT auth.revoke_report_role(:r)"), {"r": report_role.name})
    assert db.execute(executable, {"r": report_role.name}).scalar_one() == 0
