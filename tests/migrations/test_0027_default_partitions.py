"""0027: a row of a month without a partition lands in the default partition, and a later
``ensure`` moves it to its own month, without losing, doubling or refusing any row."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from authmodels import partitions
from authmodels.cli import main
from authmodels.db import libpq_url
from authmodels.errors import InvalidCredentialsError
from authmodels.retention import load_policies, purge, select_policies
from authmodels.services import FlowSettings, audit, passwords, use_settings
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER, UserFactory
from authmodels.testing.migrations import MigrationRunner
from authmodels.testing.plugin import TestKeys
from tests.migrations.helpers import application_role, drop_role
from tests.migrations.migration_helpers import previous, schema_objects

REVISION = "0027_default_partitions"
LOGS = ("audit_logs", "login_attempts")
#: A well-formed keyed digest (version 1, key id "k", 32 bytes): login_attempts checks the shape.
DIGEST = "\\x01016b" + "ab" * 32


def _month(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=min(moment.day, 28))


def _where(conn: Any, table: str) -> dict[str, str]:
    """id -> the partition each row of ``auth.<table>`` sits in."""
    return {
        str(row_id): str(part)
        for row_id, part in conn.execute(
            text(f"SELECT id, tableoid::regclass::text FROM auth.{table}")
        ).all()
    }


def _insert(conn: Any, table: str, at: datetime, **values: Any) -> str:
    if table == "audit_logs":
        sql = (
            "INSERT INTO auth.audit_logs (event_type, details, created_at) "
            "VALUES ('login', CAST(:details AS jsonb), :at) RETURNING id"
        )
        params = {"details": values.get("details", "{}"), "at": at}
    else:
        sql = (
            "INSERT INTO auth.login_attempts (identifier_hash, attempt_result, created_at) "
            f"VALUES ('{DIGEST}', 'failed_password', :at) RETURNING id"
        )
        params = {"at": at}
    return str(conn.execute(text(sql), params).scalar_one())


# --- rows of months without a partition ------------------------------------------------------


def test_rows_six_months_ahead_and_two_years_back_land_then_ensure_moves_them_to_their_months(
    authmodels_fresh_engine: Engine,
) -> None:
    engine = authmodels_fresh_engine
    now = datetime.now(UTC)
    ahead, back = _add_months(now, 6), _add_months(now, -24)
    ids: dict[str, dict[str, datetime]] = {table: {} for table in LOGS}
    with engine.begin() as conn:
        for table in LOGS:
            for at in (ahead, back, now):
                ids[table][_insert(conn, table, at)] = at
        before = {
            table: sorted(conn.execute(text(f"SELECT t::text FROM auth.{table} t")).scalars())
            for table in LOGS
        }
        for table in LOGS:
            where = _where(conn, table)
            for row_id, at in ids[table].items():
                expected = f"auth.{table}_p{at:%Y%m}" if at == now else f"auth.{table}_default"
                assert where[row_id] == expected

    ensured = partitions.ensure_all(engine)

    for table in LOGS:
        created = {m.name: m.moved for m in ensured[f"auth.{table}"]}
        assert created[f"{table}_p{ahead:%Y%m}"] == 1
        assert created[f"{table}_p{back:%Y%m}"] == 1
        assert all(m.attached for m in ensured[f"auth.{table}"])
    with engine.connect() as conn:
        for table in LOGS:
            where = _where(conn, table)
            assert {where[row_id] for row_id in ids[table]} == {
                f"auth.{table}_p{at:%Y%m}" for at in ids[table].values()
            }
            after = sorted(conn.execute(text(f"SELECT t::text FROM auth.{table} t")).scalars())
            assert after == before[table]  # the same rows, unchanged, each once
            assert conn.execute(text(f"SELECT count(*) FROM auth.{table}_default")).scalar() == 0
            # a split month is an ordinary partition: sealed, its CHECK of the split gone
            month = f"auth.{table}_p{back:%Y%m}"
            assert conn.execute(
                text(
                    "SELECT relrowsecurity, relacl IS NULL, "
                    "(SELECT count(*) FROM pg_constraint WHERE conrelid = c.oid "
                    " AND conname LIKE 'ck\\_%\\_month') FROM pg_class c "
                    "WHERE oid = CAST(:m AS regclass)"
                ),
                {"m": month},
            ).one() == (True, True, 0)
    assert all(months == [] for months in partitions.ensure_all(engine).values())


def test_the_sql_ensure_function_moves_them_too_in_the_callers_transaction(
    authmodels_fresh_engine: Engine,
) -> None:
    far = datetime(2031, 5, 5, 10, tzinfo=UTC)
    with authmodels_fresh_engine.begin() as conn:
        row = _insert(conn, "audit_logs", far)
        assert partitions.ensure(conn, "auth.audit_logs", months_ahead=3) == ["audit_logs_p203105"]
        assert _where(conn, "audit_logs")[row] == "auth.audit_logs_p203105"
        assert partitions.ensure(conn, "auth.audit_logs", months_ahead=3) == []


@pytest.fixture
def without_this_month(authmodels_fresh_engine: Engine) -> Engine:
    """A fresh database whose logs have no partition for the current month (nobody ran
    ``ensure`` before the month began)."""
    month = f"{datetime.now(UTC):%Y%m}"
    with authmodels_fresh_engine.begin() as conn:
        for table in LOGS:
            conn.execute(text(f"ALTER TABLE auth.{table} DETACH PARTITION auth.{table}_p{month}"))
            conn.execute(text(f"DROP TABLE auth.{table}_p{month}"))
    return authmodels_fresh_engine


def test_the_flows_writers_land_when_this_month_has_no_partition(
    without_this_month: Engine, authmodels_keys: TestKeys
) -> None:
    settings = FlowSettings(
        hash_keys=authmodels_keys.hash_keys,
        encryption_keys=authmodels_keys.encryption_keys,
        password_hasher=TEST_PASSWORD_HASHER,
    )
    engine = without_this_month
    with use_settings(Session(engine), settings) as db:
        user = UserFactory(db)()
        audit.record(db, "password_change", user_id=user.id, details={"by": "test"})
        db.commit()
        passwords.authenticate(db, user.email, DEFAULT_PASSWORD, ip="203.0.113.7", user_agent="t")
        db.commit()
        with pytest.raises(InvalidCredentialsError):
            passwords.authenticate(db, user.email, "wrong", ip="203.0.113.7", user_agent="t")
        user_id = user.id

    month = f"{datetime.now(UTC):%Y%m}"
    with engine.connect() as conn:
        for table, rows in (("audit_logs", 1), ("login_attempts", 2)):
            placed = conn.execute(
                text(f"SELECT tableoid::regclass::text FROM auth.{table} WHERE user_id = :u"),
                {"u": user_id},
            ).scalars()
            assert list(placed) == [f"auth.{table}_default"] * rows

    assert main(["partitions", "ensure", "--url", libpq_url(engine.url)]) == 0
    with engine.connect() as conn:
        for table, rows in (("audit_logs", 1), ("login_attempts", 2)):
            placed = conn.execute(
                text(f"SELECT tableoid::regclass::text FROM auth.{table} WHERE user_id = :u"),
                {"u": user_id},
            ).scalars()
            assert list(placed) == [f"auth.{table}_p{month}"] * rows


def test_partitions_list_and_ensure_name_the_rows_of_the_default_partition(
    authmodels_fresh_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    url = libpq_url(authmodels_fresh_engine.url)
    with authmodels_fresh_engine.begin() as conn:
        for at in ("2024-12-03 10:00+00", "2024-12-04 10:00+00", "2032-01-01 00:00+00"):
            _insert(conn, "audit_logs", datetime.fromisoformat(at))
    assert main(["partitions", "list", "--url", url]) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if "audit_logs_default" in ln]
    assert " 3 rows " in line
    assert "months without a partition: 2024-12 (2), 2032-01 (1)" in line
    assert main(["partitions", "ensure", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "audit_logs_p202412 (2 rows from the default partition)" in out
    assert "audit_logs_p203201 (1 row from the default partition)" in out
    assert main(["partitions", "list", "--url", url]) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if "audit_logs_default" in ln]
    assert line.endswith("empty")


# --- a split under concurrent writes ---------------------------------------------------------


def test_rows_written_during_a_split_are_neither_lost_nor_doubled_nor_refused(
    authmodels_fresh_engine: Engine,
) -> None:
    """Writers insert into the month being split, into another month without a partition and
    into this month, while others update and delete rows of the split month, on their own
    connections, during the whole of ``ensure_all`` (batched copy, then the final transaction)."""
    engine = authmodels_fresh_engine
    now = datetime.now(UTC)
    month = _month(_add_months(now, 9))
    other = _month(_add_months(now, 40))
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    with engine.begin() as conn:
        seeded = [
            str(r)
            for r in conn.execute(
                text(
                    "INSERT INTO auth.audit_logs (event_type, details, created_at) "
                    "SELECT 'login', jsonb_build_object('seed', g), "
                    "CAST(:m AS timestamptz) + g * interval '1 minute' "
                    "FROM generate_series(1, 6000) g RETURNING id"
                ),
                {"m": start},
            ).scalars()
        ]
    conninfo = libpq_url(engine.url)
    stop = threading.Event()
    inserted: list[str] = []
    updated: dict[str, int] = {}
    deleted: set[str] = set()
    errors: list[BaseException] = []
    guard = threading.Lock()

    def insert(at: Any) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.is_set():
                moment = at() if callable(at) else at
                row = conn.execute(
                    "INSERT INTO auth.audit_logs (event_type, created_at) "
                    "VALUES ('logout', %s) RETURNING id",
                    (moment,),
                ).fetchone()
                assert row is not None
                with guard:
                    inserted.append(str(row[0]))

    def update_and_delete(seed: int) -> None:
        # each worker its own rows: the last value it wrote to a row is the row's last value
        mine, pick = seeded[seed::2], random.Random(seed)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            version = 0
            while not stop.is_set():
                version += 1
                target = pick.choice(mine)
                if version % 5 == 0:
                    gone = conn.execute(
                        "DELETE FROM auth.audit_logs WHERE id = %s", (target,)
                    ).rowcount
                    if gone:
                        with guard:
                            deleted.add(target)
                else:
                    done = conn.execute(
                        "UPDATE auth.audit_logs SET details = jsonb_build_object('v', %s) "
                        "WHERE id = %s",
                        (version * 10 + seed, target),
                    ).rowcount
                    if done:
                        with guard:
                            updated[target] = version * 10 + seed

    def guarded(work: Any, *args: Any) -> None:
        try:
            work(*args)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def in_month() -> datetime:
        return start + timedelta(minutes=random.randint(0, 40_000))

    workers = [
        threading.Thread(target=guarded, args=(insert, in_month)),
        threading.Thread(target=guarded, args=(insert, in_month)),
        threading.Thread(
            target=guarded, args=(insert, datetime(other.year, other.month, 2, tzinfo=UTC))
        ),
        threading.Thread(target=guarded, args=(insert, now)),
        threading.Thread(target=guarded, args=(update_and_delete, 0)),
        threading.Thread(target=guarded, args=(update_and_delete, 1)),
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.3)
        ensured = partitions.ensure_all(engine, tables=["auth.audit_logs"], batch_size=1000)
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert not errors, errors
    split = {m.name: m for m in ensured["auth.audit_logs"]}
    assert split[f"audit_logs_p{month:%Y%m}"].attached
    assert len(inserted) > 100

    with engine.connect() as conn:
        doubled = conn.execute(
            text("SELECT id FROM auth.audit_logs GROUP BY id HAVING count(*) > 1")
        ).all()
        assert doubled == []
        where = _where(conn, "audit_logs")
        assert set(inserted) <= set(where)  # every committed insert is there
        assert not deleted & set(where)  # no deleted row came back
        assert set(seeded) - deleted <= set(where)
        details = dict(
            conn.execute(
                text(
                    "SELECT id::text, (details->>'v')::int FROM auth.audit_logs WHERE id = ANY(:i)"
                ),
                {"i": list(updated)},
            ).all()
        )
        for row_id, version in updated.items():
            if row_id not in deleted:
                assert details[row_id] == version  # the last update, not an older copy
        in_default = conn.execute(
            text(
                "SELECT count(*) FROM auth.audit_logs_default "
                "WHERE created_at >= :m AND created_at < :n"
            ),
            {"m": start, "n": _add_months(start, 1)},
        ).scalar()
        assert in_default == 0
        assert conn.execute(
            text(f"SELECT count(*) FROM auth.audit_logs_p{month:%Y%m}")
        ).scalar() == len([i for i in where.values() if i.endswith(f"_p{month:%Y%m}")])


def test_changes_made_while_the_split_waits_for_its_lock_are_carried_over(
    authmodels_fresh_engine: Engine,
) -> None:
    """The final transaction syncs the copy, then waits for its lock on the parent; rows
    updated, deleted, re-dated and inserted meanwhile (by the default partition's own name, which
    that lock does not hold back) end up in the month's partition as they are, once."""
    engine = authmodels_fresh_engine
    conninfo = libpq_url(engine.url)
    with engine.begin() as conn:
        ids = [_insert(conn, "audit_logs", datetime(2033, 3, day, tzinfo=UTC)) for day in (1, 2, 3)]
        conn.execute(text("SELECT auth.prepare_month_partition('auth.audit_logs', '2033-03-01')"))
        conn.execute(text("SELECT auth.copy_month_rows('auth.audit_logs', '2033-03-01')"))
    writer = psycopg.connect(conninfo)  # an open write: the split's SHARE ROW EXCLUSIVE waits
    writer.execute("INSERT INTO auth.audit_logs (event_type) VALUES ('logout')")
    moved: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as split:
        split.execute("SET deadlock_timeout = '10s'")  # its lock_timeout: 2 s, not 0.5 s
        pid = split.info.backend_pid

        def attach() -> None:
            moved.append(
                split.execute(
                    "SELECT auth.attach_month_partition('auth.audit_logs', '2033-03-01')"
                ).fetchone()[0]  # type: ignore[index]
            )

        worker = threading.Thread(target=attach)
        worker.start()
        with psycopg.connect(conninfo, autocommit=True) as other:
            waiting = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)"
            deadline = time.monotonic() + 5
            while other.execute(waiting, (pid,)).fetchone() != (True,):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            other.execute(
                "UPDATE auth.audit_logs_default SET details = '{\"v\": 2}' WHERE id = %s",
                (ids[0],),
            )
            other.execute("DELETE FROM auth.audit_logs_default WHERE id = %s", (ids[1],))
            other.execute(
                "UPDATE auth.audit_logs_default SET created_at = '2033-03-20+00' WHERE id = %s",
                (ids[2],),
            )
            (added,) = other.execute(
                "INSERT INTO auth.audit_logs_default (event_type, created_at) "
                "VALUES ('login', '2033-03-25+00') RETURNING id"
            ).fetchone() or ("",)
        writer.commit()
        worker.join(10)
    writer.close()
    assert moved == [3]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id::text, details->>'v', created_at, tableoid::regclass::text "
                "FROM auth.audit_logs WHERE created_at >= '2033-03-01+00' "
                "AND created_at < '2033-04-01+00' ORDER BY created_at"
            )
        ).all()
    assert [(r[0], r[1], r[2].day, r[3]) for r in rows] == [
        (ids[0], "2", 1, "auth.audit_logs_p203303"),
        (ids[2], None, 20, "auth.audit_logs_p203303"),
        (str(added), None, 25, "auth.audit_logs_p203303"),
    ]


