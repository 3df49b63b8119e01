"""What the report holds: one record per query of revision 0030, as the report role reads it.

No record holds an e-mail address, a user id or a keyed hash: the ``auth.report_*`` functions
return aggregates only (a credential-stuffing source is a count, a failed-login source a rank).
:class:`SecurityReport` gathers them with the findings; :meth:`SecurityReport.as_dict` is the
JSON document of ``authmodels report --json`` (durations in seconds, timestamps in ISO 8601).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from authmodels.models.enums import DeliveryStatus, SecurityEventSeverity
from authmodels.report.thresholds import Thresholds

__all__ = [
    "AttemptBucket",
    "AuditCoverage",
    "BruteForce",
    "ComplianceMetric",
    "Coverage",
    "CredentialStuffing",
    "DeliveryCount",
    "DpopCoverage",
    "EventCount",
    "Finding",
    "LegacyHashes",
    "LoginMetrics",
    "PartitionsAhead",
    "RetentionBacklog",
    "SecurityReport",
    "SessionAnomalies",
    "SeverityBucket",
    "SmsCost",
    "SourceRank",
    "StepUpUsage",
    "compliance_metrics",
]


@dataclass(frozen=True)
class BruteForce:
    """Seed 004's brute force: failed logins in the window, from how many sources."""

    window: timedelta
    threshold: int
    failed_attempts: int
    sources: int
    identifiers: int
    detected: bool


@dataclass(frozen=True)
class CredentialStuffing:
    """Seed 004's credential stuffing: client addresses that tried more identifiers than the
    threshold in the window (how many such addresses, not which)."""

    window: timedelta
    threshold: int
    sources: int
    most_identifiers: int
    attempts: int

    @property
    def detected(self) -> bool:
        """At least one address tried more identifiers than the threshold."""
        return self.sources > 0


@dataclass(frozen=True)
class SessionAnomalies:
    """Seed 004's anomalous session count: users with more live sessions than the threshold."""

    threshold: int
    users: int
    most_live_sessions: int

    @property
    def detected(self) -> bool:
        """At least one user is above the threshold."""
        return self.users > 0


@dataclass(frozen=True)
class LoginMetrics:
    """Seed 004's key metrics over the window (rates are None without attempts or accounts)."""

    window: timedelta
    attempts: int
    successes: int
    failures: int
    success_rate: float | None
    failure_rate: float | None
    locked_accounts: int
    live_accounts: int
    lockout_rate: float | None


@dataclass(frozen=True)
class SourceRank:
    """One of the sources with the most failed logins (seed 002), by rank."""

    rank: int
    failed_attempts: int
    identifiers: int


@dataclass(frozen=True)
class AttemptBucket:
    """Login attempts of one bucket of time."""

    start: datetime
    successes: int
    failures: int


@dataclass(frozen=True)
class EventCount:
    """Security events of one type in a window."""

    severity: SecurityEventSeverity
    event_type: str
    events: int
    last_event_at: datetime


@dataclass(frozen=True)
class SeverityBucket:
    """Security events of one severity in one bucket of time."""

    start: datetime
    severity: SecurityEventSeverity
    events: int


@dataclass(frozen=True)
class DeliveryCount:
    """Messages of one channel (``email``, ``sms``) in one delivery status."""

    channel: str
    status: DeliveryStatus
    messages: int


@dataclass(frozen=True)
class SmsCost:
    """Text messages of one currency and what they cost (``currency`` None: no price)."""

    currency: str | None
    messages: int
    total_cost: Decimal | None


@dataclass(frozen=True)
class DpopCoverage:
    """Live tokens of one kind and how many are DPoP-bound."""

    token_kind: str
    live: int
    dpop_bound: int


@dataclass(frozen=True)
class RetentionBacklog:
    """Rows one retention policy no longer keeps (counted up to the limit)."""

    policy: str
    table: str
    cutoff: datetime
    rows_past_window: int
    rows_overdue: int


@dataclass(frozen=True)
class PartitionsAhead:
    """The monthly partitions of one partitioned log."""

    table: str
    months_ahead: int
    current_month: bool
    default_partition_rows: int | None


@dataclass(frozen=True)
class StepUpUsage:
    """Seed 001's step-up tokens over the window."""

    window: timedelta
    issued: int
    used: int
    expired_unused: int
    reuse_refused: int


@dataclass(frozen=True)
class LegacyHashes:
    """Live accounts whose password hash is of an older scheme."""

    scheme: str
    accounts: int


@dataclass(frozen=True)
class Coverage:
    """A protection metric read from the catalog, with what it does not cover."""

    metric: str
    covered: int
    total: int
    uncovered: tuple[str, ...]


@dataclass(frozen=True)
class AuditCoverage:
    """Actions of the window and how many have their audit entry."""

    action: str
    window: timedelta
    performed: int
    audited: int


@dataclass(frozen=True)
class ComplianceMetric:
    """One of seed 000's success metrics: what is covered, of how much (target: all of it).

    Attributes:
        name: the metric's name (``token_digests``, ``dpop_bound``...).
        label: what it measures, for people.
        covered: how many are as they should be.
        total: of how many.
    """

    name: str
    label: str
    covered: int
    total: int

    @property
    def ratio(self) -> float | None:
        """``covered / total``; None when there is nothing to cover."""
        return None if self.total == 0 else self.covered / self.total


