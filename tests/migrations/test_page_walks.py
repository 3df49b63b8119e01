"""The shipped revisions sped up by walking their tables page by page leave the rows they left
when they walked them by key.

Revisions 0002, 0005, 0007 and 0026 walk their largest tables in physical order
(:class:`authmodels.revision_ops.PageWalk`) instead of by primary key (issue 18: the key walk
made 0002 grow faster than its data), and 0005 and 0007 walk them on two connections at once
(``PageWalk.workers``). Their offline SQL is unchanged (``test_offline_sql.py``); what changed
runs online only, so this test proves it on data: the same generated database is upgraded twice,
once with the key walks the revisions shipped with and once with the page walks, and every table
of schema ``auth`` is compared row by row, every column. The walk on several connections is
tested on its own below: every row once, the revision's settings on every connection, a
worker's error stops the walk and reaches the revision.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.engine import URL

from authmodels import revision_ops
from authmodels.db import libpq_url, sqlalchemy_url
from authmodels.testing.database import TestServer, temporary_database
from authmodels.testing.migrations import MigrationRunner
from benchmarks.bench_migrations import POPULATE

#: The bench's generator at a small scale: quarantine cases included (e-mails matching no
#: account, addresses in another letter case, IPv4, IPv4-mapped and IPv6 addresses).
COUNTS = {"users": 3000, "sessions": 3000, "access_tokens": 3000, "credentials": 600, "flows": 600}
#: Small batches, so that every walk takes several.
BATCH_SIZE = 400
#: The last revision whose online steps changed.
LAST_CHANGED = "0026_token_shape_checks"

#: Seed 004's other token tables, which the bench leaves empty (revision 0005 converts them).
LEGACY_TOKENS = """
INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at, used_at)
SELECT s.user_id, s.id, encode(sha256(('rt-' || s.token_hash)::bytea), 'hex'),
       now() + interval '1 day', CASE WHEN s.is_active THEN NULL ELSE now() END
  FROM auth.sessions AS s;
INSERT INTO auth.password_reset_tokens (user_id, token_hash, expires_at)
SELECT id, encode(sha256(('reset-' || email)::bytea), 'hex'), now() + interval '1 hour'
  FROM auth.users WHERE email LIKE 'user1%';
INSERT INTO auth.email_verification_tokens (user_id, email, token_hash, expires_at)
SELECT id, email, encode(sha256(('verify-' || email)::bytea), 'hex'), now() + interval '1 day'
  FROM auth.users WHERE email LIKE 'user2%';
"""
#: Rows 0026 must quarantine (a digest that is not a keyed digest), written before it runs.
MALFORMED = """
UPDATE auth.sessions SET ua_hash = '\\x01'::bytea
 WHERE id IN (SELECT id FROM auth.sessions ORDER BY id LIMIT 7);
UPDATE auth.access_tokens SET token_hash = substr(token_hash, 2)
 WHERE id IN (SELECT id FROM auth.access_tokens ORDER BY id DESC LIMIT 5);
"""

#: Values a revision takes from the clock or a sequence while it runs: different in any two
#: runs, whatever the walk. Compared without them, every other column of every row.
MIGRATION_TIME = {
    # quarantine: numbered in the order rows are moved, stamped when moved
    "quarantine": ("id", "quarantined_at"),
    # the policies 0016 inserts, stamped when inserted
    "retention_policies": ("updated_at",),
}


def _upgrade_to(runner: MigrationRunner, revision: str) -> None:
    """Upgrade to ``revision``, writing the rows a later revision needs on the way."""
    runner.upgrade("0025_keyed_log_hashes")
    for statement in MALFORMED.split(";"):
        if statement.strip():
            runner.execute(statement)
    runner.upgrade(revision)


def _contents(url: URL) -> dict[str, list[str]]:
    """Every table of schema ``auth``: its rows as JSON text, sorted."""
    tables: dict[str, list[str]] = {}
    with psycopg.connect(libpq_url(url)) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'auth' ORDER BY 1"
            )
        ]
        for name in names:
            left_out = MIGRATION_TIME.get(name, ())
            rows = conn.execute(
                f"SELECT (to_jsonb(t) - %(left_out)s::text[])::text FROM auth.{name} AS t",
                {"left_out": list(left_out)},
            )
            tables[name] = sorted(str(row[0]) for row in rows)
    return tables


@pytest.fixture
def generated(authmodels_test_server: TestServer) -> Iterator[str]:
    """A database at 0001 holding the bench's generated rows (a template to clone)."""
    with temporary_database(authmodels_test_server) as url:
        runner = MigrationRunner(url)
        try:
            runner.upgrade("0001_baseline")
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                for _, statement in POPULATE:
                    conn.execute(statement, COUNTS)
                conn.execute(LEGACY_TOKENS)
                conn.execute("VACUUM ANALYZE")
        finally:
            runner.dispose()
        assert url.database is not None
        yield url.database


