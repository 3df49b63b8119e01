"""Reading the report: one function per ``auth.report_*`` query of revision 0030, and
:func:`collect`, which runs them all in one snapshot and evaluates the findings.

The ``report_*`` functions run with the owner's rights and return aggregates only, so the
report runs as the owner or as a *report role* (``auth.grant_report_role``), which may execute
them and read nothing else. The application and service roles may not execute them (they run
the invoker-rights functions, ``auth.brute_force()`` and the others, which show them what
row-level security allows).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from authmodels import rls
from authmodels.errors import ReportAccessError
from authmodels.models.enums import DeliveryStatus, SecurityEventSeverity
from authmodels.report.data import (
    AttemptBucket,
    AuditCoverage,
    BruteForce,
    Coverage,
    CredentialStuffing,
    DeliveryCount,
    DpopCoverage,
    EventCount,
    LegacyHashes,
    LoginMetrics,
    PartitionsAhead,
    RetentionBacklog,
    SecurityReport,
    SessionAnomalies,
    SeverityBucket,
    SmsCost,
    SourceRank,
    StepUpUsage,
)
from authmodels.report.findings import Targets, evaluate
from authmodels.report.thresholds import Thresholds

__all__ = [
    "audit_coverage",
    "brute_force",
    "collect",
    "credential_stuffing",
    "delivery_summary",
    "dpop_coverage",
    "failed_logins_by_source",
    "legacy_password_hashes",
    "login_attempts_over_time",
    "login_metrics",
    "partitions_ahead",
    "protection_coverage",
    "report_transaction",
    "retention_backlog",
    "security_events_over_time",
    "security_events_summary",
    "session_anomalies",
    "sessions_per_user",
    "sms_costs",
    "step_up_usage",
]

#: SQLSTATEs the report turns into :class:`ReportAccessError`.
_INSUFFICIENT_PRIVILEGE = "42501"
_UNDEFINED_FUNCTION = "42883"


def _rows(conn: Connection, name: str, **arguments: Any) -> list[Any]:
    """The rows of ``auth.report_<name>(argument => value, ...)``."""
    passed = ", ".join(f"{a} => :{a}" for a in arguments)
    # the names are this module's constants, the values bound parameters
    statement = text(f"SELECT * FROM auth.report_{name}({passed})")  # noqa: S608
    return list(conn.execute(statement, arguments))


def brute_force(conn: Connection, window: timedelta, threshold: int) -> BruteForce:
    """``auth.report_brute_force``: failed logins in ``window`` against ``threshold``."""
    [row] = _rows(conn, "brute_force", in_last=window, more_than=threshold)
    return BruteForce(window, threshold, row.failed_attempts, row.sources, row.identifiers,
                      row.detected)  # fmt: skip


def credential_stuffing(conn: Connection, window: timedelta, threshold: int) -> CredentialStuffing:
    """``auth.report_credential_stuffing``: addresses that tried over ``threshold`` identifiers."""
    [row] = _rows(conn, "credential_stuffing", in_last=window, more_than=threshold)
    return CredentialStuffing(window, threshold, row.sources, row.most_identifiers, row.attempts)


def session_anomalies(conn: Connection, threshold: int) -> SessionAnomalies:
    """``auth.report_session_anomalies``: users with more than ``threshold`` live sessions."""
    [row] = _rows(conn, "session_anomalies", more_than=threshold)
    return SessionAnomalies(threshold, row.users, row.most_live_sessions)


def sessions_per_user(conn: Connection) -> tuple[tuple[int, int], ...]:
    """``auth.report_sessions_per_user``: (live sessions, users having that many)."""
    return tuple((r.live_sessions, r.users) for r in _rows(conn, "sessions_per_user"))


def login_metrics(conn: Connection, window: timedelta) -> LoginMetrics:
    """``auth.report_login_metrics``: success, failure and lockout rates over ``window``."""
    [r] = _rows(conn, "login_metrics", in_last=window)
    return LoginMetrics(
        window, r.attempts, r.successes, r.failures, _float(r.success_rate),
        _float(r.failure_rate), r.locked_accounts, r.live_accounts, _float(r.lockout_rate),
    )  # fmt: skip


def failed_logins_by_source(
    conn: Connection, window: timedelta, top: int
) -> tuple[SourceRank, ...]:
    """``auth.report_failed_logins_by_source``: the ``top`` sources, by rank."""
    rows = _rows(conn, "failed_logins_by_source", in_last=window, top=top)
    return tuple(SourceRank(r.rank, r.failed_attempts, r.identifiers) for r in rows)


def login_attempts_over_time(
    conn: Connection, window: timedelta, bucket: timedelta
) -> tuple[AttemptBucket, ...]:
    """``auth.report_login_attempts_over_time``: successes and failures per bucket."""
    rows = _rows(conn, "login_attempts_over_time", in_last=window, bucket=bucket)
    return tuple(AttemptBucket(r.bucket_start, r.successes, r.failures) for r in rows)


def security_events_summary(conn: Connection, window: timedelta) -> tuple[EventCount, ...]:
    """``auth.report_security_events_summary``: events per severity and type over ``window``."""
    rows = _rows(conn, "security_events_summary", in_last=window)
    return tuple(
        EventCount(SecurityEventSeverity(r.severity), r.event_type, r.events, r.last_event_at)
        for r in rows
    )


def security_events_over_time(
    conn: Connection, window: timedelta, bucket: timedelta
) -> tuple[SeverityBucket, ...]:
    """``auth.report_security_events_over_time``: events per bucket and severity."""
    rows = _rows(conn, "security_events_over_time", in_last=window, bucket=bucket)
    return tuple(
        SeverityBucket(r.bucket_start, SecurityEventSeverity(r.severity), r.events) for r in rows
    )


def delivery_summary(conn: Connection, window: timedelta) -> tuple[DeliveryCount, ...]:
    """``auth.report_delivery_summary``: e-mails and text messages per delivery status."""
    rows = _rows(conn, "delivery_summary", in_last=window)
    return tuple(DeliveryCount(r.channel, DeliveryStatus(r.status), r.messages) for r in rows)


def sms_costs(conn: Connection, window: timedelta) -> tuple[SmsCost, ...]:
    """``auth.report_sms_costs``: text messages and their cost, per currency."""
    rows = _rows(conn, "sms_costs", in_last=window)
    return tuple(SmsCost(r.currency, r.messages, r.total_cost) for r in rows)


def dpop_coverage(conn: Connection) -> tuple[DpopCoverage, ...]:
    """``auth.report_dpop_coverage``: live sessions and tokens, and how many are DPoP-bound."""
    return tuple(
        DpopCoverage(r.token_kind, r.live, r.dpop_bound) for r in _rows(conn, "dpop_coverage")
    )


def retention_backlog(
    conn: Connection, count_limit: int, grace: timedelta
) -> tuple[RetentionBacklog, ...]:
    """``auth.report_retention_backlog``: rows past each policy's window, and overdue."""
    rows = _rows(conn, "retention_backlog", at_most=count_limit, grace=grace)
    return tuple(
        RetentionBacklog(r.policy, r.table_name, r.cutoff, r.rows_past_window, r.rows_overdue)
        for r in rows
    )


