"""``authmodels purge`` and ``authmodels partitions``: retention of the auth tables.

Both must run as the owner of the tables: row-level security hides every row from the
application role, and they would find nothing to do.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Connection, text

from authmodels.cli.common import JSON, URL, CommandSet, Context
from authmodels.partitions import EnsuredMonth


def register(commands: CommandSet) -> None:
    """The ``purge`` and ``partitions`` commands."""
    purge = commands.command(
        "purge",
        _purge,
        help="remove what the retention policies no longer keep",
        description=(
            "Remove what auth.retention_policies no longer keeps, in batches that commit on\n"
            "their own; monthly partitions of the logs go whole. --json prints one summary."
        ),
        uses=(URL, JSON),
    )
    purge.add_argument("--dry-run", action="store_true", help="count, change nothing")
    purge.add_argument("--batch-size", type=int, default=2000, help="rows per transaction")
    purge.add_argument(
        "--only", action="append", default=None, metavar="NAME", help="this policy only"
    )
    purge.add_argument(
        "--max-duration", type=float, default=None, metavar="S", help="stop after S seconds"
    )

    parts = commands.group("partitions", help="monthly partitions of audit_logs and login_attempts")
    ensure = parts.command(
        "ensure",
        _ensure,
        help="create the coming months; move rows out of the default partitions",
        uses=(URL,),
    )
    ensure.add_argument("--months-ahead", type=int, default=3)
    parts.command("list", _list, help="the partitions and their sizes", uses=(URL,))
    parts.command("plan", _plan, help="what revision 0015 would move, month by month", uses=(URL,))


def _purge(ctx: Context) -> int:
    from authmodels.retention import PolicyReport, load_policies, purge, select_policies

    args = ctx.args
    engine = ctx.engine(pooled=True)
    try:
        with engine.connect() as conn:
            policies = select_policies(load_policies(conn), only=args.only)
        bar = ctx.progress("purge", len(policies))
        bar.update(0, "starting")
        finished: list[str] = []

        def progress(report: PolicyReport) -> None:
            if report.name not in finished and report.finished:
                finished.append(report.name)
            bar.update(
                len(finished),
                f"{report.name} {report.rows:,} rows in {report.batches:,} batches",
            )

        result = purge(
            engine,
            policies=policies,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            max_duration=timedelta(seconds=args.max_duration) if args.max_duration else None,
            on_progress=progress,
        )
    finally:
        engine.dispose()
    if ctx.json:
        print(json.dumps(result.as_dict()))
        return 0
    verb = "would remove" if result.dry_run else "removed"
    for p in result.policies:
        kept = f"{p.cutoff:%Y-%m-%d %H:%M}"
        ctx.say(f"{p.name:<28} {verb} {p.rows:>12,} rows (keeps rows newer than {kept})")
    ctx.say(
        f"total: {result.rows:,} rows in {result.seconds:.1f} s; longest batch "
        f"{result.longest_batch_seconds * 1000:.0f} ms"
        + ("" if result.finished else "; stopped by --max-duration, run again to finish")
    )
    return 0


def _ensure(ctx: Context) -> int:
    from authmodels import partitions

    engine = ctx.engine(pooled=True)
    bar = ctx.progress("partitions", None)
    bar.update(0, "finding the months that need a partition")
    count = [0]

    def month_done(table: str, month: EnsuredMonth) -> None:
        count[0] += 1
        bar.update(count[0], f"{month.name} ({month.moved:,} rows moved)")

    try:
        ensured_by_table = partitions.ensure_all(
            engine, months_ahead=ctx.args.months_ahead, on_month=month_done
        )
    finally:
        engine.dispose()
    for table, ensured in ensured_by_table.items():
        attached = [_attached(m) for m in ensured if m.attached]
        ctx.say(f"{table}: {', '.join(attached) if attached else 'nothing to create'}")
        for month in ensured:
            if not month.attached:
                ctx.say(
                    f"{table}: {month.name} is busy: left for the next run (its rows "
                    "stay in the default partition)"
                )
    return 0


def _attached(month: EnsuredMonth) -> str:
    if not month.moved:
        return month.name
    rows = f"{month.moved:,} row{'s' if month.moved > 1 else ''}"
    return f"{month.name} ({rows} from the default partition)"


def _list(ctx: Context) -> int:
    from authmodels import partitions

    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            for table in partitions.PARTITIONED_TABLES:
                if not _is_partitioned(conn, table):
                    ctx.say(f"{table}: not partitioned (revision 0015 partitions it)")
                    continue
                for p in partitions.list_partitions(conn, table):
                    state = (
                        "DETACH PENDING (purge finishes and drops it)"
                        if p.detach_pending
                        else "attached"
                        if p.attached
                        else "SPLITTING (partitions ensure finishes it)"
                        if p.splitting
                        else "DETACHED (purge drops it)"
                    )
                    ctx.say(
                        f"{p.name:<28} {p.lower:%Y-%m-%d} .. {p.upper:%Y-%m-%d}  "
                        f"~{p.rows_estimate:,} rows  {p.bytes / 1e6:,.1f} MB  {state}"
                        if p.lower and p.upper
                        else f"{p.name:<28} {state}"
                    )
                default = partitions.default_partition(conn, table)
                if default is not None:
                    held = ", ".join(f"{m:%Y-%m} ({n:,})" for m, n in default.months)
                    ctx.say(
                        f"{default.name:<28} DEFAULT  {default.rows:,} rows  "
                        f"{default.bytes / 1e6:,.1f} MB  "
                        + (
                            f"months without a partition: {held} (partitions ensure moves them)"
                            if held
                            else "empty"
                        )
                    )
    finally:
        engine.dispose()
    return 0


def _plan(ctx: Context) -> int:
    """The dry run of revision 0015: what it would move, month by month."""
    from authmodels import partitions

    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            for table in partitions.PARTITIONED_TABLES:
                if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
                    ctx.say(f"{table}: does not exist yet")
                    continue
                if _is_partitioned(conn, table):
                    ctx.say(f"{table}: already partitioned")
                    continue
                # the table is one of PARTITIONED_TABLES, never user input
                by_month = (
                    "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYYMM'), count(*) "  # noqa: S608
                    f"FROM {table} GROUP BY 1 ORDER BY 1"
                )
                planned = conn.execute(text(by_month)).all()
                total = sum(n for _, n in planned)
                name = table.split(".")[1]
                ctx.say(f"{table}: {total:,} rows would move into {len(planned)} partitions")
                for month, count in planned:
                    ctx.say(f"  {name}_p{month}  {count:>12,} rows")
    finally:
        engine.dispose()
    return 0


def _is_partitioned(conn: Connection, table: str) -> bool:
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
    ).scalar()
    return kind == "p"
