"""The findings: which figures of a report someone should look at, and how urgently.

=============================  ========  ====================================================
check                          severity  found when
=============================  ========  ====================================================
``brute_force``                critical  more failed logins in the window than the threshold
``credential_stuffing``        critical  an address tried more identifiers than the threshold
``session_anomalies``          high      a user has more live sessions than the threshold
``security_events``            as event  a ``high`` or ``critical`` security event in the
                                         alert window (one finding per severity)
``lockout_rate``               medium    more live accounts locked in the window than
                                         ``Targets.max_lockout_rate`` of them
``login_success_rate``         medium    below ``Targets.min_success_rate``, from
                                         ``Targets.min_attempts`` attempts on
``mean_live_sessions``         low       above ``Targets.max_mean_live_sessions``
``token_digests``              critical  a token column not guarded as a keyed digest
``ip_and_user_agent_hashes``   critical  an address or user-agent column not a keyed hash
``row_level_security``         critical  a table of per-user rows without row-level security
``partitions``                 high      the current month has no partition of a log;
                               medium    no month ahead has one; ``low``: rows wait in a
                                         default partition
``retention``                  medium    rows past their window by more than the grace
``audit_coverage``             medium    a session created without its audit entry
``dpop_bound``                 low       a live session or token not DPoP-bound
``argon2id_passwords``         low       live accounts with an older password hash
=============================  ========  ====================================================

The targets are seed 004's ("authentication success rate > 95%", "account lockout rate < 1% of
users/day", "active sessions/user < 5") and seed 000's (100% of each success metric).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from authmodels.errors import InvalidInputError
from authmodels.models.enums import SecurityEventSeverity as Severity
from authmodels.report.data import Finding, SecurityReport
from authmodels.report.thresholds import window_label as _span

__all__ = ["SEVERITY_ORDER", "Targets", "at_least", "evaluate", "worst"]

#: Severities from the least to the most urgent.
SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)

#: Severity of a finding on each compliance metric below 100%.
COMPLIANCE_SEVERITY = {
    "token_digests": Severity.CRITICAL,
    "ip_and_user_agent_hashes": Severity.CRITICAL,
    "row_level_security": Severity.CRITICAL,
    "audit_coverage": Severity.MEDIUM,
    "dpop_bound": Severity.LOW,
    "argon2id_passwords": Severity.LOW,
}


@dataclass(frozen=True)
class Targets:
    """What the key metrics are compared with (seed 004's targets).

    Attributes:
        min_success_rate: authentication success rate below this is a finding...
        min_attempts: ...judged from this many attempts in the window on (fewer say little).
        max_lockout_rate: accounts locked in the window, as a share of live accounts.
        max_mean_live_sessions: live sessions per user (among users with one).
    """

    min_success_rate: float = 0.95
    min_attempts: int = 100
    max_lockout_rate: float = 0.01
    max_mean_live_sessions: float = 5.0

    def __post_init__(self) -> None:
        for name in ("min_success_rate", "max_lockout_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidInputError(f"{name} must be a share between 0 and 1", field=name)
        if isinstance(self.min_attempts, bool) or not isinstance(self.min_attempts, int):
            raise InvalidInputError("min_attempts must be an int", field="min_attempts")
        if self.min_attempts < 0:
            raise InvalidInputError("min_attempts must not be negative", field="min_attempts")
        value = self.max_mean_live_sessions
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidInputError(
                "max_mean_live_sessions must be a non-negative number",
                field="max_mean_live_sessions",
            )


def at_least(severity: Severity, level: Severity) -> bool:
    """Whether ``severity`` is ``level`` or more urgent."""
    return SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(level)


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The most urgent severity among ``findings`` (None when there is none)."""
    return max((f.severity for f in findings), key=SEVERITY_ORDER.index, default=None)


def evaluate(report: SecurityReport, targets: Targets) -> SecurityReport:
    """``report`` with its findings, the most urgent first."""
    found = [*_detections(report), *_key_metrics(report, targets), *_compliance(report)]
    found.sort(key=lambda f: -SEVERITY_ORDER.index(f.severity))
    return dataclasses.replace(report, findings=tuple(found))


def _detections(r: SecurityReport) -> Iterable[Finding]:
    t = r.thresholds
    b = r.brute_force
    if b.detected:
        yield Finding(
            "brute_force", Severity.CRITICAL,
            f"{b.failed_attempts:,} failed logins in the last {_span(b.window)} (threshold "
            f"{b.threshold:,}), from {b.sources:,} source(s) against {b.identifiers:,} "
            "identifier(s)",
        )  # fmt: skip
    c = r.credential_stuffing
    if c.detected:
        yield Finding(
            "credential_stuffing", Severity.CRITICAL,
            f"{c.sources:,} source(s) tried more than {c.threshold:,} identifiers each in the "
            f"last {_span(c.window)} (up to {c.most_identifiers:,}; {c.attempts:,} attempts): "
            "auth.credential_stuffing(), run by the owner, names them",
        )  # fmt: skip
    s = r.session_anomalies
    if s.detected:
        yield Finding(
            "session_anomalies", Severity.HIGH,
            f"{s.users:,} user(s) with more than {s.threshold:,} live sessions (up to "
            f"{s.most_live_sessions:,}): auth.session_anomalies(), run by the owner, names them",
        )  # fmt: skip
    for severity in (Severity.CRITICAL, Severity.HIGH):
        events = [e for e in r.recent_security_events if e.severity is severity]
        if events:
            kinds = ", ".join(f"{e.event_type} x{e.events:,}" for e in events)
            yield Finding(
                "security_events", severity,
                f"{sum(e.events for e in events):,} {severity.value} security event(s) in the "
                f"last {_span(t.alert_events_window)}: {kinds}",
            )  # fmt: skip


def _key_metrics(r: SecurityReport, targets: Targets) -> Iterable[Finding]:
    m = r.login_metrics
    window = _span(m.window)
    if (
        m.success_rate is not None
        and m.attempts >= targets.min_attempts
        and m.success_rate < targets.min_success_rate
    ):
        yield Finding(
            "login_success_rate", Severity.MEDIUM,
            f"authentication success rate {m.success_rate:.1%} over the last {window} (target "
            f"above {targets.min_success_rate:.0%}; {m.failures:,} failed of {m.attempts:,})",
        )  # fmt: skip
    if m.lockout_rate is not None and m.lockout_rate > targets.max_lockout_rate:
        yield Finding(
            "lockout_rate", Severity.MEDIUM,
            f"{m.locked_accounts:,} account(s) locked over the last {window}, "
            f"{m.lockout_rate:.2%} of {m.live_accounts:,} (target below "
            f"{targets.max_lockout_rate:.0%})",
        )  # fmt: skip
    mean = r.mean_live_sessions
    if mean is not None and mean > targets.max_mean_live_sessions:
        yield Finding(
            "mean_live_sessions", Severity.LOW,
            f"{mean:.1f} live sessions per user on average (target below "
            f"{targets.max_mean_live_sessions:g})",
        )  # fmt: skip


def _compliance(r: SecurityReport) -> Iterable[Finding]:
    for metric in r.compliance:
        if metric.name == "retention" or metric.ratio is None or metric.ratio >= 1:
            continue
        missing = metric.total - metric.covered
        detail = next((", ".join(c.uncovered) for c in r.protection if c.metric == metric.name), "")
        yield Finding(
            metric.name, COMPLIANCE_SEVERITY[metric.name],
            f"{metric.ratio:.1%} of {metric.label} ({missing:,} of {metric.total:,} not)"
            + (f": {detail}" if detail else ""),
        )  # fmt: skip
    overdue = [b for b in r.retention if b.rows_overdue > 0]
    if overdue:
        shown = ", ".join(
            f"{b.policy} {_at_least(b.rows_overdue, r.thresholds.retention_count_limit)}"
            for b in overdue
        )
        yield Finding(
            "retention", Severity.MEDIUM,
            f"rows past their retention window by more than "
            f"{_span(r.thresholds.retention_grace, counted=True)}: {shown} (is authmodels purge "
            "running?)",
        )  # fmt: skip
    for p in r.partitions:
        if not p.current_month:
            yield Finding(
                "partitions", Severity.HIGH,
                f"{p.table} has no partition for the current month: its rows go to the default "
                "partition (authmodels partitions ensure)",
            )  # fmt: skip
        elif p.months_ahead < 1:
            yield Finding(
                "partitions", Severity.MEDIUM,
                f"{p.table} has no partition for next month (authmodels partitions ensure)",
            )  # fmt: skip
        if p.default_partition_rows:
            yield Finding(
                "partitions", Severity.LOW,
                f"{p.default_partition_rows:,} row(s) of {p.table} wait in its default "
                "partition (authmodels partitions ensure moves them to their months)",
            )  # fmt: skip


def _at_least(count: int, limit: int) -> str:
    return f"{count:,}+" if count >= limit else f"{count:,}"
