"""``authmodels purge`` and ``authmodels partitions`` against a migrated database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from authmodels.cli import main
from authmodels.db import create_db_engine, libpq_url


@pytest.fixture
def url(authmodels_fresh_database: URL) -> str:
    engine = create_db_engine(authmodels_fresh_database)
    old = datetime.now(UTC) - timedelta(days=400)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO auth.app_logs (level, message, created_at) "
                "SELECT 'info', 'old ' || g, :t FROM generate_series(1, 12) g"
            ),
            {"t": old},
        )
        conn.execute(text("INSERT INTO auth.app_logs (level, message) VALUES ('info', 'new')"))
    engine.dispose()
    return libpq_url(authmodels_fresh_database)


def _count(url: str) -> int:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM auth.app_logs")).scalar() or 0)
    engine.dispose()
    return count


def test_purge_dry_run_json_counts_and_changes_nothing(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--url", url, "--dry-run", "--json", "--only", "app_logs"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] is True
    assert [(p["name"], p["rows"]) for p in summary["policies"]] == [("app_logs", 12)]
    assert _count(url) == 13


def test_purge_removes_in_batches_and_reports(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--url", url, "--batch-size", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (logs,) = [p for p in summary["policies"] if p["name"] == "app_logs"]
    assert (logs["rows"], logs["batches"], logs["finished"]) == (12, 3, True)
    assert _count(url) == 1
    assert main(["purge", "--url", url, "--only", "app_logs"]) == 0
    assert "removed            0 rows" in capsys.readouterr().out


def test_purge_of_an_unknown_policy_names_the_known_ones(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--url", url, "--only", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no retention policy is named 'nope'" in err and "sessions" in err


def test_partitions_ensure_list_and_plan(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partitions", "ensure", "--url", url, "--months-ahead", "5"]) == 0
    out = capsys.readouterr().out
    assert "auth.audit_logs:" in out and "auth.login_attempts:" in out
    assert main(["partitions", "list", "--url", url]) == 0
    listed = capsys.readouterr().out
    now = datetime.now(UTC)
    assert f"audit_logs_p{now:%Y%m}" in listed and "attached" in listed
    assert main(["partitions", "plan", "--url", url]) == 0
    assert "already partitioned" in capsys.readouterr().out