def test_a_split_outside_read_committed_is_refused_before_it_changes_anything(
    authmodels_fresh_engine: Engine,
) -> None:
    with authmodels_fresh_engine.begin() as conn:
        _insert(conn, "audit_logs", datetime(2034, 4, 4, tzinfo=UTC))
    with psycopg.connect(libpq_url(authmodels_fresh_engine.url)) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction, match="needs a READ COMMITTED"):
            conn.execute("SELECT auth.attach_month_partition('auth.audit_logs', '2034-04-01')")
    with authmodels_fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('auth.audit_logs_p203404')")).scalar() is None
        assert conn.execute(text("SELECT count(*) FROM auth.audit_logs_default")).scalar() == 1


def test_an_interrupted_split_is_left_alone_by_the_purge_and_finished_by_the_next_ensure(
    authmodels_fresh_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = authmodels_fresh_engine
    with engine.begin() as conn:
        for day in range(1, 21):
            _insert(conn, "audit_logs", datetime(2024, 3, day, tzinfo=UTC))
        # what a run killed after its first copy batch leaves
        conn.execute(text("SELECT auth.prepare_month_partition('auth.audit_logs', '2024-03-01')"))
        copied = conn.execute(
            text("SELECT auth.copy_month_rows('auth.audit_logs', '2024-03-01', 5)")
        ).scalar()
        assert copied == 5
    with engine.connect() as conn:
        [month] = [
            p
            for p in partitions.list_partitions(conn, "auth.audit_logs")
            if p.name.endswith("2403")
        ]
        assert (month.attached, month.splitting) == (False, True)
    assert main(["partitions", "list", "--url", libpq_url(engine.url)]) == 0
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if "audit_logs_p202403" in ln]
    assert line.endswith("SPLITTING (partitions ensure finishes it)")
    # the purge leaves it (its rows are still in the default partition) and takes nothing twice
    assert partitions.drop_months(engine, "auth.audit_logs", before=datetime.now(UTC)) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.audit_logs")).scalar() == 20

    ensured = partitions.ensure_all(engine, tables=["auth.audit_logs"], batch_size=4)
    assert [(m.name, m.moved) for m in ensured["auth.audit_logs"] if m.moved] == [
        ("audit_logs_p202403", 20)
    ]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.audit_logs_p202403")).scalar() == 20
        assert conn.execute(text("SELECT count(DISTINCT id) FROM auth.audit_logs")).scalar() == 20