@dataclass(frozen=True)
class Finding:
    """Something the report found that someone should look at.

    Attributes:
        check: the detection or metric that found it (``brute_force``, ``token_digests``...).
        severity: how urgent it is (``authmodels report --fail-on`` compares with it).
        summary: one sentence saying what was found, against which threshold.
    """

    check: str
    severity: SecurityEventSeverity
    summary: str


@dataclass(frozen=True)
class SecurityReport:
    """The detections, key metrics, dashboard series and compliance metrics of one moment.

    Every query ran in one read-only transaction, so the figures are of one snapshot taken at
    :attr:`generated_at` (the database's clock).
    """

    generated_at: datetime
    thresholds: Thresholds
    brute_force: BruteForce
    credential_stuffing: CredentialStuffing
    session_anomalies: SessionAnomalies
    sessions_per_user: tuple[tuple[int, int], ...]
    """(live sessions, users having that many), for every count at least one user has."""
    login_metrics: LoginMetrics
    failed_logins_by_source: tuple[SourceRank, ...]
    login_attempts_over_time: tuple[AttemptBucket, ...]
    security_events: tuple[EventCount, ...]
    """Over ``thresholds.events_window``."""
    recent_security_events: tuple[EventCount, ...]
    """Over ``thresholds.alert_events_window``."""
    security_events_over_time: tuple[SeverityBucket, ...]
    delivery: tuple[DeliveryCount, ...]
    sms_costs: tuple[SmsCost, ...]
    dpop: tuple[DpopCoverage, ...]
    retention: tuple[RetentionBacklog, ...]
    partitions: tuple[PartitionsAhead, ...]
    step_up: StepUpUsage
    legacy_password_hashes: tuple[LegacyHashes, ...]
    protection: tuple[Coverage, ...]
    audit: tuple[AuditCoverage, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def mean_live_sessions(self) -> float | None:
        """Live sessions per user, among users with at least one (None: no live session)."""
        users = sum(n for _, n in self.sessions_per_user)
        sessions = sum(k * n for k, n in self.sessions_per_user)
        return None if users == 0 else sessions / users

    def delivery_success_rate(self, channel: str) -> float | None:
        """Messages of ``channel`` the provider accepted and did not report failed or bounced,
        of those no longer pending; None when there are none."""
        done = {d.status: d.messages for d in self.delivery if d.channel == channel}
        settled = sum(n for s, n in done.items() if s is not DeliveryStatus.PENDING)
        accepted = done.get(DeliveryStatus.SENT, 0) + done.get(DeliveryStatus.DELIVERED, 0)
        return None if settled == 0 else accepted / settled

    def events_by_severity(self) -> dict[SecurityEventSeverity, int]:
        """Security events of ``thresholds.events_window`` per severity (all four present)."""
        totals = dict.fromkeys(SecurityEventSeverity, 0)
        for e in self.security_events:
            totals[e.severity] += e.events
        return totals

    @property
    def compliance(self) -> tuple[ComplianceMetric, ...]:
        """Seed 000's success metrics (and the rehash progress), each with its coverage."""
        return compliance_metrics(
            protection=self.protection,
            dpop=self.dpop,
            retention=self.retention,
            audit=self.audit,
            legacy_password_hashes=self.legacy_password_hashes,
            live_accounts=self.login_metrics.live_accounts,
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``authmodels report --json``)."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        data["compliance"] = [
            {**_plain(c), "ratio": None if c.ratio is None else round(c.ratio, 6)}
            for c in self.compliance
        ]
        data["mean_live_sessions"] = self.mean_live_sessions
        data["delivery_success_rate"] = {
            channel: self.delivery_success_rate(channel) for channel in ("email", "sms")
        }
        data["sessions_per_user"] = [
            {"live_sessions": k, "users": n} for k, n in self.sessions_per_user
        ]
        return data


def compliance_metrics(
    *,
    protection: Sequence[Coverage],
    dpop: Sequence[DpopCoverage],
    retention: Sequence[RetentionBacklog],
    audit: Sequence[AuditCoverage],
    legacy_password_hashes: Sequence[LegacyHashes],
    live_accounts: int,
) -> tuple[ComplianceMetric, ...]:
    """Seed 000's success metrics from the records they are computed from (the one place the
    report and the Prometheus collector take them from)."""
    by_name = {c.metric: c for c in protection}
    metrics = [
        ComplianceMetric(
            name,
            label,
            by_name[name].covered if name in by_name else 0,
            by_name[name].total if name in by_name else 0,
        )
        for name, label in (
            ("token_digests", "token columns stored only as keyed digests"),
            ("ip_and_user_agent_hashes", "address and user-agent columns keyed-hashed"),
            ("row_level_security", "tables of per-user rows under row-level security"),
        )
    ]
    legacy = sum(h.accounts for h in legacy_password_hashes)
    metrics += [
        ComplianceMetric(
            "dpop_bound",
            "live sessions and tokens bound to a DPoP key",
            sum(d.dpop_bound for d in dpop),
            sum(d.live for d in dpop),
        ),
        ComplianceMetric(
            "retention",
            "retention policies with nothing overdue",
            sum(1 for r in retention if r.rows_overdue == 0),
            len(retention),
        ),
        ComplianceMetric(
            "audit_coverage",
            "sessions created with their audit entry",
            sum(a.audited for a in audit),
            sum(a.performed for a in audit),
        ),
        ComplianceMetric(
            "argon2id_passwords",
            "live accounts whose password hash is argon2id (or unusable)",
            max(live_accounts - legacy, 0),
            live_accounts,
        ),
    ]
    return tuple(metrics)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: durations in seconds, times in ISO 8601, enums by value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
