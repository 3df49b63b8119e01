"""Prometheus metrics of a database's security state (the ``metrics`` extra: ``prometheus_client``).

:class:`SecurityCollector` reads the ``auth.report_*`` functions of revision 0030 in one
read-only snapshot at every scrape. A service registers it in its own registry::

    from prometheus_client import CollectorRegistry, make_wsgi_app
    from authmodels.report.metrics import SecurityCollector

    registry = CollectorRegistry()
    registry.register(SecurityCollector(report_engine))
    app.mount("/metrics", make_wsgi_app(registry))

``authmodels metrics serve`` runs it behind an HTTP endpoint of its own, and ``authmodels metrics
--once`` prints it once (for node_exporter's textfile collector).

Counters count the rows written since the start of the current hour (UTC): each has a
``_created`` sample at that hour, and starts again from the rows of the new hour when it turns
-- a counter reset, which ``rate()`` and ``increase()`` handle, at the cost of the rows written
between the last scrape of an hour and its end. A counter that counted every row ever written
would go down when the retention purge removes rows; one that counted from the process's start
would differ between replicas. Derived from the database, these counters are the same whichever
replica (or ``authmodels metrics serve``) is scraped: scrape one, or aggregate with ``max``.
``authmodels_optimistic_lock_conflicts_total`` is the one counter of the process itself
(:func:`authmodels.locking.conflicts_seen`): meaningful in the service's own registry.

A scrape that cannot read the database reports ``authmodels_report_up 0`` (and logs why)
instead of failing the whole registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from authmodels.locking import conflicts_seen
from authmodels.models.enums import SecurityEventSeverity
from authmodels.report import queries
from authmodels.report.data import compliance_metrics
from authmodels.report.thresholds import Thresholds

__all__ = ["LEGACY_SCHEMES", "SecurityCollector"]

_log = logging.getLogger(__name__)

#: Schemes ``auth.legacy_password_hashes()`` names; each is exported, zero when absent.
LEGACY_SCHEMES = ("bcrypt", "argon2i/argon2d", "pbkdf2", "other")


class SecurityCollector(Collector):
    """A Prometheus collector reading the security report functions at each scrape.

    Args:
        engine: the database, as the owner or as a role the engine's login role may ``SET
            ROLE`` to (``role``).
        role: a role registered with ``auth.grant_report_role``.
        thresholds: the detections' windows and thresholds (default: the seeds').
        namespace: prefix of every metric name.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        role: str | None = None,
        thresholds: Thresholds | None = None,
        namespace: str = "authmodels",
    ) -> None:
        self.engine = engine
        self.role = role
        self.thresholds = thresholds or Thresholds()
        self.namespace = namespace

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (the registry checks names with it; no query
        runs when the collector is registered)."""
        return [_empty(kind, self._name(name), doc) for name, kind, doc, _ in _FAMILIES]

    def collect(self) -> Iterable[Metric]:
        """Read the database and return every metric family (``_up`` 0 when it cannot)."""
        started = time.perf_counter()
        try:
            families = list(self._read())
        except Exception as exc:  # a scrape answers (report_up 0) whatever went wrong
            _log.warning("authmodels metrics: the database could not be read: %s", exc)
            families, up = [], 0.0
        else:
            up = 1.0
        families.append(self._process_counter())
        families.append(GaugeMetricFamily(self._name("report_up"), _DOCS["report_up"], value=up))
        families.append(
            GaugeMetricFamily(
                self._name("report_scrape_duration_seconds"),
                _DOCS["report_scrape_duration_seconds"],
                value=time.perf_counter() - started,
            )
        )
        return families

    # --- reading ------------------------------------------------------------------------------

    def _read(self) -> Iterator[Metric]:
        t = self.thresholds
        with queries.report_transaction(self.engine, self.role) as conn:
            now, hour = conn.execute(text("SELECT now(), date_trunc('hour', now(), 'UTC')")).one()
            since_hour = now - hour
            hourly = queries.login_metrics(conn, since_hour) if since_hour else None
            events = queries.security_events_summary(conn, since_hour) if since_hour else ()
            brute = queries.brute_force(conn, t.brute_force_window, t.brute_force_failures)
            stuffing = queries.credential_stuffing(
                conn, t.credential_stuffing_window, t.credential_stuffing_identifiers
            )
            anomalies = queries.session_anomalies(conn, t.live_sessions_per_user)
            day = queries.login_metrics(conn, t.login_metrics_window)
            dpop = queries.dpop_coverage(conn)
            backlog = queries.retention_backlog(conn, t.retention_count_limit, t.retention_grace)
            partitions = queries.partitions_ahead(conn)
            legacy = queries.legacy_password_hashes(conn)
            protection = queries.protection_coverage(conn)
            audit = queries.audit_coverage(conn, t.audit_window)
        created = hour.timestamp()

        attempts = self._counter("login_attempts", ["result"])
        attempts.add_metric(["success"], hourly.successes if hourly else 0, created=created)
        attempts.add_metric(["failure"], hourly.failures if hourly else 0, created=created)
        yield attempts
        by_type: dict[str, int] = {}
        by_severity = dict.fromkeys(SecurityEventSeverity, 0)
        for e in events:
            by_type[e.event_type] = by_type.get(e.event_type, 0) + e.events
            by_severity[e.severity] += e.events
        for name, event_type in (
            ("account_lockouts", "login.account_locked"),
            ("refresh_token_reuse", "refresh_token.reused"),
        ):
            family = self._counter(name, [])
            family.add_metric([], by_type.get(event_type, 0), created=created)
            yield family
        family = self._counter("security_events", ["severity"])
        for severity, count in by_severity.items():
            family.add_metric([severity.value], count, created=created)
        yield family

        yield self._gauge("brute_force_failed_logins", brute.failed_attempts)
        yield self._gauge("credential_stuffing_sources", stuffing.sources)
        yield self._gauge("session_anomaly_users", anomalies.users)
        detections = self._gauge_family("detection_active", ["detection"])
        for name, active in (
            ("brute_force", brute.detected),
            ("credential_stuffing", stuffing.detected),
            ("session_anomalies", anomalies.detected),
        ):
            detections.add_metric([name], 1.0 if active else 0.0)
        yield detections
        yield self._gauge("live_accounts", day.live_accounts)
        live = self._gauge_family("live_tokens", ["kind"])
        bound = self._gauge_family("dpop_bound_tokens", ["kind"])
        for d in dpop:
            live.add_metric([d.token_kind], d.live)
            bound.add_metric([d.token_kind], d.dpop_bound)
        yield live
        yield bound
        past = self._gauge_family("purge_backlog_rows", ["policy"])
        overdue = self._gauge_family("purge_overdue_rows", ["policy"])
        for b in backlog:
            past.add_metric([b.policy], b.rows_past_window)
            overdue.add_metric([b.policy], b.rows_overdue)
        yield past
        yield overdue
        ahead = self._gauge_family("partitions_months_ahead", ["table"])
        waiting = self._gauge_family("default_partition_rows", ["table"])
        for p in partitions:
            ahead.add_metric([p.table], p.months_ahead)
            if p.default_partition_rows is not None:
                waiting.add_metric([p.table], p.default_partition_rows)
        yield ahead
        yield waiting
        hashes = self._gauge_family("legacy_password_hashes", ["scheme"])
        counts = {h.scheme: h.accounts for h in legacy}
        for scheme in sorted({*LEGACY_SCHEMES, *counts}):
            hashes.add_metric([scheme], counts.get(scheme, 0))
        yield hashes
        ratios = self._gauge_family("compliance_ratio", ["metric"])
        compliance = compliance_metrics(
            protection=protection, dpop=dpop, retention=backlog, audit=audit,
            legacy_password_hashes=legacy, live_accounts=day.live_accounts,
        )  # fmt: skip
        for metric in compliance:
            if metric.ratio is not None:
                ratios.add_metric([metric.name], metric.ratio)
        yield ratios

    def _process_counter(self) -> Metric:
        family = CounterMetricFamily(
            self._name("optimistic_lock_conflicts"), _DOCS["optimistic_lock_conflicts"]
        )
        family.add_metric([], conflicts_seen())
        return family

    # --- families -----------------------------------------------------------------------------

    def _name(self, name: str) -> str:
        return f"{self.namespace}_{name}" if self.namespace else name

    def _counter(self, name: str, labels: list[str]) -> CounterMetricFamily:
        return CounterMetricFamily(self._name(name), _DOCS[name], labels=labels)

    def _gauge(self, name: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name(name), _DOCS[name], value=value)

    def _gauge_family(self, name: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name(name), _DOCS[name], labels=labels)


# (name, kind, help, labels)
_FAMILIES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("login_attempts", "counter",
     "Login attempts since the start of the hour (UTC), by result.", ("result",)),
    ("account_lockouts", "counter",
     "Accounts locked (login.account_locked events) since the start of the hour (UTC).", ()),
    ("refresh_token_reuse", "counter",
     "Refresh tokens presented again (refresh_token.reused events) since the start of the "
     "hour (UTC).", ()),
    ("security_events", "counter",
     "Security events since the start of the hour (UTC), by severity.", ("severity",)),
    ("optimistic_lock_conflicts", "counter",
     "ConcurrentUpdateErrors raised by this process (authmodels.locking).", ()),
    ("brute_force_failed_logins", "gauge",
     "Failed logins in the brute-force window (seed 004: alert above 100 in 5 minutes).", ()),
    ("credential_stuffing_sources", "gauge",
     "Client addresses that tried more identifiers than the credential-stuffing threshold "
     "in its window (seed 004: 20 in an hour).", ()),
    ("session_anomaly_users", "gauge",
     "Users with more live sessions than the threshold (seed 004: 10).", ()),
    ("detection_active", "gauge", "1 while a detection fires.", ("detection",)),
    ("live_accounts", "gauge", "Accounts not deleted.", ()),
    ("live_tokens", "gauge", "Live sessions, refresh and access tokens, by kind.", ("kind",)),
    ("dpop_bound_tokens", "gauge", "Live sessions and tokens bound to a DPoP key, by kind.",
     ("kind",)),
    ("purge_backlog_rows", "gauge",
     "Rows past their retention window, per policy (counted up to a limit).", ("policy",)),
    ("purge_overdue_rows", "gauge",
     "Rows past their retention window by more than the grace, per policy.", ("policy",)),
    ("partitions_months_ahead", "gauge",
     "Consecutive months after the current one with a partition, per partitioned log.",
     ("table",)),
    ("default_partition_rows", "gauge",
     "Rows waiting in the default partition of a partitioned log.", ("table",)),
    ("legacy_password_hashes", "gauge",
     "Live accounts whose password hash is not argon2id, by scheme (rehashed at login).",
     ("scheme",)),
    ("compliance_ratio", "gauge",
     "Seed 000's success metrics, covered / total (target 1).", ("metric",)),
    ("report_up", "gauge", "1 when the last scrape could read the database.", ()),
    ("report_scrape_duration_seconds", "gauge", "How long the last scrape took.", ()),
]  # fmt: skip
_DOCS = {name: doc for name, _, doc, _ in _FAMILIES}


def _empty(kind: str, name: str, doc: str) -> Metric:
    return CounterMetricFamily(name, doc) if kind == "counter" else GaugeMetricFamily(name, doc)