# --- retention ---------------------------------------------------------------------------------


@pytest.fixture
def expired_in_default(authmodels_fresh_engine: Engine) -> dict[str, list[str]]:
    """Per log: 5 rows two years old and one row two years ahead, all in the default partition."""
    now = datetime.now(UTC)
    rows: dict[str, list[str]] = {}
    with authmodels_fresh_engine.begin() as conn:
        for table in LOGS:
            rows[table] = [
                _insert(conn, table, _add_months(now, -24) + timedelta(hours=h)) for h in range(5)
            ]
            rows[table].append(_insert(conn, table, _add_months(now, 24)))
    return rows


def test_the_purge_removes_expired_rows_of_the_default_partition_in_batches(
    authmodels_fresh_engine: Engine, expired_in_default: dict[str, list[str]]
) -> None:
    engine = authmodels_fresh_engine
    with engine.connect() as conn:
        logs = select_policies(load_policies(conn), only=list(LOGS))
    preview = purge(engine, policies=logs, dry_run=True)
    assert {p.name: p.rows for p in preview.policies} == {"audit_logs": 5, "login_attempts": 5}

    report = purge(engine, policies=logs, batch_size=2)
    assert {p.name: (p.rows, p.batches, p.finished) for p in report.policies} == {
        "audit_logs": (5, 3, True),
        "login_attempts": (5, 3, True),
    }
    with engine.connect() as conn:
        for table in LOGS:
            left = conn.execute(text(f"SELECT id::text FROM auth.{table}_default")).scalars()
            assert list(left) == expired_in_default[table][-1:]  # the future row stays
        archived = conn.execute(
            text("SELECT id::text FROM auth.audit_logs_archive ORDER BY created_at")
        ).scalars()
        assert list(archived) == expired_in_default["audit_logs"][:5]
        # the default partition was purged row by row, never dropped
        assert conn.execute(text("SELECT to_regclass('auth.audit_logs_default')")).scalar()


