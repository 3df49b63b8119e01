"""The report as one self-contained HTML page (``authmodels report --html``).

Everything is inline: the styles, and the plots as SVG drawn by :mod:`authmodels.report.svg`.
The page loads nothing (no script, font, image or style sheet from anywhere), so it can be
mailed, archived or opened on a machine with no network. Plots: failed logins over time,
security events by severity, the distribution of live sessions per user, delivery outcomes, and
a gauge per compliance metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from authmodels.models.enums import DeliveryStatus, SecurityEventSeverity
from authmodels.report import svg
from authmodels.report.data import SecurityReport
from authmodels.report.findings import worst
from authmodels.report.thresholds import window_label

__all__ = ["render_html"]

SEVERITY_COLOURS = {
    SecurityEventSeverity.LOW: "#8fb8de",
    SecurityEventSeverity.MEDIUM: "#e0a100",
    SecurityEventSeverity.HIGH: "#e0662c",
    SecurityEventSeverity.CRITICAL: "#b3261e",
}
DELIVERY_COLOURS = {
    DeliveryStatus.DELIVERED: "#2e9d5b",
    DeliveryStatus.SENT: "#8fc9a4",
    DeliveryStatus.PENDING: "#c9ced6",
    DeliveryStatus.BOUNCED: "#e0a100",
    DeliveryStatus.FAILED: "#d2453b",
}

#: The caption under each compliance gauge.
GAUGE_LABELS = {
    "token_digests": "token digests",
    "ip_and_user_agent_hashes": "IP / UA hashed",
    "row_level_security": "row-level security",
    "dpop_bound": "DPoP-bound",
    "retention": "retention on time",
    "audit_coverage": "audit coverage",
    "argon2id_passwords": "argon2id hashes",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #2b2f36; background: #f6f7f9; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 10px; }
.meta { color: #5c6370; margin-bottom: 18px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(580px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #e3e6ea; border-radius: 8px; padding: 14px 16px;
        margin-bottom: 16px; }
.gauges { display: flex; flex-wrap: wrap; gap: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3; }
th { color: #5c6370; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.sev-low { background: #6f98bf; } .sev-medium { background: #c48c00; }
.sev-high { background: #e0662c; } .sev-critical { background: #b3261e; }
.ok { color: #2e9d5b; font-weight: 600; }
"""