def test_page_walks_leave_every_row_the_key_walks_left(
    authmodels_test_server: TestServer, generated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(revision_ops.batched.__kwdefaults__, "batch_size", BATCH_SIZE)
    walks: list[str] = []
    page_walk = revision_ops._walk_pages
    parallel: list[tuple[str, int]] = []  # (table, connections that walked it)
    connect = revision_ops._worker_connections
    opened: list[int] = []

    def counted(bind: Any, walk: revision_ops.PageWalk, *args: Any) -> None:
        walks.append(walk.table)
        opened.clear()
        page_walk(bind, walk, *args)
        if walk.workers > 1:
            parallel.append((walk.table, 1 + sum(opened)))

    def counted_connections(bind: Any, count: int) -> list[Any]:
        extra = connect(bind, count)
        opened.append(len(extra))
        return extra

    monkeypatch.setattr(revision_ops, "_walk_pages", counted)
    monkeypatch.setattr(revision_ops, "_worker_connections", counted_connections)
    by_key = revision_ops.batched

    def key_walk(select: str, apply: Any, **kwargs: Any) -> revision_ops.BackfillReport:
        kwargs.pop("walk", None)  # what the revisions did when they shipped
        return by_key(select, apply, **kwargs)

    with (
        temporary_database(authmodels_test_server, template=generated) as pages_url,
        temporary_database(authmodels_test_server, template=generated) as keys_url,
    ):
        pages, keys = MigrationRunner(pages_url), MigrationRunner(keys_url)
        try:
            _upgrade_to(pages, LAST_CHANGED)
            assert {"access_tokens", "sessions", "biometric_credentials"} <= set(walks)
            # 0005 (four seed-004 tables, access tokens) and 0007 (sessions), two connections each
            assert sorted(parallel) == sorted(
                [(t, 2) for t in ("sessions", "refresh_tokens", "password_reset_tokens")]
                + [("email_verification_tokens", 2), ("access_tokens", 2), ("sessions", 2)]
            )
            walked = len(walks)
            with monkeypatch.context() as patch:
                patch.setattr(revision_ops, "batched", key_walk)
                _upgrade_to(keys, LAST_CHANGED)
            assert len(walks) == walked  # the second run walked by key only
        finally:
            pages.dispose()
            keys.dispose()
        by_pages, by_keys = _contents(pages_url), _contents(keys_url)

    assert by_pages.keys() == by_keys.keys()
    differing = {
        table: (sorted(set(by_pages[table]) - set(by_keys[table]))[:2],
                sorted(set(by_keys[table]) - set(by_pages[table]))[:2])
        for table in by_keys
        if by_pages[table] != by_keys[table]
    }  # fmt: skip
    assert differing == {}
    # the data exercised what the revisions convert and what they quarantine
    assert len(by_keys["sessions"]) == COUNTS["sessions"] - 7
    assert any('"revision": "0002_identity_unification"' in row for row in by_keys["quarantine"])
    assert any('"revision": "0026_token_shape_checks"' in row for row in by_keys["quarantine"])


# --- the walk on several connections ------------------------------------------------------------

#: Rows of the table the walk tests below fill, and rows per batch (several batches per worker).
WALKED_ROWS = 3000
WALKED_BATCH = 200


@pytest.fixture
def walked(authmodels_test_server: TestServer) -> Iterator[Connection]:
    """A connection (autocommit, as inside ``autocommit_block``) to a database holding
    ``auth.walked``: ``WALKED_ROWS`` rows, each with its number and an empty ``seen_by``."""
    with temporary_database(authmodels_test_server) as url:
        engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text("CREATE SCHEMA auth"))
                conn.execute(
                    text(
                        "CREATE TABLE auth.walked (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                        "n int NOT NULL, seen_by int[] NOT NULL DEFAULT '{}')"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO auth.walked (n) "
                        f"SELECT i FROM generate_series(1, {WALKED_ROWS}) AS i"
                    )
                )
                conn.execute(text("VACUUM ANALYZE auth.walked"))
                conn.execute(text("SET lock_timeout = '1234ms'"))
                yield conn
        finally:
            engine.dispose()


