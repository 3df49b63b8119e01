"""The report as a readable table (``authmodels report``)."""

from __future__ import annotations

from collections.abc import Sequence

from authmodels.report.data import SecurityReport
from authmodels.report.thresholds import window_label

__all__ = ["render_text"]


def render_text(report: SecurityReport) -> str:
    """The report as plain text: findings first, then detections, metrics, compliance."""
    t = report.thresholds
    m = report.login_metrics
    out = [f"authmodels security report, {report.generated_at:%Y-%m-%d %H:%M:%S %Z}", ""]

    out.append(f"Findings ({len(report.findings)})")
    if report.findings:
        out += _table(
            ["severity", "check", "finding"],
            [[f.severity.value, f.check, f.summary] for f in report.findings],
        )
    else:
        out.append("  none")

    b, c, s = report.brute_force, report.credential_stuffing, report.session_anomalies
    out += ["", "Detections (seed 004)"]
    out += _table(
        ["detection", "window", "threshold", "observed", "detected"],
        [
            ["brute force: failed logins", window_label(b.window), f"> {b.threshold:,}",
             f"{b.failed_attempts:,} from {b.sources:,} sources", _yes(b.detected)],
            ["credential stuffing: identifiers per source", window_label(c.window),
             f"> {c.threshold:,}", f"{c.sources:,} sources, up to {c.most_identifiers:,}",
             _yes(c.detected)],
            ["live sessions per user", "now", f"> {s.threshold:,}",
             f"{s.users:,} users, up to {s.most_live_sessions:,}", _yes(s.detected)],
        ],
    )  # fmt: skip

    mean = report.mean_live_sessions
    out += ["", f"Key metrics (last {window_label(m.window)})"]
    out += _table(
        ["metric", "value", "seed target"],
        [
            ["authentication success rate", _pct(m.success_rate), "> 95%"],
            ["failed-login rate", _pct(m.failure_rate), "< 5%"],
            ["lockout rate (accounts locked / live accounts)", _pct(m.lockout_rate, 3), "< 1%"],
            ["live sessions per user (mean)", "n/a" if mean is None else f"{mean:.2f}", "< 5"],
            ["login attempts", f"{m.attempts:,}", ""],
            ["live accounts", f"{m.live_accounts:,}", ""],
        ],
    )

    out += ["", "Compliance (seed 000: 100% each)"]
    out += _table(
        ["metric", "value", "covered"],
        [[c.label, _pct(c.ratio), f"{c.covered:,} of {c.total:,}"] for c in report.compliance],
    )

    out += ["", f"Failed logins by source (last {window_label(t.failed_logins_window)})"]
    out += _table(
        ["rank", "failed logins", "identifiers"],
        [[f"#{r.rank}", f"{r.failed_attempts:,}", f"{r.identifiers:,}"]
         for r in report.failed_logins_by_source],
    ) or ["  none"]  # fmt: skip

    out += ["", f"Security events (last {window_label(t.events_window)})"]
    by_severity = report.events_by_severity()
    out.append(
        "  " + ", ".join(f"{sev.value} {n:,}" for sev, n in reversed(list(by_severity.items())))
    )
    out += _table(
        ["severity", "event type", "events", "last"],
        [[e.severity.value, e.event_type, f"{e.events:,}", f"{e.last_event_at:%Y-%m-%d %H:%M}"]
         for e in report.security_events],
    )  # fmt: skip

    out += ["", f"Deliveries (last {window_label(t.delivery_window)})"]
    rows = []
    for channel in ("email", "sms"):
        counts = {d.status.value: d.messages for d in report.delivery if d.channel == channel}
        detail = ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
        rows.append([channel, _pct(report.delivery_success_rate(channel)), detail])
    out += _table(["channel", "success rate", "by status"], rows)
    for cost in report.sms_costs:
        price = "no price" if cost.total_cost is None else f"{cost.total_cost:,.4f} {cost.currency}"
        out.append(f"  SMS cost: {price} for {cost.messages:,} messages")

    out += ["", "Operations"]
    st = report.step_up
    out.append(
        f"  step-up tokens (last {window_label(st.window)}): {st.issued:,} issued, "
        f"{st.used:,} used, {st.expired_unused:,} expired unused, {st.reuse_refused:,} reuses "
        "refused"
    )
    for p in report.partitions:
        waiting = "?" if p.default_partition_rows is None else f"{p.default_partition_rows:,}"
        out.append(
            f"  {p.table}: current month {'partitioned' if p.current_month else 'MISSING'}, "
            f"{p.months_ahead} month(s) ahead, {waiting} row(s) in the default partition"
        )
    legacy = ", ".join(f"{h.scheme} {h.accounts:,}" for h in report.legacy_password_hashes)
    out.append(f"  password hashes left to rehash: {legacy or 'none'}")
    backlog = [r for r in report.retention if r.rows_past_window]
    out.append(
        "  retention backlog: "
        + (", ".join(f"{r.policy} {r.rows_past_window:,}" for r in backlog) or "none")
    )
    return "\n".join(out) + "\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    widths[-1] = 0  # the last column is not padded
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return lines


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _yes(flag: bool) -> str:
    return "YES" if flag else "no"