def test_the_sql_purge_removes_one_batch_of_the_default_partition_per_call(
    authmodels_fresh_engine: Engine, expired_in_default: dict[str, list[str]]
) -> None:
    with psycopg.connect(libpq_url(authmodels_fresh_engine.url)) as conn:
        calls = []
        for _ in range(4):
            calls.append(
                dict(
                    conn.execute(
                        "SELECT table_name, deleted FROM auth.purge_expired_data(2)"
                    ).fetchall()
                )
            )
            conn.commit()
        assert [c["audit_logs"] for c in calls] == [2, 2, 1, 0]
        assert [c["login_attempts"] for c in calls] == [2, 2, 1, 0]
        assert list(calls[0])[-2:] == ["audit_logs", "login_attempts"]  # partitioned last
        archived = conn.execute("SELECT count(*) FROM auth.audit_logs_archive").fetchone()
        assert archived == (5,)
        left = conn.execute("SELECT id::text FROM auth.login_attempts_default").fetchall()
        assert left == [(expired_in_default["login_attempts"][-1],)]


# --- privileges and row-level security ---------------------------------------------------------


def test_no_role_but_the_owner_gets_anything_on_a_default_or_split_partition(
    authmodels_fresh_engine: Engine,
) -> None:
    runner = MigrationRunner(authmodels_fresh_engine.url)
    url = authmodels_fresh_engine.url
    try:
        # a split in progress while the grant functions run: not a partition yet
        runner.execute("SELECT auth.prepare_month_partition('auth.audit_logs', '2035-01-01')")
        with application_role(runner, url) as (_, app_engine):
            service = f"svc_{uuid.uuid4().hex[:8]}"
            runner.execute(f"CREATE ROLE {service} LOGIN")
            try:
                runner.execute("SELECT auth.grant_service_role(:r)", {"r": service})
                runner.execute(
                    "SELECT auth.attach_month_partition('auth.audit_logs', '2035-01-01')"
                )
                for part in ("audit_logs_default", "login_attempts_default", "audit_logs_p203501"):
                    sealed = runner.execute(
                        "SELECT c.relrowsecurity, "
                        "(SELECT count(*) FROM pg_policy WHERE polrelid = c.oid), "
                        "(SELECT count(*) FROM aclexplode(c.relacl) a "
                        " WHERE a.grantee <> c.relowner) "
                        "FROM pg_class c WHERE c.oid = CAST(:p AS regclass)",
                        {"p": f"auth.{part}"},
                    )
                    assert sealed == [(True, 0, 0)], part
                for statement in (
                    "SELECT count(*) FROM auth.audit_logs_default",
                    "DELETE FROM auth.audit_logs_p203501",
                ):
                    with (
                        pytest.raises(ProgrammingError, match="permission denied"),
                        app_engine.begin() as conn,
                    ):
                        conn.execute(text(statement))
            finally:
                drop_role(runner, service)
    finally:
        runner.dispose()