def _walk(
    bind: Connection, apply: Any, *, workers: int = 1, passes: int = 1
) -> revision_ops.BackfillReport:
    report = revision_ops.BackfillReport()
    walk = revision_ops.PageWalk(
        "walked",
        "SELECT id, n FROM auth.walked WHERE {pages}",
        workers=workers,
        passes=passes,
    )
    revision_ops._walk_pages(bind, walk, apply, WALKED_BATCH, {}, report)
    return report


def _mark(conn: Connection, rows: Sequence[Any]) -> None:
    """Record, on each row, the backend that wrote it."""
    conn.execute(
        text(
            "UPDATE auth.walked SET seen_by = seen_by || pg_backend_pid() "
            "WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": [row[0] for row in rows]},
    )


@pytest.mark.parametrize("passes", [1, 3])
def test_a_walk_on_two_connections_converts_every_row_once_on_both(
    walked: Connection, passes: int
) -> None:
    settings: set[tuple[str, ...]] = set()

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        settings.add(
            tuple(conn.execute(text("SELECT current_setting('lock_timeout'), "
                                    "current_setting('search_path')")).one())
        )  # fmt: skip
        _mark(conn, rows)

    report = _walk(walked, apply, workers=2, passes=passes)

    seen = walked.execute(text("SELECT seen_by FROM auth.walked")).scalars().all()
    assert report.rows == WALKED_ROWS
    assert sorted(len(backends) for backends in seen) == [1] * WALKED_ROWS
    assert len({backends[0] for backends in seen}) == 2  # both connections wrote rows
    # the extra connection took the revision's settings
    assert settings == {("1234ms", str(walked.execute(text("SHOW search_path")).scalar()))}


def test_a_worker_error_stops_the_walk_and_reaches_the_revision(walked: Connection) -> None:
    main = threading.get_ident()

    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        if threading.get_ident() != main:
            raise RuntimeError("batch failed in the second worker")
        _mark(conn, rows)

    with pytest.raises(RuntimeError, match="second worker"):
        _walk(walked, apply, workers=2)

    written = walked.execute(
        text("SELECT count(*) FROM auth.walked WHERE seen_by <> '{}'")
    ).scalar_one()
    # the failed batch rolled back; the first worker stopped after its batch under way
    assert written < WALKED_ROWS - WALKED_BATCH


def test_a_walk_in_passes_rewrites_rows_on_their_own_page(walked: Connection) -> None:
    def apply(conn: Connection, rows: Sequence[Any]) -> None:
        _mark(conn, rows)
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # counted at COMMIT

    report = _walk(walked, apply, passes=3)

    walked.execute(text("SELECT pg_stat_clear_snapshot()"))
    updated, on_their_page = walked.execute(
        text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relid = 'auth.walked'::regclass"
        )
    ).one()
    seen = walked.execute(text("SELECT seen_by FROM auth.walked")).scalars().all()
    assert report.rows == updated == WALKED_ROWS
    assert sorted(len(backends) for backends in seen) == [1] * WALKED_ROWS
    # the pages were full: in one pass no row stays on its page; in three, about a third do
    assert on_their_page > WALKED_ROWS // 4
