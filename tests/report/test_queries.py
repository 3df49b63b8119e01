"""The queries of revision 0030, on rows whose age and content the tests choose: each answers its
question over its window only, with its threshold, and its ``report_`` aggregate agrees.

Rows are written as the owner in the test's transaction (rolled back afterwards); the queries run
as the owner (every row), as the detection functions and as the report role's aggregates.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.report import Thresholds, queries
from authmodels.testing.factories import UserFactory
from tests.report import rows
from tests.report.rows import ARGON2ID, BCRYPT, digest


def call(db: Session, function: str, **arguments: Any) -> list[Any]:
    passed = ", ".join(f"{a} => :{a}" for a in arguments)
    return list(db.execute(text(f"SELECT * FROM auth.{function}({passed})"), arguments))


def test_brute_force_counts_the_failed_logins_of_its_window_against_its_threshold(
    db: Session,
) -> None:
    rows.login_attempts(db, 60, ip="198.51.100.1", ago="4 minutes")
    rows.login_attempts(db, 41, ip="198.51.100.2", identifiers=["a@x.org", "b@x.org"])
    rows.login_attempts(db, 500, result="success", ip="198.51.100.3")  # successes do not count
    rows.login_attempts(db, 300, ip="198.51.100.4", ago="6 minutes")  # before the window

    [found] = call(db, "brute_force")
    assert (found.failed_attempts, found.sources, found.identifiers) == (101, 2, 3)
    assert found.threshold == 100 and found.detected

    [quieter] = call(db, "brute_force", more_than=101)
    assert not quieter.detected
    [longer] = call(db, "brute_force", in_last=timedelta(minutes=10))
    assert longer.failed_attempts == 401

    report = queries.brute_force(db, timedelta(minutes=5), 100)
    assert (report.failed_attempts, report.sources, report.detected) == (101, 2, True)


def test_brute_force_is_not_detected_at_its_threshold(db: Session) -> None:
    rows.login_attempts(db, 100, ago="1 minute")
    [found] = call(db, "brute_force")
    assert found.failed_attempts == 100 and not found.detected  # "more than 100"


def test_credential_stuffing_names_each_address_over_the_threshold_and_the_report_counts_them(
    db: Session,
) -> None:
    leaked = [f"leaked{n}@example.org" for n in range(25)]
    rows.login_attempts(db, 25, ip="192.0.2.7", identifiers=leaked, ago="30 minutes")
    rows.login_attempts(db, 21, ip="192.0.2.8", identifiers=leaked[:21], result="success")
    rows.login_attempts(db, 20, ip="192.0.2.9", identifiers=leaked[:20])  # at the threshold
    rows.login_attempts(db, 40, ip="192.0.2.10", identifiers=leaked, ago="61 minutes")
    rows.login_attempts(db, 30, ip=None, identifiers=leaked)  # no address: not counted

    found = call(db, "credential_stuffing")
    assert [(r.ip_hash, r.identifiers, r.attempts) for r in found] == [
        (digest("192.0.2.7"), 25, 25),
        (digest("192.0.2.8"), 21, 21),
    ]
    assert [r.failed_attempts for r in found] == [25, 0]

    [aggregate] = call(db, "report_credential_stuffing")
    assert aggregate._asdict() == {
        "sources": 2,
        "most_identifiers": 25,
        "attempts": 46,
        "threshold": 20,
    }
    assert queries.credential_stuffing(db, timedelta(hours=2), 20).sources == 3


def test_session_anomalies_count_live_sessions_only(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    busy, usual = authmodels_user_factory(), authmodels_user_factory()
    rows.sessions(db, busy, 11)
    rows.sessions(db, busy, 5, live=False)  # expired
    rows.sessions(db, busy, 5, revoked=True)
    rows.sessions(db, usual, 10)

    assert [(r.user_id, r.live_sessions) for r in call(db, "session_anomalies")] == [(busy.id, 11)]
    assert len(call(db, "session_anomalies", more_than=9)) == 2
    [aggregate] = call(db, "report_session_anomalies")
    assert (aggregate.users, aggregate.most_live_sessions, aggregate.threshold) == (1, 11, 10)
    assert [(r.live_sessions, r.users) for r in call(db, "sessions_per_user")] == [
        (10, 1),
        (11, 1),
    ]


def test_login_metrics_give_success_failure_and_lockout_rates_of_the_window(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    locked = authmodels_user_factory.batch(2)
    live = db.execute(text("SELECT count(*) FROM auth.users WHERE deleted_at IS NULL")).scalar()
    rows.login_attempts(db, 90, result="success")
    rows.login_attempts(db, 10, result="failed_password")
    rows.login_attempts(db, 50, result="failed_password", ago="2 days")  # outside the day
    for user in locked:
        rows.security_events(db, 2, "login.account_locked", "high", user=user)  # twice: once
    rows.security_events(db, 1, "login.account_locked", "high", user=locked[0], ago="3 days")

    [m] = call(db, "login_metrics")
    assert (m.attempts, m.successes, m.failures) == (100, 90, 10)
    assert (m.success_rate, m.failure_rate) == (Decimal("0.9000"), Decimal("0.1000"))
    assert (m.locked_accounts, m.live_accounts) == (2, live)
    assert m.lockout_rate == round(Decimal(2) / live, 6)
    assert call(db, "login_metrics", in_last=timedelta(days=7))[0].attempts == 150


def test_failed_logins_by_source_ranks_the_sources_and_the_report_keeps_no_hash(
    db: Session,
) -> None:
    for n, count in enumerate((5, 30, 12)):
        rows.login_attempts(db, count, ip=f"198.51.100.{n}", ago="3 hours")
    rows.login_attempts(db, 99, ip="198.51.100.200", ago="25 hours")  # before the window

    found = call(db, "failed_logins_by_source", top=2)
    assert [(r.ip_hash, r.failed_attempts) for r in found] == [
        (digest("198.51.100.1"), 30),
        (digest("198.51.100.2"), 12),
    ]
    ranked = call(db, "report_failed_logins_by_source")
    assert [tuple(r) for r in ranked] == [(1, 30, 1), (2, 12, 1), (3, 5, 1)]
    assert list(ranked[0]._fields) == ["rank", "failed_attempts", "identifiers"]


def test_time_series_have_every_bucket_of_their_window(db: Session) -> None:
    rows.login_attempts(db, 3, ago="2 hours 10 minutes")
    rows.login_attempts(db, 4, result="success", ago="2 hours 10 minutes")
    rows.security_events(db, 2, "refresh_token.reused", "high", ago="2 days")
    rows.security_events(db, 1, "webauthn.sign_count_regression", "critical")

    attempts = queries.login_attempts_over_time(db, timedelta(hours=24), timedelta(hours=1))
    assert len(attempts) in (24, 25)  # the first bucket starts before the window
    assert sum(b.failures for b in attempts) == 3 and sum(b.successes for b in attempts) == 4
    assert [b for b in attempts if b.failures] == [b for b in attempts if b.successes]

    events = queries.security_events_over_time(db, timedelta(days=7), timedelta(days=1))
    assert len(events) in (28, 32)  # every day of the window, every severity
    assert sorted((b.severity.value, b.events) for b in events if b.events) == [
        ("critical", 1),
        ("high", 2),
    ]
    summary = queries.security_events_summary(db, timedelta(days=1))
    assert [(e.severity.value, e.event_type, e.events) for e in summary] == [
        ("critical", "webauthn.sign_count_regression", 1)
    ]


def test_delivery_summary_and_sms_costs_per_currency(db: Session) -> None:
    rows.deliveries(db, "email", {"delivered": 6, "sent": 2, "failed": 1, "bounced": 1})
    rows.deliveries(db, "email", {"delivered": 50}, ago="31 days")  # last month's
    rows.deliveries(db, "sms", {"delivered": 3}, cost=Decimal("0.0075"), currency="USD")
    rows.deliveries(db, "sms", {"failed": 1, "pending": 1}, cost=Decimal("1.2"), currency="KES")
    rows.deliveries(db, "sms", {"sent": 2})  # no price reported

    summary = {(r.channel, r.status): r.messages for r in call(db, "delivery_summary")}
    assert summary == {
        ("email", "sent"): 2, ("email", "delivered"): 6, ("email", "failed"): 1,
        ("email", "bounced"): 1, ("sms", "pending"): 1, ("sms", "sent"): 2,
        ("sms", "delivered"): 3, ("sms", "failed"): 1,
    }  # fmt: skip
    assert [tuple(r) for r in call(db, "sms_costs")] == [
        ("KES", 2, Decimal("2.4000")),
        ("USD", 3, Decimal("0.0225")),
        (None, 2, None),
    ]


def test_dpop_coverage_counts_live_sessions_and_tokens_bound_to_a_key(
    db: Session, authmodels_user_factory: UserFactory
) -> None:
    user = authmodels_user_factory()
    rows.sessions(db, user, 3, dpop=True, tokens=True)
    rows.sessions(db, user, 1, tokens=True)
    rows.sessions(db, user, 4, dpop=True, revoked=True, tokens=True)  # not live
    assert {r.token_kind: (r.live, r.dpop_bound) for r in call(db, "dpop_coverage")} == {
        "session": (4, 3),
        "refresh_token": (4, 3),
        "access_token": (4, 3),
    }


def test_retention_backlog_counts_rows_past_their_window_and_those_overdue(db: Session) -> None:
    db.execute(
        text(
            "INSERT INTO auth.app_logs (message, created_at) SELECT 'old', now() - "
            "CAST(a AS interval) FROM unnest(ARRAY['89 days', '90 days 1 hour', '92 days', "
            "'93 days']) AS a"
        )
    )
    backlog = {r.policy: r for r in call(db, "retention_backlog")}
    assert (backlog["app_logs"].rows_past_window, backlog["app_logs"].rows_overdue) == (3, 2)
    assert backlog["sessions"].rows_past_window == 0
    [capped] = [r for r in call(db, "retention_backlog", at_most=2) if r.policy == "app_logs"]
    assert capped.rows_past_window == 2
    # the partitioned logs lose whole months: the cutoff is the start of a month
    assert backlog["login_attempts"].cutoff.day == 1


def test_partitions_ahead_and_rows_waiting_in_a_default_partition(db: Session) -> None:
    found = {r.table_name: r for r in call(db, "partitions_ahead")}
    assert set(found) == {"auth.audit_logs", "auth.login_attempts"}
    assert all(r.current_month and r.months_ahead >= 3 for r in found.values())
    before = found["auth.login_attempts"].default_partition_rows
    rows.login_attempts(db, 2, ago="15 years")  # a month without partition
    [after] = [r for r in call(db, "partitions_ahead") if r.table_name == "auth.login_attempts"]
    assert after.default_partition_rows == before + 2


def test_step_up_usage_of_the_window(db: Session, authmodels_user_factory: UserFactory) -> None:
    user = authmodels_user_factory()
    rows.step_up_tokens(db, user, used=3, unused_live=2, expired=1)
    rows.security_events(db, 2, "step_up.token_reused", "medium", user=user)
    [usage] = call(db, "step_up_usage")
    assert tuple(usage) == (6, 3, 1, 2)


def test_legacy_password_hashes_count_live_accounts_by_scheme(db: Session) -> None:
    rows.users_with_hashes(db, [BCRYPT, BCRYPT, "$2a$10$" + "x" * 53, ARGON2ID, "!passkey-only"])
    rows.users_with_hashes(db, ["$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA", "md5:abc"])
    rows.users_with_hashes(db, [BCRYPT], deleted=True)  # deleted accounts never log in
    assert {r.scheme: r.accounts for r in call(db, "legacy_password_hashes")} == {
        "bcrypt": 3,
        "argon2i/argon2d": 1,
        "other": 1,
    }
    plan = db.execute(
        text("EXPLAIN SELECT * FROM auth.legacy_password_hashes()")
    ).scalars().all()  # fmt: skip
    assert any("ix_users_legacy_password_hash" in line for line in plan)


def test_protection_coverage_names_what_is_not_protected(db: Session) -> None:
    covered = {r.metric: (r.covered, r.total, r.uncovered) for r in call(db, "protection_coverage")}
    assert {m: c == t and u == [] for m, (c, t, u) in covered.items()} == {
        "ip_and_user_agent_hashes": True,
        "row_level_security": True,
        "token_digests": True,
    }
    # a downstream table keeping a token and an address in clear, per user, without RLS
    db.execute(
        text(
            "CREATE TABLE auth.magic_links (id bigint PRIMARY KEY, user_id uuid, token text, "
            "ip_address inet)"
        )
    )
    after = {r.metric: r for r in call(db, "protection_coverage")}
    assert after["token_digests"].uncovered == ["magic_links.token"]
    assert after["ip_and_user_agent_hashes"].uncovered == ["magic_links.ip_address"]
    assert after["row_level_security"].uncovered == ["magic_links"]
    assert after["token_digests"].total == covered["token_digests"][1] + 1


def test_audit_coverage_finds_a_session_created_without_its_login_entry(
    db: Session, authmodels_user_factory: UserFactory, authmodels_keys: Any
) -> None:
    from authmodels.services import FlowSettings, sessions, use_settings

    use_settings(
        db,
        FlowSettings(
            hash_keys=authmodels_keys.hash_keys, encryption_keys=authmodels_keys.encryption_keys
        ),
    )
    user = authmodels_user_factory()
    sessions.create_session(db, user, ttl=timedelta(hours=1))  # audits its login
    sessions.create_session(db, user, ttl=timedelta(hours=1))
    rows.sessions(db, user, 1)  # written past the flows: no audit entry
    [coverage] = call(db, "audit_coverage")
    assert (coverage.action, coverage.performed, coverage.audited) == ("session_created", 3, 2)


@pytest.mark.parametrize(
    "function",
    [
        "brute_force", "credential_stuffing", "session_anomalies", "login_metrics",
        "failed_logins_by_source", "login_attempts_over_time", "security_events_summary",
        "security_events_over_time", "delivery_summary", "sms_costs", "retention_backlog",
        "step_up_usage", "audit_coverage",
    ],
)  # fmt: skip
def test_the_python_thresholds_are_the_databases_defaults(db: Session, function: str) -> None:
    """``Thresholds()`` passes what the functions would use unasked: one set of defaults."""
    declared = db.execute(
        text(
            "SELECT pg_get_function_arguments(p.oid) FROM pg_proc AS p "
            "WHERE p.pronamespace = 'auth'::regnamespace AND p.proname = :f"
        ),
        {"f": function},
    ).scalar_one()
    defaults = {}
    for argument in declared.split(", "):
        name, _, default = argument.partition(" DEFAULT ")
        name, kind = name.split(" ", 1)
        defaults[name] = db.execute(text(f"SELECT CAST({default} AS {kind})")).scalar_one()
    t = Thresholds()
    python = {
        "brute_force": {"in_last": t.brute_force_window, "more_than": t.brute_force_failures},
        "credential_stuffing": {
            "in_last": t.credential_stuffing_window,
            "more_than": t.credential_stuffing_identifiers,
        },
        "session_anomalies": {"more_than": t.live_sessions_per_user},
        "login_metrics": {"in_last": t.login_metrics_window},
        "failed_logins_by_source": {"in_last": t.failed_logins_window, "top": t.top_sources},
        "login_attempts_over_time": {"in_last": t.failed_logins_window, "bucket": t.login_bucket},
        "security_events_summary": {"in_last": t.events_window},
        "security_events_over_time": {"in_last": t.events_window, "bucket": t.events_bucket},
        "delivery_summary": {"in_last": t.delivery_window},
        "sms_costs": {"in_last": t.delivery_window},
        "retention_backlog": {"at_most": t.retention_count_limit, "grace": t.retention_grace},
        "step_up_usage": {"in_last": t.step_up_window},
        "audit_coverage": {"in_last": t.audit_window},
    }[function]
    assert defaults == python
