"""``authmodels report``: the table, ``--json``, ``--html`` and ``--fail-on`` (its exit status, as
cron and CI see it), run as the real command against a database where the report role is
registered, with the attack's rows committed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.cli import main
from authmodels.db import libpq_url
from authmodels.errors import InvalidInputError
from authmodels.report.cli import parse_threshold
from authmodels.testing.migrations import MigrationRunner
from tests.report import rows


def authmodels(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``authmodels`` console script, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "authmodels.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def brute_force(engine: Engine) -> None:
    """150 failed logins in the last minutes, from 3 addresses, committed."""
    with Session(engine) as db, db.begin():
        for n in range(3):
            rows.login_attempts(db, 50, ip=f"198.51.100.{n}", ago="2 minutes")
        rows.login_attempts(db, 20, result="success", ago="2 minutes")


def test_report_fails_on_critical_while_a_brute_force_is_under_way(
    authmodels_fresh_engine: Engine, report_url: URL
) -> None:
    url = libpq_url(report_url)
    quiet = authmodels("report", "--url", url, "--fail-on", "critical")
    assert quiet.returncode == 0, quiet.stderr
    assert "Findings (0)" in quiet.stdout or "critical" not in quiet.stdout

    brute_force(authmodels_fresh_engine)
    run = authmodels("report", "--url", url, "--fail-on", "critical")
    assert run.returncode == 1, run.stderr
    assert "finding(s) at critical or above" in run.stderr
    assert "critical  brute_force" in run.stdout
    assert "150 failed logins in the last 5 minutes (threshold 100), from 3 source(s)" in run.stdout

    # a higher threshold, or a level no finding reaches: exit status 0
    raised = authmodels(
        "report", "--url", url, "--fail-on", "critical",
        "--threshold", "brute_force_failures=150", "--threshold", "brute_force_window=10m",
    )  # fmt: skip
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert "brute_force" not in raised.stdout.split("Detections")[0]


def test_report_json_holds_the_findings_and_figures(
    authmodels_fresh_engine: Engine, report_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    brute_force(authmodels_fresh_engine)
    assert main(["report", "--url", libpq_url(report_url), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["brute_force"] == {
        "window": 300.0, "threshold": 100, "failed_attempts": 150, "sources": 3,
        "identifiers": 1, "detected": True,
    }  # fmt: skip
    first = data["findings"][0]
    assert (first["check"], first["severity"]) == ("brute_force", "critical")
    assert data["login_metrics"]["attempts"] == 170
    assert data["login_metrics"]["success_rate"] == pytest.approx(20 / 170, abs=1e-4)
    assert {c["name"]: c["ratio"] for c in data["compliance"]}["token_digests"] == 1.0


def test_report_writes_the_dashboard_page(
    authmodels_fresh_engine: Engine,
    report_url: URL,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    brute_force(authmodels_fresh_engine)
    page = tmp_path / "out.html"
    assert main(["report", "--url", libpq_url(report_url), "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and 'data-plot="failed-logins"' in html


def test_report_as_the_application_role_is_refused_with_a_way_out(
    authmodels_fresh_database: URL, authmodels_roles: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = libpq_url(authmodels_roles.url(authmodels_fresh_database))  # type: ignore[attr-defined]
    assert main(["report", "--url", url]) == 1
    err = capsys.readouterr().err
    assert "permission denied for function report_" in err
    assert "auth.grant_report_role" in err


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("brute_force_failures", "expected NAME=VALUE"),
        ("nope=3", "expected NAME=VALUE"),
        ("brute_force_window=5", "not a duration"),
        ("brute_force_failures=-1", "not a whole number"),
    ],
)
def test_a_threshold_that_is_not_one_is_refused(assignment: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_threshold(assignment)


def test_report_on_a_database_before_0030_says_to_migrate(
    authmodels_migration_runner: MigrationRunner,
    authmodels_empty_database: URL,
    capsys: pytest.CaptureFixture[str],
) -> None:
    authmodels_migration_runner.upgrade("0028_owner_maintenance")
    assert main(["report", "--url", libpq_url(authmodels_empty_database)]) == 1
    assert "migrate it to revision 0030_security_reports" in capsys.readouterr().err
