"""Every default retention policy at head: just inside the window stays, just outside goes.

Each policy gets rows whose *end* (expiry, revocation, use: what its condition reads) lies one
second either side of its cutoff, through both purge paths: :func:`authmodels.retention.purge` and
the SQL function ``auth.purge_expired_data()`` (what pg_cron runs) -- they read the same windows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, text

from authmodels import partitions
from authmodels.errors import ConfigurationError
from authmodels.retention import Policy, load_policies, purge
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role

SECOND = timedelta(seconds=1)

Seeder = Callable[[Connection, str, datetime, str], None]

#: a well-formed keyed digest (``auth.is_token_digest``): version 1, key id "test", a 32-byte MAC
DIGEST = "decode('0104', 'hex') || convert_to('test', 'UTF8') || sha256(convert_to(:tag, 'UTF8'))"
#: the same, of a value other than the tag (digest columns hold this shape only, revision 0026)
DIGEST_OF = "decode('0104', 'hex') || convert_to('test', 'UTF8') || sha256(convert_to({}, 'UTF8'))"


def _user(conn: Connection) -> str:
    return str(
        conn.execute(
            text(
                "INSERT INTO auth.users (email, password_hash) VALUES "
                "('r' || gen_random_uuid() || '@example.test', '!unusable') RETURNING id"
            )
        ).scalar()
    )


def _session(
    conn: Connection, user: str, expires: datetime, revoked: datetime | None = None
) -> str:
    return str(
        conn.execute(
            text(
                "INSERT INTO auth.sessions "
                "(user_id, token_hash, expires_at, revoked_at, created_at) VALUES "
                f"(:u, {DIGEST_OF.format('gen_random_uuid()::text')}, :e, :r, :c) "
                "RETURNING id"
            ),
            {
                "u": user,
                "e": expires,
                "r": revoked,
                "c": min(expires, revoked or expires) - timedelta(days=1),
            },
        ).scalar()
    )


def _token_row(table: str, extra: str = "", extra_values: str = "") -> Seeder:
    def seed(conn: Connection, user: str, end: datetime, tag: str) -> None:
        conn.execute(
            text(
                f"INSERT INTO auth.{table} (user_id, token_hash, expires_at, created_at{extra}) "
                f"VALUES (:u, {DIGEST}, :end, :created{extra_values})"
            ),
            {"u": user, "tag": tag, "end": end, "created": end - timedelta(days=1)},
        )

    return seed


def _refresh(conn: Connection, user: str, end: datetime, tag: str) -> None:
    session = _session(conn, user, datetime.now(UTC) + timedelta(days=365))
    conn.execute(
        text(
            "INSERT INTO auth.refresh_tokens (user_id, session_id, token_hash, expires_at, "
            f"used_at, created_at) VALUES (:u, :s, {DIGEST}, :far, :end, :created)"
        ),
        {
            "u": user,
            "s": session,
            "tag": tag,
            "end": end,
            "far": end + timedelta(days=90),
            "created": end - timedelta(days=1),
        },
    )


def _sessions(conn: Connection, user: str, end: datetime, tag: str) -> None:
    # ended by revocation before its expiry: least(expires_at, revoked_at) is the revocation
    conn.execute(
        text(
            "INSERT INTO auth.sessions (user_id, token_hash, expires_at, revoked_at, "
            f"revoked_reason, created_at) VALUES (:u, {DIGEST}, :far, :end, :tag, :created)"
        ),
        {
            "u": user,
            "tag": tag,
            "end": end,
            "far": end + timedelta(days=90),
            "created": end - timedelta(days=1),
        },
    )


USER_CODE = ":tag || 'u'"


def _device_flow(conn: Connection, user: str, end: datetime, tag: str) -> None:
    conn.execute(
        text(
            "INSERT INTO auth.device_flows (device_code_hash, user_code_hash, client_id, "
            f"expires_at, retention_expires_at, created_at) VALUES ({DIGEST}, "
            f"{DIGEST_OF.format(USER_CODE)}, 'tv', :exp, :end, :created)"
        ),
        {
            "tag": tag,
            "end": end,
            "exp": end - timedelta(hours=1),
            "created": end - timedelta(hours=2),
        },
    )


def _app_log(conn: Connection, user: str, end: datetime, tag: str) -> None:
    conn.execute(
        text("INSERT INTO auth.app_logs (level, message, created_at) VALUES ('info', :tag, :end)"),
        {"tag": tag, "end": end},
    )


def _insert(sql: str) -> Seeder:
    def seed(conn: Connection, user: str, end: datetime, tag: str) -> None:
        for statement in sql.split(";"):
            conn.execute(text(statement), {"u": user, "end": end, "tag": tag})

    return seed


SEEDERS: dict[str, Seeder] = {
    "step_up_tokens": _insert(
        "INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, expires_at, used_at, "
        f"created_at) VALUES (:u, {DIGEST}, :tag, :end + interval '5 minutes', :end, "
        ":end - interval '1 minute')"
    ),
    "dpop_jtis": _insert(
        "INSERT INTO auth.dpop_jtis (jkt, jti, expires_at) VALUES ('jkt', :tag, :end)"
    ),
    "audit_logs_archive": _insert(
        "INSERT INTO auth.audit_logs_archive (id, event_type, event_status, details, "
        "correlation_id, created_at, archived_at) VALUES (gen_random_uuid(), 'login', 'success', "
        "'{}', :tag, :end - interval '1 day', :end)"
    ),
    "security_events": _insert(
        "INSERT INTO auth.security_events (event_type, severity, details, created_at) "
        "VALUES ('login_failed', 'low', jsonb_build_object('tag', CAST(:tag AS text)), :end)"
    ),
    "email_delivery_logs": _insert(
        "INSERT INTO auth.email_delivery_logs (recipient_hash, recipient_masked, template, "
        f"provider, subject, created_at) VALUES ({DIGEST}, 'x***@example.test', 'otp', 'smtp', "
        ":tag, :end)"
    ),
    "sms_delivery_logs": _insert(
        "INSERT INTO auth.sms_delivery_logs (recipient_hash, recipient_masked, template, "
        f"provider, provider_message_id, created_at) VALUES ({DIGEST}, '+15*******67', 'otp', "
        "'sms', :tag, :end)"
    ),
    "magic_link_tokens": _insert(
        "INSERT INTO auth.magic_link_tokens (user_id, token_hash, expires_at, used_at, "
        f"created_at) VALUES (:u, {DIGEST}, :end + interval '10 minutes', :end, "
        ":end - interval '5 minutes')"
    ),
    "flow_requests": _insert(
        "INSERT INTO auth.flow_requests (flow, identifier_hash, created_at) "
        f"VALUES ('password_reset', {DIGEST}, :end)"
    ),
    "session_audits": _insert(
        "INSERT INTO auth.session_audits (user_id, action, details, created_at) "
        "VALUES (:u, 'created', jsonb_build_object('tag', CAST(:tag AS text)), :end)"
    ),
    "account_recovery": _insert(
        "INSERT INTO auth.account_recovery (user_id, method, status, token_hash, expires_at, "
        f"completed_at, created_at) VALUES (:u, 'email', 'completed', {DIGEST}, "
        ":end + interval '1 hour', :end, :end - interval '1 hour')"
    ),
    "two_factor_backup_codes": _insert(
        # an enrolment first (backup codes belong to one); a well-formed envelope, never opened
        "INSERT INTO auth.two_factor_auth (user_id, secret_encrypted) VALUES (:u, "
        "decode('0104', 'hex') || convert_to('test', 'UTF8') || "
        "substring(sha256(convert_to(:tag, 'UTF8')) from 1 for 28)) "
        "ON CONFLICT DO NOTHING;"
        f"INSERT INTO auth.two_factor_backup_codes (user_id, code_hash, used_at, created_at) "
        f"VALUES (:u, {DIGEST}, :end, :end - interval '1 day')"
    ),
    "device_flows": _device_flow,
    "access_tokens": _token_row("access_tokens"),
    "refresh_tokens": _refresh,
    "sessions": _sessions,
    "password_reset_tokens": _token_row("password_reset_tokens"),
    "email_verification_tokens": _token_row(
        "email_verification_tokens", ", email", ", 'v@example.test'"
    ),
    "app_logs": _app_log,
}
#: how a seeded row is found again, per policy
TAG_COLUMN = {
    "device_flows": "encode(device_code_hash, 'hex')",
    "app_logs": "message",
    "sessions": "revoked_reason",
    "step_up_tokens": "purpose",
    "dpop_jtis": "jti",
    "audit_logs_archive": "correlation_id",
    "security_events": "details->>'tag'",
    "email_delivery_logs": "subject",
    "sms_delivery_logs": "provider_message_id",
    "session_audits": "details->>'tag'",
    "account_recovery": "encode(token_hash, 'hex')",
    "two_factor_backup_codes": "encode(code_hash, 'hex')",
    "flow_requests": "encode(identifier_hash, 'hex')",
}
PARTITIONED = {"audit_logs", "login_attempts"}


#: policies whose tag is stored inside a digest: the tag is found as the digest's hex
DIGESTED = {
    "account_recovery",
    "magic_link_tokens",
    "flow_requests",
    "two_factor_backup_codes",
    "step_up_tokens",
    "device_flows",
    "access_tokens",
    "refresh_tokens",
    "password_reset_tokens",
    "email_verification_tokens",
}


def _expected(conn: Connection, policy: Policy, tag: str) -> str:
    if policy.name in DIGESTED and policy.name != "step_up_tokens":
        digest = conn.execute(text(f"SELECT encode({DIGEST}, 'hex')"), {"tag": tag}).scalar()
        return str(digest)
    return tag


def _tag_query(policy: Policy) -> str:
    column = TAG_COLUMN.get(policy.name, "encode(token_hash, 'hex')")
    return f"SELECT {column} FROM {policy.table}"


@pytest.fixture
def policies(authmodels_fresh_engine: Engine) -> list[Policy]:
    with authmodels_fresh_engine.connect() as conn:
        return load_policies(conn)


def test_every_default_policy_is_covered_here(policies: list[Policy]) -> None:
    assert {p.name for p in policies} == set(SEEDERS) | PARTITIONED


@pytest.mark.parametrize("path", ["python", "sql"])
def test_rows_inside_the_window_stay_and_rows_outside_go(
    authmodels_fresh_engine: Engine, policies: list[Policy], path: str
) -> None:
    now = datetime.now(UTC)
    row_policies = [p for p in policies if not p.partitioned]
    with authmodels_fresh_engine.begin() as conn:
        user = _user(conn)
        for policy in row_policies:
            cutoff = now - policy.keep_for
            # one minute of slack either side: the SQL path reads its own now()
            SEEDERS[policy.name](conn, user, cutoff + timedelta(minutes=1), f"{policy.name}-kept")
            SEEDERS[policy.name](conn, user, cutoff - timedelta(minutes=1), f"{policy.name}-gone")
    if path == "python":
        report = purge(authmodels_fresh_engine, policies=row_policies, now=now)
        removed = {p.name: p.rows for p in report.policies}
    else:
        with authmodels_fresh_engine.begin() as conn:
            removed = dict(conn.execute(text("SELECT * FROM auth.purge_expired_data()")).all())
    with authmodels_fresh_engine.connect() as conn:
        for policy in row_policies:
            left = set(conn.execute(text(_tag_query(policy))).scalars())
            assert _expected(conn, policy, f"{policy.name}-kept") in left, policy.name
            assert _expected(conn, policy, f"{policy.name}-gone") not in left, policy.name
            assert removed[policy.name] >= 1, policy.name


def test_audit_months_past_the_window_are_archived_identically_then_dropped(
    authmodels_fresh_engine: Engine, policies: list[Policy]
) -> None:
    (audit,) = [p for p in policies if p.name == "audit_logs"]
    assert audit.archive_to == "auth.audit_logs_archive"
    now = datetime.now(UTC)
    old = now - audit.keep_for - timedelta(days=62)  # a month wholly past the window
    columns = "id, user_id, event_type, event_status, details, created_at"
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(
            text("SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, CAST(:m AS date))"),
            {"m": old},
        )
        conn.execute(
            text(
                "INSERT INTO auth.audit_logs (event_type, details, created_at) "
                "SELECT 'login', jsonb_build_object('n', g), :t FROM generate_series(1, 3) g"
            ),
            {"t": old},
        )
        conn.execute(text("INSERT INTO auth.audit_logs (event_type) VALUES ('logout')"))
        originals = conn.execute(
            text(f"SELECT {columns} FROM auth.audit_logs WHERE created_at = :t ORDER BY id"),
            {"t": old},
        ).all()
    report = purge(authmodels_fresh_engine, policies=[audit], now=now)
    assert report.rows >= 3
    with authmodels_fresh_engine.connect() as conn:
        archived = conn.execute(
            text(f"SELECT {columns} FROM auth.audit_logs_archive ORDER BY id")
        ).all()
        live = conn.execute(text("SELECT event_type FROM auth.audit_logs")).scalars().all()
    assert archived == originals
    assert live == ["logout"]


@pytest.mark.parametrize(
    ("grant", "refusal"),
    [
        ("grant_app_role", "no retention policy is visible to role"),
        ("grant_service_role", "which does not own schema auth"),
    ],
)
def test_a_purge_not_run_by_the_owner_is_refused_before_it_starts(
    authmodels_fresh_engine: Engine, grant: str, refusal: str
) -> None:
    with authmodels_fresh_engine.begin() as conn:
        _user(conn)
        conn.execute(
            text(
                "INSERT INTO auth.sessions (user_id, token_hash, created_at, expires_at) "
                f"SELECT id, {DIGEST_OF.format('id::text')}, now() - interval '100 days', "
                "now() - interval '60 days' "
                "FROM auth.users"
            )
        )
    runner = MigrationRunner(authmodels_fresh_engine.url)
    try:
        with application_role(runner, authmodels_fresh_engine.url) as (role, engine):
            runner.execute(f"SELECT auth.{grant}(:r)", {"r": role})
            with pytest.raises(ConfigurationError, match=refusal):
                if grant == "grant_app_role":
                    with engine.connect() as conn:
                        load_policies(conn)
                else:
                    purge(engine)
    finally:
        runner.dispose()
    with authmodels_fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.sessions")).scalar() == 1


def test_concurrent_month_drops_archive_each_month_once(authmodels_fresh_engine: Engine) -> None:
    """Three workers drop the same old months at once: one does it, the others leave it."""
    months = ["2024-01-01", "2024-02-01", "2024-03-01"]
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(
            text(
                "SELECT auth.ensure_monthly_partitions('auth.audit_logs', 0, '2024-01-01', "
                "'2024-03-01')"
            )
        )
        for month in months:
            conn.execute(
                text(
                    "INSERT INTO auth.audit_logs (event_type, created_at) "
                    "SELECT 'login', CAST(:m AS timestamptz) + g * interval '1 minute' "
                    "FROM generate_series(1, 50) g"
                ),
                {"m": month},
            )
    barrier = threading.Barrier(3)
    results: list[list[partitions.DroppedMonth]] = []
    failures: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(
                partitions.drop_months(
                    authmodels_fresh_engine,
                    "auth.audit_logs",
                    before=datetime(2024, 4, 1, tzinfo=UTC),
                    archive_to="auth.audit_logs_archive",
                )
            )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    dropped = sorted(m.name for result in results for m in result)
    assert dropped == ["audit_logs_p202401", "audit_logs_p202402", "audit_logs_p202403"]
    with authmodels_fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.audit_logs_archive")).scalar() == 150
        assert (
            conn.execute(text("SELECT count(DISTINCT id) FROM auth.audit_logs_archive")).scalar()
            == 150
        )
