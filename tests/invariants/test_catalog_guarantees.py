"""Guarantees read from the catalog at the suite's revision (head unless told otherwise), as the
application's login role: every view, table and column that exists is covered, whoever added it.
"""

from __future__ import annotations

from sqlalchemy import Connection

from authmodels.testing.roles import TestRoles
from tests.invariants.checks import (
    application_role_privileges_beyond_the_documented,
    definer_functions_the_application_may_run,
    definer_functions_without_pinned_search_path,
    raw_ip_or_user_agent_columns,
    raw_recipient_columns,
    report_aggregates_open_beyond_report_roles,
    secret_columns_without_shape_check,
    tables_without_row_level_security,
    views_without_invoker_rights,
)


def _report(violations: list[str]) -> str:
    return f"{len(violations)} violation(s):\n- " + "\n- ".join(violations)


def test_every_view_runs_with_the_querying_roles_rights(app: Connection) -> None:
    violations = views_without_invoker_rights(app)
    assert not violations, _report(violations)


def test_every_table_of_per_user_rows_has_row_level_security(app: Connection) -> None:
    violations = tables_without_row_level_security(app)
    assert not violations, _report(violations)


def test_every_stored_digest_and_envelope_has_its_shape_checked(app: Connection) -> None:
    violations = secret_columns_without_shape_check(app)
    assert not violations, _report(violations)


def test_no_column_stores_a_raw_ip_address_or_user_agent(app: Connection) -> None:
    violations = raw_ip_or_user_agent_columns(app)
    assert not violations, _report(violations)


def test_no_column_stores_a_raw_message_recipient(app: Connection) -> None:
    violations = raw_recipient_columns(app)
    assert not violations, _report(violations)


def test_security_definer_functions_pin_their_search_path(app: Connection) -> None:
    violations = definer_functions_without_pinned_search_path(app)
    assert not violations, _report(violations)


def test_application_roles_hold_only_the_documented_privileges(
    app: Connection, authmodels_roles: TestRoles
) -> None:
    violations = application_role_privileges_beyond_the_documented(
        app,
        {
            "application": authmodels_roles.app,
            "service": authmodels_roles.service,
            "login": authmodels_roles.login,
        },
    )
    assert not violations, _report(violations)


def test_the_owners_maintenance_functions_are_closed_to_the_application(
    app: Connection, authmodels_roles: TestRoles
) -> None:
    violations = definer_functions_the_application_may_run(
        app,
        {
            "application": authmodels_roles.app,
            "service": authmodels_roles.service,
            "login": authmodels_roles.login,
        },
    )
    assert not violations, _report(violations)


def test_the_report_aggregates_are_closed_to_the_application(
    app: Connection, authmodels_roles: TestRoles
) -> None:
    violations = report_aggregates_open_beyond_report_roles(
        app,
        {
            "application": authmodels_roles.app,
            "service": authmodels_roles.service,
            "login": authmodels_roles.login,
        },
    )
    assert not violations, _report(violations)