def partitions_ahead(conn: Connection) -> tuple[PartitionsAhead, ...]:
    """``auth.report_partitions_ahead``: the monthly partitions of each partitioned log."""
    return tuple(
        PartitionsAhead(r.table_name, r.months_ahead, r.current_month, r.default_partition_rows)
        for r in _rows(conn, "partitions_ahead")
    )


def step_up_usage(conn: Connection, window: timedelta) -> StepUpUsage:
    """``auth.report_step_up_usage``: step-up tokens issued, used, expired, reused."""
    [r] = _rows(conn, "step_up_usage", in_last=window)
    return StepUpUsage(window, r.issued, r.used, r.expired_unused, r.reuse_refused)


def legacy_password_hashes(conn: Connection) -> tuple[LegacyHashes, ...]:
    """``auth.report_legacy_password_hashes``: live accounts per older hash scheme."""
    return tuple(LegacyHashes(r.scheme, r.accounts) for r in _rows(conn, "legacy_password_hashes"))


def protection_coverage(conn: Connection) -> tuple[Coverage, ...]:
    """``auth.report_protection_coverage``: token digests, keyed hashes, row-level security."""
    return tuple(
        Coverage(r.metric, r.covered, r.total, tuple(r.uncovered))
        for r in _rows(conn, "protection_coverage")
    )


def audit_coverage(conn: Connection, window: timedelta) -> tuple[AuditCoverage, ...]:
    """``auth.report_audit_coverage``: sessions created in ``window`` with their audit entry."""
    rows = _rows(conn, "audit_coverage", in_last=window)
    return tuple(AuditCoverage(r.action, window, r.performed, r.audited) for r in rows)


