"""The ``authmodels`` console script: migrations, keys, the embedded server, the demo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from authmodels.cli import main
from authmodels.config import Settings, parse_key_ring
from authmodels.db import embedded_home, find_home, libpq_url
from authmodels.errors import EmbeddedServerNotFound
from authmodels.migrations import alembic_config
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


def test_db_current_of_an_empty_database_says_none(
    authmodels_empty_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current", "--url", _url(authmodels_empty_database)]) == 0
    assert capsys.readouterr().out == "(none)\n"


def test_global_options_are_accepted_after_the_command_as_before(
    authmodels_fresh_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(authmodels_fresh_database)
    head = revision_ids()[-1]
    assert main(["db", "current", "-v", "--url", url]) == 0
    after = capsys.readouterr().out
    assert main(["-v", "--url", url, "db", "current"]) == 0
    assert capsys.readouterr().out == after
    lines = after.splitlines()
    assert lines[0].startswith("database: postgresql://") and lines[0].endswith("(from --url)")
    assert lines[1] == f"{head} (head)"
    title = ScriptDirectory.from_config(alembic_config()).get_revision(head).doc.split(":")[0]
    assert lines[2].startswith(f"  {head}: {title}")
    assert main(["--json", "db", "current", "--url", url]) == 0
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (event["event"], event["revisions"], event["at_head"]) == ("current", [head], True)


def test_an_option_a_command_has_no_use_for_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--url", "postgresql://x@y/z"]) == 2
    assert "--url is not used by this command" in capsys.readouterr().err


def test_help_lists_the_commands_and_the_environment_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    for name in ("db", "server", "keys", "erd", "purge", "partitions", "users", "demo"):
        assert re.search(rf"^    {name} +\S", shown, re.MULTILINE), name
    for variable in (
        "AUTHMODELS_DATABASE_URL",
        "DATABASE_URL",
        "AUTHMODELS_HOME",
        "AUTHMODELS_HASH_KEYS",
        "AUTHMODELS_ENCRYPTION_KEYS",
        "AUTHMODELS_PRIVACY_KEYS",
    ):
        assert f"\n  {variable} " in shown, variable
    assert main(["db", "--help"]) == 0
    shown = capsys.readouterr().out
    assert all(f"\n    {c} " in shown for c in ("upgrade", "downgrade", "current", "check"))


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"),
    [
        (
            ["--url", "notaurl"],
            {},
            "authmodels: 'notaurl' (from --url) is not a database URL: write it as "
            "postgresql://user:password@host:5432/database",
        ),
        (
            ["--url", "postgresql://postgres@127.0.0.1:1/postgres"],
            {},
            "authmodels: cannot connect to postgresql://postgres@127.0.0.1:1/postgres (from "
            '--url): connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused",
        ),
        (
            [],
            {"DATABASE_URL": "postgresql://app:s3cret@127.0.0.1:1/app"},
            "authmodels: cannot connect to postgresql://app:***@127.0.0.1:1/app (from "
            "DATABASE_URL):",
        ),
        (
            [],
            {"AUTHMODELS_DATABASE_URL": "mysql://app@db/app", "DATABASE_URL": "postgresql://x"},
            "authmodels: authmodels needs PostgreSQL; 'mysql://app@db/app' (from "
            "AUTHMODELS_DATABASE_URL) is not a PostgreSQL URL",
        ),
    ],
    ids=["not-a-url", "unreachable-flag", "unreachable-variable", "not-postgresql-variable"],
)
def test_a_database_that_cannot_be_used_is_one_line_naming_where_its_url_came_from(
    arguments: list[str],
    environment: dict[str, str],
    expected: str,
    tmp_path: Path,
) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("AUTHMODELS_DATABASE_URL", "DATABASE_URL")
    }
    result = subprocess.run(
        [_console_script(), "db", "current", *arguments],
        capture_output=True,
        text=True,
        env={**env, **environment},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(expected), line
    assert "s3cret" not in result.stderr


def test_a_missing_key_is_one_line_naming_the_variable(
    authmodels_fresh_database: URL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AUTHMODELS_ENCRYPTION_KEYS")
    assert main(["keys", "reencrypt", "--url", _url(authmodels_fresh_database)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("authmodels: AUTHMODELS_ENCRYPTION_KEYS is not set")


def test_db_upgrade_prints_each_revision_and_where_it_ends(
    authmodels_empty_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(authmodels_empty_database)
    ids = revision_ids()
    assert main(["db", "upgrade", ids[2], "--url", url]) == 0
    captured = capsys.readouterr()
    for line in captured.out.splitlines()[:3]:
        assert re.fullmatch(r" +\d/3  \S+ +\d+\.\d s", line), line
    assert [line.split()[1] for line in captured.out.splitlines()[:3]] == ids[:3]
    assert captured.out.splitlines()[-1] == f"now at {ids[2]} (head is {ids[-1]})"
    assert captured.err.startswith("migrating postgresql://")
    assert f"from (none) to {ids[2]}: 3 revision(s)" in captured.err
    assert "\r" not in captured.err  # not a terminal: no progress bar


def test_db_upgrade_json_is_one_event_per_revision(
    authmodels_empty_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(authmodels_empty_database)
    ids = revision_ids()
    assert main(["db", "upgrade", "--json", "--url", url]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["revisions"] == ids
    assert events[0]["source"] == "--url" and events[0]["current"] == []
    revisions = events[1:-1]
    assert [e["revision"] for e in revisions] == ids
    assert [e["index"] for e in revisions] == list(range(1, len(ids) + 1))
    assert all(e["event"] == "revision" and e["seconds"] >= 0 for e in revisions)
    assert events[-1] == {
        "event": "done",
        "revisions": [ids[-1]],
        "head": ids[-1],
        "at_head": True,
        "other_revisions": [],
    }
    assert captured.err == ""
    assert main(["db", "downgrade", "-2", "--json", "--url", url]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["revision"] for e in events if e["event"] == "revision"] == ids[:-3:-1]
    assert events[-1]["revisions"] == [ids[-3]]


def test_db_upgrade_refuses_a_schema_migrated_with_its_version_table_elsewhere(
    authmodels_fresh_database: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    """What alembic init's env.py leaves: our tables, the version table in public."""
    runner = MigrationRunner(authmodels_fresh_database)
    try:
        runner.execute("ALTER TABLE auth.alembic_version SET SCHEMA public")
        url = _url(authmodels_fresh_database)
        assert main(["db", "current", "--url", url]) == 0
        assert capsys.readouterr().out == "(none)\n"
        assert main(["db", "upgrade", "--url", url]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(
            "authmodels: schema auth holds tables, but auth.alembic_version records no "
            "authmodels revision; a version table exists in public.alembic_version"
        )
        assert runner.execute("SELECT count(*) FROM public.alembic_version") == [(1,)]
    finally:
        runner.dispose()


def _on_a_terminal(command: list[str], cwd: Path) -> tuple[str, str]:
    """Run ``command`` with standard error on a pseudo-terminal: (stdout, what the terminal got)."""
    import pty

    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=secondary, text=True, cwd=cwd, check=True
        )
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed: everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
    return result.stdout, drawn.decode()


