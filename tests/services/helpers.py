"""Assertions the flow tests share: table snapshots, audit entries, raw secrets at rest."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

#: The tables the flows write.
FLOW_TABLES = ("sessions", "refresh_tokens", "access_tokens", "device_flows", "dpop_jtis")


def snapshot(db: Session, *tables: str) -> dict[str, list[str]]:
    """Every row of ``tables`` as text, sorted: equal snapshots mean nothing was written."""
    return {
        table: sorted(db.execute(text(f"SELECT t::text FROM auth.{table} AS t")).scalars())
        for table in tables or FLOW_TABLES
    }


def audit_events(db: Session, user_id: uuid.UUID | None = None) -> list[tuple[str, str]]:
    """(event_type, event_status) of the audit entries (of one user), oldest first.

    In one transaction `created_at` is the transaction's time for every entry: they are ordered
    by the id of the (sub)transaction that wrote them, which grows with each SAVEPOINT, then by
    their place in the table (a rolled-back SAVEPOINT's space may be reused, so the place alone
    does not tell the order).
    """
    where = "" if user_id is None else "WHERE user_id = :u"
    return [
        (row.event_type, row.event_status)
        for row in db.execute(
            text(
                "SELECT event_type, event_status FROM auth.audit_logs "
                f"{where} ORDER BY created_at, xmin::text::bigint, ctid"
            ),
            {"u": user_id},
        )
    ]


def count(db: Session, table: str, where: str = "true", **params: object) -> int:
    """Rows of ``auth.<table>`` matching ``where``."""
    return int(
        db.execute(
            text(f"SELECT count(*) FROM auth.{table} WHERE {where}"),
            params,
        ).scalar_one()
    )


def assert_no_raw_values(db: Session, raws: Iterable[str], tables: Iterable[str] = ()) -> None:
    """No raw token or code appears in any column of ``tables`` (text, bytea or JSON).

    Each row is read whole as text (``t::text``: text columns as they are, bytea as hex, JSONB
    as JSON), and searched for each raw value, as text and as the hex of its UTF-8 bytes.
    """
    raws = [r for r in raws if r]
    assert raws, "nothing to look for"
    for table in [*(tables or FLOW_TABLES), "audit_logs"]:
        for row in db.execute(text(f"SELECT t::text FROM auth.{table} AS t")).scalars():
            for raw in raws:
                assert raw not in row, f"a raw value is stored in auth.{table}: {row[:120]}"
                assert raw.encode().hex() not in row, f"a raw value is stored in auth.{table}"


_WRITES = text(
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_all_tables "
    "WHERE schemaname = 'auth'"
)


def writes(db: Session) -> int:
    """Rows inserted, updated or deleted in schema ``auth`` so far by this transaction.

    PostgreSQL counts every attempted write, including those of rolled-back SAVEPOINTs and
    those committed by a flow inside the test's outer transaction: equal counts before and after
    a call mean the call wrote nothing at all.
    """
    return int(db.execute(_WRITES).scalar_one())


def race(threads: int, attempt: Callable[[int], object]) -> list[object]:
    """Run ``attempt(i)`` in ``threads`` threads released together; each outcome (its return
    value, or the exception it raised) by index. Each attempt opens its own session, so each
    runs on its own connection."""
    barrier = threading.Barrier(threads)
    outcomes: list[object] = [None] * threads

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = attempt(index)
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "an attempt did not finish"
    return outcomes