def render_html(report: SecurityReport) -> str:
    """The dashboard page of ``report`` (UTF-8 text, no external resource)."""
    t = report.thresholds
    top = worst(report.findings)
    status = (
        '<span class="ok">no finding</span>'
        if top is None
        else f"{len(report.findings)} finding(s), the most urgent {_badge(top)}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>authmodels security dashboard</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>authmodels security dashboard</h1>",
        f'<div class="meta">{report.generated_at:%Y-%m-%d %H:%M:%S %Z} &middot; {status}</div>',
        _card("Findings", _findings(report)),
        '<div class="grid">',
        _card(
            f"Failed logins, last {window_label(t.failed_logins_window)}",
            _failed_logins_plot(report),
        ),
        _card(
            f"Security events by severity, last {window_label(t.events_window)}",
            _events_plot(report),
        ),
        _card("Live sessions per user", _sessions_plot(report)),
        _card(
            f"Deliveries, last {window_label(t.delivery_window)}",
            _delivery_plot(report),
        ),
        "</div>",
        _card("Compliance (seed 000: 100% each)", _gauges(report)),
        '<div class="grid">',
        _card("Detections (seed 004)", _detections(report)),
        _card(f"Key metrics, last {window_label(t.login_metrics_window)}", _key_metrics(report)),
        _card(
            f"Failed logins by source, last {window_label(t.failed_logins_window)}",
            _table(
                ["rank", "failed logins", "identifiers"],
                [
                    [f"#{r.rank}", r.failed_attempts, r.identifiers]
                    for r in report.failed_logins_by_source
                ],
            ),
        ),
        _card(
            f"Security events, last {window_label(t.events_window)}",
            _table(
                ["severity", "event type", "events", "last"],
                [
                    [
                        _badge(e.severity),
                        escape(e.event_type),
                        e.events,
                        f"{e.last_event_at:%Y-%m-%d %H:%M}",
                    ]
                    for e in report.security_events
                ],
            ),
        ),
        _card("Operations", _operations(report)),
        "</div>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _card(title: str, body: str) -> str:
    return f'<section class="card"><h2>{escape(title)}</h2>{body}</section>'


def _badge(severity: SecurityEventSeverity) -> str:
    return f'<span class="sev sev-{severity.value}">{severity.value}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell:,}</td>' if isinstance(cell, int) else f"<td>{cell}</td>"
            for cell in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _findings(report: SecurityReport) -> str:
    return _table(
        ["severity", "check", "finding"],
        [[_badge(f.severity), escape(f.check), escape(f.summary)] for f in report.findings],
    )


def _failed_logins_plot(report: SecurityReport) -> str:
    buckets = report.login_attempts_over_time
    bars = [(f"{b.start:%H:%M}", (b.failures, b.successes)) for b in buckets]
    return svg.stacked_bars(
        "failed-logins",
        bars,
        [("failed", "#d2453b"), ("succeeded", "#c9d8e8")],
        label_every=max(1, len(bars) // 8),
    )


def _events_plot(report: SecurityReport) -> str:
    order = list(SecurityEventSeverity)
    per_bucket: dict[str, list[float]] = {}
    for b in report.security_events_over_time:
        values = per_bucket.setdefault(f"{b.start:%m-%d}", [0.0] * len(order))
        values[order.index(b.severity)] += b.events
    return svg.stacked_bars(
        "security-events",
        list(per_bucket.items()),
        [(s.value, SEVERITY_COLOURS[s]) for s in order],
        label_every=max(1, len(per_bucket) // 10),
    )


def _sessions_plot(report: SecurityReport) -> str:
    counts = dict(report.sessions_per_user)
    top = max(counts, default=0)
    bars: list[svg.Bar] = [(str(k), (float(counts.get(k, 0)),)) for k in range(1, min(top, 20) + 1)]
    if top > 20:
        bars.append(("21+", (float(sum(n for k, n in counts.items() if k > 20)),)))
    mean = report.mean_live_sessions
    caption = "no live session" if mean is None else f"mean {mean:.2f} live sessions per user"
    return (
        svg.stacked_bars(
            "sessions-per-user",
            bars,
            [("users having that many live sessions (log scale)", "#5b7fbf")],
            log_scale=True,
        )
        + f"<p>{escape(caption)}</p>"
    )


def _delivery_plot(report: SecurityReport) -> str:
    order = [DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.PENDING,
             DeliveryStatus.SENT, DeliveryStatus.DELIVERED]  # fmt: skip
    bars = []
    for channel in ("email", "sms"):
        counts = {d.status: d.messages for d in report.delivery if d.channel == channel}
        bars.append((channel, tuple(float(counts.get(s, 0)) for s in order)))
    rates = ", ".join(
        f"{channel} {rate:.1%}" if (rate := report.delivery_success_rate(channel)) is not None
        else f"{channel} n/a"
        for channel in ("email", "sms")
    )  # fmt: skip
    costs = "; ".join(
        f"{c.total_cost:,.2f} {c.currency} for {c.messages:,}" if c.currency
        else f"{c.messages:,} without a price"
        for c in report.sms_costs
    )  # fmt: skip
    return (
        svg.stacked_bars(
            "delivery", bars, [(s.value, DELIVERY_COLOURS[s]) for s in order], height=220
        )
        + f"<p>success rate: {escape(rates)}</p><p>SMS cost: {escape(costs or 'none')}</p>"
    )


def _gauges(report: SecurityReport) -> str:
    gauges = "".join(
        svg.gauge(f"gauge-{c.name}", c.ratio, GAUGE_LABELS.get(c.name, c.name), size=160)
        for c in report.compliance
    )
    rows = [
        [escape(c.label), "n/a" if c.ratio is None else f"{c.ratio:.1%}", c.covered, c.total]
        for c in report.compliance
    ]
    return f'<div class="gauges">{gauges}</div>' + _table(
        ["metric", "value", "covered", "of"], rows
    )


def _detections(report: SecurityReport) -> str:
    b, c, s = report.brute_force, report.credential_stuffing, report.session_anomalies
    return _table(
        ["detection", "window", "threshold", "observed", "detected"],
        [
            ["brute force: failed logins", window_label(b.window), f"&gt; {b.threshold:,}",
             f"{b.failed_attempts:,} from {b.sources:,} sources", _yes(b.detected)],
            ["credential stuffing: identifiers per source", window_label(c.window),
             f"&gt; {c.threshold:,}", f"{c.sources:,} sources, up to {c.most_identifiers:,}",
             _yes(c.detected)],
            ["live sessions per user", "now", f"&gt; {s.threshold:,}",
             f"{s.users:,} users, up to {s.most_live_sessions:,}", _yes(s.detected)],
        ],
    )  # fmt: skip


def _key_metrics(report: SecurityReport) -> str:
    m = report.login_metrics
    mean = report.mean_live_sessions
    return _table(
        ["metric", "value", "seed target"],
        [
            ["authentication success rate", _pct(m.success_rate), "&gt; 95%"],
            ["failed-login rate", _pct(m.failure_rate), "&lt; 5%"],
            ["lockout rate", _pct(m.lockout_rate, 3), "&lt; 1% a day"],
            ["live sessions per user (mean)", "n/a" if mean is None else f"{mean:.2f}", "&lt; 5"],
            ["login attempts", m.attempts, ""],
            ["live accounts", m.live_accounts, ""],
        ],
    )


def _operations(report: SecurityReport) -> str:
    st = report.step_up
    rows: list[list[object]] = [
        [f"step-up tokens issued, last {window_label(st.window)}", st.issued],
        ["step-up tokens used", st.used],
        ["step-up tokens expired unused", st.expired_unused],
        ["step-up token reuses refused", st.reuse_refused],
    ]
    for p in report.partitions:
        rows.append([f"{escape(p.table)}: months partitioned ahead", p.months_ahead])
        if p.default_partition_rows is not None:
            rows.append([f"{escape(p.table)}: rows in the default partition",
                         p.default_partition_rows])  # fmt: skip
    for h in report.legacy_password_hashes:
        rows.append([f"{escape(h.scheme)} password hashes left to rehash", h.accounts])
    for r in report.retention:
        if r.rows_past_window:
            rows.append([f"{escape(r.policy)}: rows past the retention window",
                         r.rows_past_window])  # fmt: skip
    return _table(["", "count"], rows)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _yes(flag: bool) -> str:
    return "<strong>YES</strong>" if flag else "no"