def test_db_upgrade_draws_a_progress_bar_on_a_terminal_only(
    authmodels_empty_database: URL, tmp_path: Path
) -> None:
    url = _url(authmodels_empty_database)
    target = revision_ids()[1]
    out, terminal = _on_a_terminal(
        [_console_script(), "db", "upgrade", target, "--url", url], tmp_path
    )
    assert "\rupgrade [" in terminal and "2/2" in terminal
    assert "\r" not in out and out.splitlines()[-1].startswith("now at")
    piped = subprocess.run(
        [_console_script(), "db", "downgrade", "base", "--url", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert "\r" not in piped.stderr + piped.stdout


@pytest.mark.parametrize(
    ("command", "drawn"),
    [
        (["purge"], "app_logs 3 rows in 1 batches"),
        (["partitions", "ensure"], "(1 rows moved)"),
        (["keys", "reencrypt"], "re-encrypting 1 batch(es) committed"),
    ],
    ids=["purge", "partitions-ensure", "keys-reencrypt"],
)
def test_long_commands_draw_progress_on_a_terminal_and_not_with_no_progress(
    command: list[str], drawn: str, authmodels_fresh_database: URL, tmp_path: Path
) -> None:
    """Each has work to do: old log lines, a row in a month without a partition."""
    runner = MigrationRunner(authmodels_fresh_database)
    try:
        runner.execute(
            "INSERT INTO auth.app_logs (level, message, created_at) "
            "SELECT 'info', 'old', now() - interval '400 days' FROM generate_series(1, 3)"
        )
        runner.execute(
            "INSERT INTO auth.audit_logs (event_type, created_at) "
            "VALUES ('login', now() + interval '2 years')"
        )
    finally:
        runner.dispose()
    url = _url(authmodels_fresh_database)
    _, terminal = _on_a_terminal([_console_script(), *command, "--url", url], tmp_path)
    assert "\r" in terminal and drawn in terminal, terminal
    _, quiet = _on_a_terminal(
        [_console_script(), *command, "--url", url, "--no-progress"], tmp_path
    )
    assert "\r" not in quiet


def test_erd_works_outside_the_repository(tmp_path: Path) -> None:
    result = subprocess.run(
        [_console_script(), "erd", "--area", "identity"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert result.stdout.startswith("<svg ") and ">users<" in result.stdout
    written = tmp_path / "out" / "identity.svg"
    subprocess.run(
        [_console_script(), "erd", "--area", "identity", "--output", str(written)],
        cwd=tmp_path,
        check=True,
    )
    assert written.read_text() == result.stdout


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


def _console_script() -> str:
    script = shutil.which("authmodels", path=str(Path(sys.executable).parent))
    assert script, "the authmodels console script is not installed"
    return script


def _without_database(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AUTHMODELS_DATABASE_URL", "DATABASE_URL", "AUTHMODELS_HOME")
    }
    return env


def test_outside_a_project_no_embedded_server_is_created(tmp_path: Path) -> None:
    nowhere = tmp_path / "not-a-project" / "deeper"
    nowhere.mkdir(parents=True)
    result = subprocess.run(
        [_console_script(), "db", "current"],
        capture_output=True,
        text=True,
        env=_without_database(tmp_path),
        cwd=nowhere,
        check=False,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"authmodels: no database is configured and no .authmodels/ folder is in {nowhere} or "
        "above it"
    )
    assert "authmodels server init" in line
    assert list(tmp_path.rglob(".authmodels")) == []


def test_the_embedded_home_is_found_upward_or_made_at_the_project_root(tmp_path: Path) -> None:
    project = tmp_path / "project"
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    settings = Settings.from_env({})
    assert embedded_home(settings, start=deep) == project / ".authmodels"  # the project root
    assert not (project / ".authmodels").exists()  # decided, not created: start() creates it
    (deep / ".authmodels").mkdir()
    assert embedded_home(settings, start=deep) == deep / ".authmodels"  # found upward: here
    assert find_home(project) is None
    with pytest.raises(EmbeddedServerNotFound, match="authmodels server init"):
        embedded_home(settings, start=tmp_path)
    explicit = Settings.from_env({"AUTHMODELS_HOME": str(tmp_path / "elsewhere")})
    assert embedded_home(explicit, start=tmp_path) == tmp_path / "elsewhere"


def test_server_init_creates_the_home_that_commands_in_subfolders_find(tmp_path: Path) -> None:
    env = _without_database(tmp_path)
    sub = tmp_path / "service" / "src"
    sub.mkdir(parents=True)

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_console_script(), *args], capture_output=True, text=True, env=env, cwd=cwd,
            check=False,
        )  # fmt: skip

    assert run("server", "status", cwd=sub).returncode == 1
    init = run("server", "init", cwd=tmp_path / "service")
    try:
        assert init.returncode == 0, init.stderr
        assert init.stdout.startswith("postgresql://postgres@/postgres?host=")
        assert (tmp_path / "service" / ".authmodels" / "pgdata").is_dir()
        status = run("server", "status", cwd=sub)
        assert (
            status.stdout.strip() == f"running: {tmp_path / 'service' / '.authmodels' / 'pgdata'}"
        )
        current = run("db", "current", "-v", cwd=sub)
        assert current.stdout.splitlines()[0].endswith(
            f"(from the embedded server in {tmp_path / 'service' / '.authmodels'})"
        )
        assert current.stdout.splitlines()[1] == "(none)"
    finally:
        assert run("server", "stop", cwd=sub).returncode == 0
    assert [p.parent for p in tmp_path.rglob(".authmodels")] == [tmp_path / "service"]


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
    result = subprocess.run(
        [_console_script(), "demo", "--url", _url(authmodels_empty_database)],
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
