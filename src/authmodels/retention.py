"""Retention: declarative purge policies and the batched purge engine.

A :class:`Policy` names a table, the SQL condition that makes a row *expired* (in terms of a
``:cutoff`` timestamp), and how long after that point the row is still kept. :func:`purge`
removes what each policy no longer keeps, in batches:

- each batch is one call of the SQL function ``auth.purge_batch`` (revision 0029) in its own
  short transaction: one statement that picks at most ``batch_size`` expired rows with ``FOR
  UPDATE SKIP LOCKED`` and deletes them (after copying them to the policy's archive table, when
  it has one), so no lock outlives a batch;
- several workers can purge at once: a row locked by one worker is skipped by the others, so
  each expired row is removed exactly once;
- a worker killed mid-run loses at most its current batch, which rolls back whole; the next run
  finishes the job. Nothing a policy keeps is ever selected, whatever happens in between;
- memory stays flat: rows are never fetched into Python, only counted.

A policy on a partitioned table (``partitioned=True``: ``audit_logs``, ``login_attempts``) removes
whole months instead: every month that ends before the cutoff is detached, archived when the
policy has an archive, and dropped (:func:`authmodels.partitions.drop_months`). Retention there is
by month: a row stays until its whole month has passed the window. The rows of months without a
partition sit in the table's default partition (revision 0027): those go row by row, in batches
as above, by the policy's condition.

The policies of a database live in the table ``auth.retention_policies`` (revision 0016), which
both :func:`purge` (through :func:`load_policies`) and the SQL function
``auth.purge_expired_data()`` (for pg_cron) read, so the two follow the same windows; and both
remove rows and months with the same SQL functions (``auth.purge_batch``,
``auth.drop_month_partition``): there is one purge engine, in the database, which this module
drives batch by batch and pg_cron one batch per call. Change a
window with ``UPDATE auth.retention_policies SET keep_for = '60 days' WHERE name = 'sessions'``,
or for one run with ``purge(engine, policies=select_policies(load_policies(conn),
windows={"sessions": timedelta(days=60)}))``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session

from authmodels import partitions
from authmodels.errors import ConfigurationError
from authmodels.models.retention import RetentionPolicy
from authmodels.rls import require_owner

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")

#: The revision that gives both purge paths their engine, and the function it adds.
ENGINE_REVISION = "0029_one_purge_engine"
PURGE_BATCH_FUNCTION = "auth.purge_batch(regclass, text, text, timestamptz, integer, regclass)"
#: One batch: picks at most ``batch_size`` expired rows (``FOR UPDATE SKIP LOCKED``), archives
#: them when the policy archives, deletes them, in one statement; its value is the batch's size.
_PURGE_BATCH = text(
    "SELECT auth.purge_batch(CAST(:target AS regclass), CAST(:key AS text), "
    "CAST(:expired AS text), CAST(:cutoff AS timestamptz), CAST(:batch_size AS integer), "
    "CAST(:archive_to AS regclass))"
)


@dataclass(frozen=True)
class Policy:
    """What one table keeps, and for how long.

    Attributes:
        name: the policy's name (``--only`` selects by it); usually the table name.
        table: the qualified table (``auth.sessions``).
        expired: SQL condition, in terms of the bind parameter ``:cutoff``, true for rows that may
            go (e.g. ``"expires_at < :cutoff"``). It is combined with ``AND``; keep it sargable so
            a (partial) index serves it.
        keep_for: how long after the condition's timestamp a row is kept: ``cutoff = now -
            keep_for``.
        key: the primary key column the batches are picked by.
        archive_to: a table with the same columns (plus ``archived_at``) that rows are copied to
            before they are deleted, in the same statement.
        partitioned: the table is partitioned by month: whole months are dropped (a dry run
            counts their rows), then the rows of its default partition that ``expired`` selects
            are removed in batches.
    """

    name: str
    table: str
    expired: str
    keep_for: timedelta
    key: str = "id"
    archive_to: str | None = None
    partitioned: bool = False

    def __post_init__(self) -> None:
        for label, value in (("table", self.table), ("key", self.key)):
            if not _IDENTIFIER.match(value):
                raise ConfigurationError(f"policy {self.name!r}: {label} {value!r} is not a name")
        if self.archive_to is not None and not _IDENTIFIER.match(self.archive_to):
            raise ConfigurationError(f"policy {self.name!r}: archive_to is not a table name")
        if ":cutoff" not in self.expired:
            raise ConfigurationError(
                f"policy {self.name!r}: its condition must use :cutoff ({self.expired!r})"
            )
        if self.keep_for < timedelta(0):
            raise ConfigurationError(f"policy {self.name!r}: keep_for must not be negative")

    @classmethod
    def from_model(cls, stored: RetentionPolicy) -> Policy:
        """The policy a row of ``auth.retention_policies`` describes."""
        return cls(
            name=stored.name,
            table=stored.table_name,
            expired=stored.expired,
            keep_for=stored.keep_for,
            key=stored.key_column,
            archive_to=stored.archive_to,
            partitioned=stored.partitioned,
        )

    def with_window(self, keep_for: timedelta) -> Policy:
        """The same policy with another retention window."""
        return Policy(
            self.name,
            self.table,
            self.expired,
            keep_for,
            self.key,
            self.archive_to,
            self.partitioned,
        )

    def count_statement(self) -> str:
        """Counts what a purge would remove now (dry run)."""
        return f"SELECT count(*) FROM {self.table} WHERE {self.expired}"


@dataclass
class PolicyReport:
    """What :func:`purge` did for one policy."""

    name: str
    cutoff: datetime
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    finished: bool = False
    """True when no expired row was left (False when stopped by ``max_duration``)."""


@dataclass
class PurgeReport:
    """What :func:`purge` did, policy by policy."""

    dry_run: bool
    policies: list[PolicyReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows removed (or, in a dry run, that would be)."""
        return sum(p.rows for p in self.policies)

    @property
    def longest_batch_seconds(self) -> float:
        """The longest single batch transaction of the run."""
        return max((p.longest_batch_seconds for p in self.policies), default=0.0)

    @property
    def finished(self) -> bool:
        """True when every policy ran to the end."""
        return all(p.finished for p in self.policies)

    def as_dict(self) -> dict[str, object]:
        """A JSON-serialisable summary (``authmodels purge --json``)."""
        return {
            "dry_run": self.dry_run,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "longest_batch_seconds": round(self.longest_batch_seconds, 4),
            "finished": self.finished,
            "policies": [
                {
                    "name": p.name,
                    "cutoff": p.cutoff.isoformat(),
                    "rows": p.rows,
                    "batches": p.batches,
                    "seconds": round(p.seconds, 3),
                    "longest_batch_seconds": round(p.longest_batch_seconds, 4),
                    "finished": p.finished,
                }
                for p in self.policies
            ],
        }


