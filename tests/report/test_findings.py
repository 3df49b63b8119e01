"""The findings of a report, with their severities, from what the database holds; and the
thresholds and targets a report refuses before it reads anything."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidInputError
from authmodels.models.enums import SecurityEventSeverity as Severity
from authmodels.report import (
    SEVERITY_ORDER,
    Targets,
    Thresholds,
    at_least,
    collect,
    report_transaction,
    worst,
)
from authmodels.testing.factories import UserFactory
from tests.report import rows
from tests.report.rows import BCRYPT


def findings(db: Session, **targets: float) -> dict[str, list[Severity]]:
    found: dict[str, list[Severity]] = {}
    for f in collect(db.connection(), targets=Targets(**targets)).findings:
        found.setdefault(f.check, []).append(f.severity)
    return found


def test_a_quiet_database_has_no_finding(db: Session) -> None:
    report = collect(db.connection())
    assert report.findings == () and worst(report.findings) is None


def test_detections_are_critical_and_high(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    rows.login_attempts(db, 101, ip="198.51.100.1", identifiers=[f"u{n}@x.org" for n in range(21)])
    rows.sessions(db, authmodels_user_factory(), 11)
    rows.security_events(db, 1, "webauthn.sign_count_regression", "critical")
    rows.security_events(db, 2, "refresh_token.reused", "high")
    rows.security_events(db, 5, "step_up.token_reused", "medium")  # listed, not a finding
    rows.security_events(db, 1, "dpop.proof_replayed", "high", ago="2 days")  # before the day
    report = collect(db.connection())
    detections = {"brute_force", "credential_stuffing", "security_events", "session_anomalies"}
    assert [(f.check, f.severity.value) for f in report.findings if f.check in detections] == [
        ("brute_force", "critical"),
        ("credential_stuffing", "critical"),
        ("security_events", "critical"),
        ("session_anomalies", "high"),
        ("security_events", "high"),
    ]
    order = [SEVERITY_ORDER.index(f.severity) for f in report.findings]
    assert order == sorted(order, reverse=True)  # the most urgent first
    summaries = {f.summary for f in report.findings}
    assert "2 high security event(s) in the last day: refresh_token.reused x2" in summaries


def test_key_metrics_below_the_seed_targets_are_findings(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    rows.login_attempts(db, 90, result="success", ago="2 hours")
    rows.login_attempts(db, 10, ago="2 hours")
    assert "login_success_rate" in findings(db)  # 90% < 95%, from 100 attempts
    assert "login_success_rate" not in findings(db, min_attempts=101)
    assert "login_success_rate" not in findings(db, min_success_rate=0.9)
    user = authmodels_user_factory()
    rows.security_events(db, 1, "login.account_locked", "high", user=user)
    assert "lockout_rate" in findings(db, max_lockout_rate=0.0)


def test_compliance_gaps_are_findings_of_their_severity(db: Session) -> None:
    rows.users_with_hashes(db, [BCRYPT])
    db.execute(text("CREATE TABLE auth.reset_links (id int PRIMARY KEY, token text)"))
    db.execute(
        text(
            "INSERT INTO auth.app_logs (message, created_at) "
            "VALUES ('old', now() - interval '100 days')"
        )
    )
    found = findings(db)
    assert found["token_digests"] == [Severity.CRITICAL]
    assert found["argon2id_passwords"] == [Severity.LOW]
    assert found["retention"] == [Severity.MEDIUM]
    report = collect(db.connection())
    [tokens] = [f for f in report.findings if f.check == "token_digests"]
    assert tokens.summary.endswith(": reset_links.token")
    [retention] = [f for f in report.findings if f.check == "retention"]
    assert "app_logs 1" in retention.summary


def test_severities_are_ordered_for_fail_on() -> None:
    assert [s.value for s in SEVERITY_ORDER] == ["low", "medium", "high", "critical"]
    assert at_least(Severity.CRITICAL, Severity.HIGH)
    assert not at_least(Severity.MEDIUM, Severity.HIGH)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"brute_force_window": timedelta(0)}, "brute_force_window"),
        ({"brute_force_window": 300}, "brute_force_window"),
        ({"brute_force_failures": -1}, "brute_force_failures"),
        ({"brute_force_failures": True}, "brute_force_failures"),
        ({"top_sources": 0}, "top_sources"),
        ({"events_window": timedelta(days=5000)}, "events_window"),
        ({"login_bucket": timedelta(seconds=1)}, "login_bucket"),
        ({"no_such_threshold": 3}, "no_such_threshold"),
    ],
)
def test_thresholds_are_checked_before_any_query(values: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        Thresholds().with_values(**values)
    assert refused.value.field == field


@pytest.mark.parametrize(
    "values",
    [{"min_success_rate": 1.5}, {"min_attempts": -1}, {"max_mean_live_sessions": "5"}],
)
def test_targets_are_checked(values: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        Targets(**values)  # type: ignore[arg-type]


def test_the_report_reads_one_read_only_snapshot(authmodels_engine: Engine) -> None:
    with report_transaction(authmodels_engine) as conn:
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
