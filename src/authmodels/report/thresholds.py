"""The parameters of the report's queries: windows, thresholds and limits.

Each field is an argument of one ``auth.report_<name>()`` function of revision 0030; its default
is the default that function declares (the seeds' thresholds; a test reads them from the
catalog and compares), so ``collect(conn)`` and ``SELECT * FROM auth.brute_force()`` answer the
same question.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from authmodels.errors import InvalidInputError

__all__ = ["Thresholds", "window_label"]

#: The longest window a query accepts (the longest retention window is two years).
MAX_WINDOW = timedelta(days=3660)
#: The most buckets a time series may have.
MAX_BUCKETS = 10_000
#: Counts that must be at least 1 (the others are thresholds: "more than 0" is meaningful).
AT_LEAST_ONE = frozenset({"top_sources", "retention_count_limit"})


@dataclass(frozen=True)
class Thresholds:
    """What the report asks the database.

    Attributes:
        brute_force_window: seed 004's brute force: failed logins counted over this window...
        brute_force_failures: ...detected above this many.
        credential_stuffing_window: seed 004's credential stuffing: per client address, over
            this window...
        credential_stuffing_identifiers: ...detected above this many identifiers tried.
        live_sessions_per_user: seed 004's anomalous session count: a user above this many
            live sessions.
        login_metrics_window: success, failure and lockout rates over this window (seed 004
            states the lockout rate per day).
        failed_logins_window: seed 002's failed logins by source, over this window...
        top_sources: ...the most active sources.
        login_bucket: the failed-logins plot's bucket (over ``failed_logins_window``).
        events_window: seed 002's security events by severity, over this window...
        events_bucket: ...and the events plot's bucket.
        alert_events_window: high and critical security events over this window are findings.
        delivery_window: seed 002's delivery success and SMS cost (a month).
        retention_count_limit: rows past their retention window are counted up to this many
            per policy.
        retention_grace: rows past their window by more than this are overdue (a finding).
        step_up_window: seed 001's step-up token use, over this window.
        audit_window: audit coverage, over the sessions created in this window.
    """

    brute_force_window: timedelta = timedelta(minutes=5)
    brute_force_failures: int = 100
    credential_stuffing_window: timedelta = timedelta(hours=1)
    credential_stuffing_identifiers: int = 20
    live_sessions_per_user: int = 10
    login_metrics_window: timedelta = timedelta(days=1)
    failed_logins_window: timedelta = timedelta(hours=24)
    top_sources: int = 10
    login_bucket: timedelta = timedelta(hours=1)
    events_window: timedelta = timedelta(days=7)
    events_bucket: timedelta = timedelta(days=1)
    alert_events_window: timedelta = timedelta(days=1)
    delivery_window: timedelta = timedelta(days=30)
    retention_count_limit: int = 100_000
    retention_grace: timedelta = timedelta(days=1)
    step_up_window: timedelta = timedelta(days=1)
    audit_window: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "timedelta":
                _window(value, f.name)
            else:
                _count(value, f.name, minimum=1 if f.name in AT_LEAST_ONE else 0)
        for window, bucket in (
            ("failed_logins_window", "login_bucket"),
            ("events_window", "events_bucket"),
        ):
            if getattr(self, window) / getattr(self, bucket) > MAX_BUCKETS:
                raise InvalidInputError(
                    f"{bucket} makes more than {MAX_BUCKETS:,} buckets of {window}: choose a "
                    "longer bucket",
                    field=bucket,
                )

    def with_values(self, **values: Any) -> Thresholds:
        """A copy with some fields changed (checked as the constructor checks them).

        Raises:
            InvalidInputError: a name is not a field, or a value is refused.
        """
        names = {f.name for f in fields(self)}
        for name in values:
            if name not in names:
                raise InvalidInputError(
                    f"no threshold is named {name!r} (there are: {', '.join(sorted(names))})",
                    field=name,
                )
        return replace(self, **values)

    @staticmethod
    def field_kinds() -> dict[str, str]:
        """Each field's name and kind, ``"window"`` (a duration) or ``"count"``."""
        return {f.name: "window" if f.type == "timedelta" else "count" for f in fields(Thresholds)}


def _window(value: object, name: str) -> None:
    if not isinstance(value, timedelta):
        raise InvalidInputError(
            f"{name} must be a datetime.timedelta, not {type(value).__name__}", field=name
        )
    if not timedelta(0) < value <= MAX_WINDOW:
        raise InvalidInputError(
            f"{name} must be longer than zero and at most {MAX_WINDOW.days} days, not {value}",
            field=name,
        )


def _count(value: object, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, not {type(value).__name__}", field=name)
    if not minimum <= value <= 2**31 - 1:
        raise InvalidInputError(
            f"{name} must be between {minimum} and 2**31 - 1, not {value}", field=name
        )


def window_label(window: timedelta, *, counted: bool = False) -> str:
    """``window`` for people: ``5 minutes``, ``hour``, ``7 days`` (as in "the last ..."); with
    ``counted``, one unit keeps its number (``1 day``, as in "more than ...")."""
    seconds = int(window.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" if n == 1 and counted else unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"