ProgressCallback = Callable[[PolicyReport], None]


def load_policies(conn: Connection) -> list[Policy]:
    """The policies stored in ``auth.retention_policies``, in their purge order.

    Raises:
        ConfigurationError: no policy is visible: the connection's role is not the owner of the
            schema (row-level security shows the policies to the owner only), so a purge would
            silently do nothing.
    """
    with Session(bind=conn) as session:
        stored = session.scalars(
            select(RetentionPolicy).order_by(RetentionPolicy.position, RetentionPolicy.name)
        ).all()
        policies = [Policy.from_model(row) for row in stored]
    if not policies:
        role = conn.execute(text("SELECT current_user")).scalar()
        raise ConfigurationError(
            f"no retention policy is visible to role {role!r}: auth.retention_policies is read "
            "by the owner of schema auth only; run the purge as that role (or restore the "
            "policies if they were deleted)"
        )
    return policies


def select_policies(
    policies: Iterable[Policy],
    *,
    only: Sequence[str] | None = None,
    windows: dict[str, timedelta] | None = None,
) -> list[Policy]:
    """Filter policies by name and override their windows.

    Raises:
        ConfigurationError: ``only`` or ``windows`` names a policy that does not exist.
    """
    chosen = list(policies)
    names = {p.name for p in chosen}
    for name in [*(only or ()), *(windows or {})]:
        if name not in names:
            raise ConfigurationError(
                f"no retention policy is named {name!r} (there are: {', '.join(sorted(names))})"
            )
    if only:
        chosen = [p for p in chosen if p.name in only]
    if windows:
        chosen = [p.with_window(windows[p.name]) if p.name in windows else p for p in chosen]
    return chosen


