"""The Prometheus metrics: ``authmodels metrics serve`` answers over HTTP with what
``prometheus_client``'s parser reads back as the rows written; ``--once`` prints (or writes) the
same families; a service registers the collector in its own registry, switching to a report
role; a scrape that cannot reach the database says so in ``authmodels_report_up``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels.db import create_db_engine, libpq_url
from authmodels.errors import ConcurrentUpdateError
from authmodels.locking import update_versioned
from authmodels.models import User
from authmodels.report.metrics import SecurityCollector
from authmodels.testing.database import TestServer
from authmodels.testing.factories import UserFactory
from authmodels.testing.roles import TestRoles
from tests.report import rows
from tests.report.conftest import ReportRole
from tests.report.rows import BCRYPT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(page: str) -> Samples:
    """Every sample of an exposition page, parsed by prometheus_client: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def not_at_the_turn_of_an_hour() -> None:
    """The counters start again every hour (UTC): wait when the hour is about to turn."""
    now = datetime.now(UTC)
    if now.minute == 59 and now.second >= 30:
        time.sleep(61 - now.second)


@pytest.fixture
def attacked(authmodels_fresh_engine: Engine) -> Engine:
    """A fresh database holding, committed and written just now: 150 failed logins and 20
    successes, 3 reused refresh tokens and 2 lockouts, 2 accounts with a bcrypt hash."""
    not_at_the_turn_of_an_hour()
    with Session(authmodels_fresh_engine) as db, db.begin():
        for n in range(3):
            rows.login_attempts(db, 50, ip=f"198.51.100.{n}", ago="0")
        rows.login_attempts(db, 20, result="success", ago="0")
        rows.security_events(db, 3, "refresh_token.reused", "high", ago="0")
        rows.security_events(db, 2, "login.account_locked", "high", ago="0")
        rows.users_with_hashes(db, [BCRYPT, BCRYPT])
    return authmodels_fresh_engine


def live_accounts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM auth.users WHERE deleted_at IS NULL")))


def assert_the_attack_is_exported(found: Samples, accounts: int) -> None:
    assert found[("authmodels_login_attempts_total", (("result", "failure"),))] == 150
    assert found[("authmodels_login_attempts_total", (("result", "success"),))] == 20
    assert found[("authmodels_refresh_token_reuse_total", ())] == 3
    assert found[("authmodels_account_lockouts_total", ())] == 2
    assert found[("authmodels_security_events_total", (("severity", "high"),))] == 5
    assert found[("authmodels_security_events_total", (("severity", "critical"),))] == 0
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).timestamp()
    assert found[("authmodels_login_attempts_created", (("result", "failure"),))] == hour
    assert found[("authmodels_brute_force_failed_logins", ())] == 150
    assert found[("authmodels_detection_active", (("detection", "brute_force"),))] == 1
    assert found[("authmodels_detection_active", (("detection", "credential_stuffing"),))] == 0
    assert found[("authmodels_legacy_password_hashes", (("scheme", "bcrypt"),))] == 2
    assert found[("authmodels_live_accounts", ())] == accounts
    assert found[("authmodels_compliance_ratio", (("metric", "token_digests"),))] == 1
    assert found[("authmodels_compliance_ratio", (("metric", "argon2id_passwords"),))] == (
        pytest.approx((accounts - 2) / accounts)
    )
    assert found[("authmodels_partitions_months_ahead", (("table", "auth.login_attempts"),))] >= 3
    assert found[("authmodels_purge_backlog_rows", (("policy", "sessions"),))] == 0
    assert found[("authmodels_report_up", ())] == 1


def test_metrics_serve_answers_a_scrape_over_http(attacked: Engine, report_url: URL) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "authmodels.cli", "metrics", "serve", "--port", "0",
         "--url", libpq_url(report_url), "--role", str(report_url.username)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), server.stderr.read()  # type: ignore[union-attr]
        endpoint = line.split()[1]
        with urllib.request.urlopen(endpoint, timeout=30) as response:  # noqa: S310 (loopback)
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            page = response.read().decode()
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=30)
    assert returncode == 0
    assert_the_attack_is_exported(samples(page), live_accounts(attacked))


def test_metrics_once_prints_the_page_or_writes_it_whole(
    attacked: Engine, report_url: URL, tmp_path: Path
) -> None:
    url = libpq_url(report_url)
    printed = subprocess.run(
        [sys.executable, "-m", "authmodels.cli", "metrics", "--once", "--url", url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert_the_attack_is_exported(samples(printed.stdout), live_accounts(attacked))

    target = tmp_path / "authmodels.prom"
    subprocess.run(
        [sys.executable, "-m", "authmodels.cli", "metrics", "--once", "--url", url,
         "--output", str(target)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert_the_attack_is_exported(samples(target.read_text()), live_accounts(attacked))
    assert os.listdir(tmp_path) == ["authmodels.prom"]  # no temporary file left behind
    assert target.stat().st_mode & 0o044 == 0o044


def test_metrics_needs_serve_or_once() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "authmodels.cli", "metrics"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "either serve or --once" in run.stderr


@pytest.fixture
def login_may_become_report_role(
    authmodels_test_server: TestServer, authmodels_roles: TestRoles, report_role: ReportRole
) -> Iterator[None]:
    """The application's login role may ``SET ROLE`` to the report role (not inherit it)."""
    grant = sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(
        sql.Identifier(report_role.name), sql.Identifier(authmodels_roles.login)
    )
    revoke = sql.SQL("REVOKE {} FROM {}").format(
        sql.Identifier(report_role.name), sql.Identifier(authmodels_roles.login)
    )
    with authmodels_test_server.admin_connection() as conn:
        conn.execute(grant)
    try:
        yield
    finally:
        with authmodels_test_server.admin_connection() as conn:
            conn.execute(revoke)


def test_a_service_registers_the_collector_in_its_own_registry(
    attacked: Engine,
    report_url: URL,
    authmodels_app_fresh_engine: Engine,
    report_role: ReportRole,
    login_may_become_report_role: None,
) -> None:
    registry = CollectorRegistry()
    registry.register(SecurityCollector(authmodels_app_fresh_engine, role=report_role.name))
    assert_the_attack_is_exported(
        samples(generate_latest(registry).decode()), live_accounts(attacked)
    )
    # without the role, the application's own rights: the aggregates are refused
    alone = CollectorRegistry()
    alone.register(SecurityCollector(authmodels_app_fresh_engine))
    assert samples(generate_latest(alone).decode())[("authmodels_report_up", ())] == 0


def test_the_process_counts_its_optimistic_lock_conflicts(
    authmodels_session: Session, authmodels_engine: Engine
) -> None:
    user: User = UserFactory(authmodels_session)()
    registry = CollectorRegistry()
    registry.register(SecurityCollector(authmodels_engine))
    key = ("authmodels_optimistic_lock_conflicts_total", ())
    before = samples(generate_latest(registry).decode())[key]
    with pytest.raises(ConcurrentUpdateError):
        update_versioned(authmodels_session, User, user.id, user.version + 5, email_verified=True)
    assert samples(generate_latest(registry).decode())[key] == before + 1


def test_a_scrape_that_cannot_read_the_database_reports_it_down(
    authmodels_server_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(authmodels_server_url.set(database="no_such_database_x"))
    try:
        registry = CollectorRegistry()
        registry.register(SecurityCollector(engine))
        found = samples(generate_latest(registry).decode())
    finally:
        engine.dispose()
    assert found[("authmodels_report_up", ())] == 0
    assert ("authmodels_login_attempts_total", (("result", "failure"),)) not in found
    assert "no_such_database_x" in caplog.text