# --- the revision -----------------------------------------------------------------------------


def test_downgrade_moves_the_default_rows_to_their_months_and_removes_what_it_added(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(previous(REVISION))
    objects_before = schema_objects(runner)
    runner.upgrade(REVISION)
    with runner.connect() as conn:
        for table in LOGS:
            for at in ("2023-07-09 10:00+00", "2023-07-10 10:00+00", "2039-02-01 00:00+00"):
                _insert(conn, table, datetime.fromisoformat(at))
    rows_before = {t: sorted(runner.execute(f"SELECT t::text FROM auth.{t} t")) for t in LOGS}

    runner.downgrade(previous(REVISION))

    for table in LOGS:
        assert sorted(runner.execute(f"SELECT t::text FROM auth.{table} t")) == rows_before[table]
        assert runner.execute(f"SELECT to_regclass('auth.{table}_default')") == [(None,)]
        placed = runner.execute(
            f"SELECT tableoid::regclass::text, count(*) FROM auth.{table} GROUP BY 1 ORDER BY 1"
        )
        assert placed == [(f"auth.{table}_p202307", 2), (f"auth.{table}_p203902", 1)]
    # the months it created stay; everything else is as before the upgrade
    assert [
        o for o in schema_objects(runner) if "p202307" not in o[1] and "p203902" not in o[1]
    ] == [o for o in objects_before]
    runner.upgrade(REVISION)
    with runner.connect() as conn:
        row = _insert(conn, "audit_logs", datetime(2040, 1, 1, tzinfo=UTC))
        assert _where(conn, "audit_logs")[row] == "auth.audit_logs_default"


def test_upgrade_finishes_a_detach_left_pending_so_its_month_takes_rows_again(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    runner = authmodels_migration_runner
    runner.upgrade(previous(REVISION))
    runner.execute(
        "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2024-01-01', '2024-01-01')"
    )
    conninfo = libpq_url(runner.engine.url)
    with psycopg.connect(conninfo) as reader, psycopg.connect(conninfo, autocommit=True) as ddl:
        reader.execute("SELECT count(*) FROM auth.audit_logs")  # an open transaction to wait for

        def detach() -> None:
            with contextlib.suppress(psycopg.errors.QueryCanceled):  # the cancel below
                ddl.execute(
                    "ALTER TABLE auth.audit_logs DETACH PARTITION auth.audit_logs_p202401 "
                    "CONCURRENTLY"
                )

        worker = threading.Thread(target=detach)
        worker.start()
        with psycopg.connect(conninfo, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            pending = "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhdetachpending)"
            while watcher.execute(pending).fetchone() != (True,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)
            watcher.execute("SELECT pg_cancel_backend(%s)", (ddl.info.backend_pid,))
        worker.join(10)
        reader.rollback()
    assert runner.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending") == [(1,)]

    runner.upgrade(REVISION)

    assert runner.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending") == [(0,)]
    with runner.connect() as conn:
        row = _insert(conn, "audit_logs", datetime(2024, 1, 15, tzinfo=UTC))
        assert _where(conn, "audit_logs")[row] == "auth.audit_logs_default"
    # the detached month waits for the purge, which drops it
    dropped = partitions.drop_months(
        runner.engine, "auth.audit_logs", before=datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert [d.name for d in dropped] == ["audit_logs_p202401"]


@pytest.fixture
def app_role(authmodels_fresh_engine: Engine) -> Iterator[tuple[str, Engine]]:
    runner = MigrationRunner(authmodels_fresh_engine.url)
    try:
        with application_role(runner, authmodels_fresh_engine.url) as granted:
            yield granted
    finally:
        runner.dispose()


def test_the_application_role_writes_a_row_of_a_month_without_partition(
    authmodels_fresh_engine: Engine, app_role: tuple[str, Engine]
) -> None:
    _, app = app_role
    with authmodels_fresh_engine.begin() as conn:
        user = conn.execute(
            text(
                "INSERT INTO auth.users (email, password_hash) VALUES ('d@example.test', 'x') "
                "RETURNING id"
            )
        ).scalar_one()
    with app.begin() as conn:
        conn.execute(text("SELECT set_config('authmodels.user_id', :u, true)"), {"u": str(user)})
        conn.execute(
            text(
                "INSERT INTO auth.audit_logs (user_id, event_type, created_at) "
                "VALUES (:u, 'login', now() + interval '7 months')"
            ),
            {"u": user},
        )
        seen = conn.execute(text("SELECT count(*) FROM auth.audit_logs")).scalar()
        assert seen == 1  # through the parent, under its policies
    with authmodels_fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.audit_logs_default")).scalar() == 1