@contextmanager
def report_transaction(bind: Engine | Connection, role: str | None = None) -> Iterator[Connection]:
    """A read-only transaction for the report queries, as ``role`` when one is given.

    With an :class:`~sqlalchemy.engine.Engine`, a connection of its own in a ``REPEATABLE READ
    READ ONLY`` transaction (every query sees one snapshot), closed at the end. With a
    :class:`~sqlalchemy.engine.Connection`, its current transaction (one is begun if none is
    open, and left open).

    Args:
        bind: where to read.
        role: a role registered with ``auth.grant_report_role`` that the connection's login
            role may ``SET ROLE`` to (:func:`authmodels.rls.service_role` does the switch).

    Raises:
        ReportAccessError: the role may not execute the report functions, or the database is
            not at revision 0030.
    """
    with _access_errors():
        if isinstance(bind, Engine):
            with bind.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin(), rls.service_role(conn, role) if role else nullcontext():
                    yield conn
            return
        if not bind.in_transaction():
            bind.begin()
        with rls.service_role(bind, role) if role else nullcontext():
            yield bind


def collect(
    bind: Engine | Connection,
    *,
    thresholds: Thresholds | None = None,
    targets: Targets | None = None,
    role: str | None = None,
) -> SecurityReport:
    """Run every query of the report in one snapshot and evaluate the findings.

    Args:
        bind: the database: an engine (a read-only ``REPEATABLE READ`` transaction of its own)
            or a connection (its current transaction).
        thresholds: the queries' windows and thresholds (default: the seeds').
        targets: what the findings compare the metrics with (default: the seeds').
        role: ``SET ROLE`` to this report role for the transaction (see
            :func:`report_transaction`).

    Returns:
        The report, its :attr:`~SecurityReport.findings` evaluated.

    Raises:
        ReportAccessError: the role may not execute the report functions (it is neither the
            owner nor a role registered with ``auth.grant_report_role``), or the database is
            not at revision 0030.
    """
    t = thresholds or Thresholds()
    with report_transaction(bind, role) as conn:
        generated_at: datetime = conn.execute(text("SELECT now()")).scalar_one()
        report = SecurityReport(
            generated_at=generated_at,
            thresholds=t,
            brute_force=brute_force(conn, t.brute_force_window, t.brute_force_failures),
            credential_stuffing=credential_stuffing(
                conn, t.credential_stuffing_window, t.credential_stuffing_identifiers
            ),
            session_anomalies=session_anomalies(conn, t.live_sessions_per_user),
            sessions_per_user=sessions_per_user(conn),
            login_metrics=login_metrics(conn, t.login_metrics_window),
            failed_logins_by_source=failed_logins_by_source(
                conn, t.failed_logins_window, t.top_sources
            ),
            login_attempts_over_time=login_attempts_over_time(
                conn, t.failed_logins_window, t.login_bucket
            ),
            security_events=security_events_summary(conn, t.events_window),
            recent_security_events=security_events_summary(conn, t.alert_events_window),
            security_events_over_time=security_events_over_time(
                conn, t.events_window, t.events_bucket
            ),
            delivery=delivery_summary(conn, t.delivery_window),
            sms_costs=sms_costs(conn, t.delivery_window),
            dpop=dpop_coverage(conn),
            retention=retention_backlog(conn, t.retention_count_limit, t.retention_grace),
            partitions=partitions_ahead(conn),
            step_up=step_up_usage(conn, t.step_up_window),
            legacy_password_hashes=legacy_password_hashes(conn),
            protection=protection_coverage(conn),
            audit=audit_coverage(conn, t.audit_window),
        )
    return evaluate(report, targets or Targets())


@contextmanager
def _access_errors() -> Iterator[None]:
    try:
        yield
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate not in (_INSUFFICIENT_PRIVILEGE, _UNDEFINED_FUNCTION):
            raise
        diag = getattr(exc.orig, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(exc.orig)
        if sqlstate == _UNDEFINED_FUNCTION:
            raise ReportAccessError(
                f"the database has no report functions ({primary}): migrate it to revision "
                "0030_security_reports or later (authmodels db upgrade)"
            ) from None
        raise ReportAccessError(
            f"the report was refused by the database ({primary}): run it as the owner of "
            "schema auth, or as a role registered with SELECT auth.grant_report_role('<role>') "
            "(the application and service roles may not read every user's aggregates)"
        ) from None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