def purge(
    engine: Engine,
    *,
    policies: Iterable[Policy] | None = None,
    now: datetime | None = None,
    batch_size: int = 2000,
    dry_run: bool = False,
    max_duration: timedelta | None = None,
    on_progress: ProgressCallback | None = None,
) -> PurgeReport:
    """Remove every row the policies no longer keep, batch by batch.

    Args:
        engine: the database (the purge opens one connection and commits every batch).
        policies: what to purge; by default every policy of ``auth.retention_policies``.
        now: the reference time (default: the current time); ``cutoff = now - keep_for``.
        batch_size: rows per batch transaction.
        dry_run: count what would be removed; change nothing.
        max_duration: stop starting new batches after this long (the report says what is left).
        on_progress: called after every batch with the policy's running report.

    Returns:
        What was removed, per policy, with the longest batch transaction.

    Raises:
        ConfigurationError: ``batch_size`` is below 1, the engine's role does not own schema
            ``auth`` (nothing is removed), no policy is visible to it, or (unless ``dry_run``)
            the database is below revision 0029, which gives the purge its SQL functions.
    """
    if batch_size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    now = now or datetime.now(UTC)
    deadline = time.monotonic() + max_duration.total_seconds() if max_duration is not None else None
    report = PurgeReport(dry_run=dry_run)
    started = time.perf_counter()
    with engine.connect() as conn:
        require_owner(conn, "the purge")
        if not dry_run:
            partitions.require_function(conn, PURGE_BATCH_FUNCTION, revision=ENGINE_REVISION)
        if policies is None:
            policies = load_policies(conn)
        conn.rollback()
        for policy in policies:
            cutoff = now - policy.keep_for
            result = PolicyReport(name=policy.name, cutoff=cutoff)
            report.policies.append(result)
            policy_started = time.perf_counter()
            row_policy, months_done = policy, True
            if policy.partitioned:
                months_done = deadline is None or time.monotonic() < deadline
                if months_done:
                    _drop_months(engine, policy, result, dry_run=dry_run, on_progress=on_progress)
                # the rows of months without a partition, in the default partition (0027)
                default = partitions.default_partition_table(conn, policy.table)
                conn.rollback()
                if default is None:
                    result.finished = months_done
                    result.seconds = time.perf_counter() - policy_started
                    continue
                row_policy = replace(policy, table=default)
            finished = _purge_rows(
                conn,
                row_policy,
                result,
                batch_size=batch_size,
                dry_run=dry_run,
                deadline=deadline,
                on_progress=on_progress,
            )
            result.finished = finished and months_done
            result.seconds = time.perf_counter() - policy_started
    report.seconds = time.perf_counter() - started
    return report


def _drop_months(
    engine: Engine,
    policy: Policy,
    result: PolicyReport,
    *,
    dry_run: bool,
    on_progress: ProgressCallback | None,
) -> None:
    """Remove (or count) the months of a partitioned ``policy`` past its cutoff, into ``result``."""
    months = partitions.drop_months(
        engine, policy.table, before=result.cutoff, archive_to=policy.archive_to, dry_run=dry_run
    )
    result.rows = sum(m.rows for m in months)
    result.batches = len(months)
    if on_progress is not None and months:
        on_progress(result)


def _purge_rows(
    conn: Connection,
    policy: Policy,
    result: PolicyReport,
    *,
    batch_size: int,
    dry_run: bool,
    deadline: float | None,
    on_progress: ProgressCallback | None,
) -> bool:
    """Remove ``policy``'s expired rows batch by batch, adding to ``result``; True when done."""
    cutoff = result.cutoff
    if dry_run:
        result.rows += int(
            conn.execute(text(policy.count_statement()), {"cutoff": cutoff}).scalar() or 0
        )
        conn.rollback()
        return True
    params = {
        "target": policy.table,
        "key": policy.key,
        "expired": policy.expired,
        "cutoff": cutoff,
        "batch_size": batch_size,
        "archive_to": policy.archive_to,
    }
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        batch_started = time.perf_counter()
        with conn.begin():
            removed = int(conn.execute(_PURGE_BATCH, params).scalar_one())
        elapsed = time.perf_counter() - batch_started
        if removed:
            result.rows += removed
            result.batches += 1
            result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
            if on_progress is not None:
                on_progress(result)
        if removed < batch_size:
            return True
