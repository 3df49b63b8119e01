"""The ``authmodels`` console script: migrations, keys, the embedded server, the demo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from authmodels.cli import main
from authmodels.config import parse_key_ring
from authmodels.db import libpq_url
from authmodels.testing.migrations import MigrationRunner, revision_ids


def _url(url: URL) -> str:
    return libpq_url(url)


def test_db_upgrade_current_downgrade_and_check(
    authmodels_empty_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(authmodels_empty_database)
    assert main(["db", "upgrade", "--url", url]) == 0
    runner = MigrationRunner(authmodels_empty_database)
    try:
        assert runner.current() == revision_ids()[-1]
        assert main(["db", "check", "--url", url]) == 0
        assert "matches the models" in capsys.readouterr().out
        assert main(["db", "downgrade", "-1", "--url", url]) == 0
        expected = revision_ids()[-2] if len(revision_ids()) > 1 else None
        assert runner.current() == expected
        assert main(["db", "check", "--url", url]) == 1  # not at head any more
        assert main(["db", "upgrade", "head", "--url", url]) == 0
        assert runner.current() == revision_ids()[-1]
    finally:
        runner.dispose()


def test_db_downgrade_without_revision_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "downgrade", "--url", "postgresql://nobody@localhost/none"]) == 2
    assert "needs a revision" in capsys.readouterr().err


def test_db_upgrade_sql_prints_ddl_without_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE auth.users" in out
    assert "SET lock_timeout" in out


def test_db_upgrade_sql_takes_the_timeouts(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["db", "upgrade", "--sql", "--lock-timeout", "9s", "--statement-timeout", "2h"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SET lock_timeout = '9s'" in out and "SET statement_timeout = '2h'" in out


def test_keys_generate_prints_a_valid_ring_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--id", "2026-11"]) == 0
    ring = parse_key_ring(capsys.readouterr().out.strip(), source="test")
    assert ring.current == "2026-11"
    assert len(ring.current_key) == 32


def test_server_status_of_a_home_without_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHMODELS_HOME", str(tmp_path / "home"))
    assert main(["server", "status"]) == 1
    assert "stopped" in capsys.readouterr().out


def test_server_start_url_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHMODELS_HOME", str(tmp_path / "home"))
    try:
        assert main(["server", "start"]) == 0
        started = capsys.readouterr().out.strip()
        assert started.startswith("postgresql://postgres@/postgres?host=")
        assert main(["server", "status"]) == 0
        assert main(["server", "url"]) == 0
        assert capsys.readouterr().out.strip().endswith(started.split("?", 1)[1])
    finally:
        assert main(["server", "stop"]) == 0
    assert main(["server", "status"]) == 1


def test_demo_console_script_migrates_and_runs_the_example(authmodels_empty_database: URL) -> None:
    script = shutil.which("authmodels", path=str(Path(sys.executable).parent))
    assert script, "the authmodels console script is not installed"
    result = subprocess.run(
        [script, "demo", "--url", _url(authmodels_empty_database)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"to {revision_ids()[-1]}" in result.stdout
    assert "password check: right -> True, wrong -> False" in result.stdout
    assert "validate_session -> session" in result.stdout
    assert "the old refresh token presented again: RefreshTokenReused" in result.stdout
    assert "'refresh_token_reused'" in result.stdout
    runner = MigrationRunner(authmodels_empty_database)
    try:
        assert runner.current() == revision_ids()[-1]
        assert runner.execute("SELECT count(*) FROM auth.users") == [(0,)]  # rolled back
    finally:
        runner.dispose()
