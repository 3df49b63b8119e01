"""Seed 002's security tables (revision 0010) on the schema at head.

The seed's dashboard queries give the answers it expects (grouping by ``ip_hash`` instead of a raw
address) and are served by the indexes built for them; the stored secrets have the shapes the
decisions require; row-level security shows each user their own rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from authmodels import rls
from authmodels.security.hashing import TokenHasher, new_token
from authmodels.security.privacy import PrivacyHasher, mask_email, mask_phone
from authmodels.security.totp import new_backup_codes, normalize_backup_code
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import application_role

KEY = {"k1": secrets.token_bytes(32)}
HASHER = TokenHasher(KEY)
PRIVACY = PrivacyHasher(KEY)
NOW = datetime.now(UTC)


def _constraint(error: DBAPIError) -> str | None:
    return getattr(getattr(error.orig, "diag", None), "constraint_name", None)


def _plan(conn: Connection, sql: str, **params: object) -> str:
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    rows = conn.execute(text(f"EXPLAIN {sql}"), params).scalars().all()
    conn.execute(text("RESET enable_seqscan"))
    return "\n".join(rows)


def _attempt(conn: Connection, ip: str, result: str, hours_ago: float = 1) -> None:
    conn.execute(
        text(
            "INSERT INTO auth.login_attempts (identifier_hash, ip_hash, attempt_result, "
            "failure_reason, created_at) VALUES (:i, :ip, :r, :why, :t)"
        ),
        {
            "i": HASHER.digest("ada@example.com"),
            "ip": PRIVACY.ip_hash(ip),
            "r": result,
            "why": None if result == "success" else "wrong password",
            "t": NOW - timedelta(hours=hours_ago),
        },
    )


FAILED_BY_IP = (
    "SELECT ip_hash, count(*) FROM auth.login_attempts "
    "WHERE attempt_result = 'failed_password' AND created_at > now() - interval '24 hours' "
    "GROUP BY ip_hash ORDER BY count(*) DESC LIMIT 10"
)


def test_failed_logins_by_ip_in_the_last_24_hours(conn: Connection) -> None:
    for _ in range(3):
        _attempt(conn, "203.0.113.7", "failed_password")
    _attempt(conn, "198.51.100.1", "failed_password")
    _attempt(conn, "198.51.100.1", "success")
    _attempt(conn, "203.0.113.7", "failed_password", hours_ago=30)  # outside the window

    rows = conn.execute(text(FAILED_BY_IP)).all()

    assert [(bytes(ip), n) for ip, n in rows] == [
        (PRIVACY.ip_hash("203.0.113.7"), 3),
        (PRIVACY.ip_hash("198.51.100.1"), 1),
    ]
    # login_attempts is partitioned by month (0015): each month's partition carries its own copy
    # of ix_login_attempts_attempt_result_created_at, named after the partition
    assert "attempt_result_created_at" in _plan(conn, FAILED_BY_IP)


def _delivery(conn: Connection, table: str, status: str, **extra: object) -> None:
    email = table == "email_delivery_logs"
    values = {
        "recipient_hash": PRIVACY.email_hash("ada@example.com")
        if email
        else PRIVACY.phone_hash("+254700000001"),
        "recipient_masked": mask_email("ada@example.com") if email else mask_phone("+254700000001"),
        "template": "otp",
        "provider": "test",
        "status": status,
        "error_message": "mailbox full" if status == "failed" else None,
        **extra,
    }
    names = ", ".join([*values, "sent_at"])
    params = ", ".join(f":{n}" for n in values)
    sent = "now()" if status in ("sent", "delivered") else "NULL"
    conn.execute(text(f"INSERT INTO auth.{table} ({names}) VALUES ({params}, {sent})"), values)


def test_email_delivery_success_rate(conn: Connection) -> None:
    for status in ("sent", "sent", "delivered", "failed", "pending"):
        _delivery(conn, "email_delivery_logs", status)
    query = "SELECT status::text, count(*) FROM auth.email_delivery_logs GROUP BY status ORDER BY 1"

    assert conn.execute(text(query)).all() == [
        ("delivered", 1),
        ("failed", 1),
        ("pending", 1),
        ("sent", 2),
    ]
    assert "ix_email_delivery_logs_status_created_at" in _plan(conn, query)


def test_sms_cost_of_the_last_month_is_exact_numeric(conn: Connection) -> None:
    _delivery(conn, "sms_delivery_logs", "sent", cost=Decimal("0.8000"), currency="KES")
    _delivery(conn, "sms_delivery_logs", "sent", cost=Decimal("0.8000"), currency="KES")
    _delivery(conn, "sms_delivery_logs", "sent", cost=Decimal("0.1000"), currency="KES")
    query = (
        "SELECT sum(cost), count(*) FROM auth.sms_delivery_logs "
        "WHERE created_at > now() - interval '30 days'"
    )

    assert conn.execute(text(query)).one() == (Decimal("1.7000"), 3)
    assert "ix_sms_delivery_logs_created_at" in _plan(conn, query)


def test_a_cost_needs_its_currency(refused: Callable[..., DBAPIError]) -> None:
    error = refused(
        "INSERT INTO auth.sms_delivery_logs (recipient_hash, recipient_masked, template, "
        "provider, cost) VALUES (:h, '+25********01', 'otp', 'test', 0.8)",
        h=PRIVACY.phone_hash("+254700000001"),
    )
    assert _constraint(error) == "ck_sms_delivery_logs_cost_has_currency"


def test_security_events_by_severity_in_the_last_7_days(conn: Connection) -> None:
    for severity, days_ago in [("low", 1), ("high", 2), ("high", 3), ("critical", 10)]:
        conn.execute(
            text(
                "INSERT INTO auth.security_events (event_type, severity, created_at) "
                "VALUES ('login_failed', :s, :t)"
            ),
            {"s": severity, "t": NOW - timedelta(days=days_ago)},
        )
    query = (
        "SELECT severity::text, count(*) FROM auth.security_events "
        "WHERE created_at > now() - interval '7 days' GROUP BY severity ORDER BY 1"
    )

    assert conn.execute(text(query)).all() == [("high", 2), ("low", 1)]
    assert "ix_security_events_created_at_summary" in _plan(conn, query)  # 0030's


def test_a_totp_time_step_is_accepted_once(conn: Connection, make_user: Callable[..., str]) -> None:
    owner = make_user()
    envelope = b"\x01\x02k1" + bytes(12 + 20 + 16)
    conn.execute(
        text("INSERT INTO auth.two_factor_auth (user_id, secret_encrypted) VALUES (:u, :e)"),
        {"u": owner, "e": envelope},
    )
    accept = text(
        "UPDATE auth.two_factor_auth SET last_used_step = :step, last_used_at = now() "
        "WHERE user_id = :u AND (last_used_step IS NULL OR last_used_step < :step) RETURNING id"
    )

    assert conn.execute(accept, {"u": owner, "step": 56_666_666}).all() != []
    assert conn.execute(accept, {"u": owner, "step": 56_666_666}).all() == []  # replayed
    assert conn.execute(accept, {"u": owner, "step": 56_666_665}).all() == []  # older
    assert conn.execute(accept, {"u": owner, "step": 56_666_667}).all() != []


def test_a_totp_seed_is_stored_only_as_an_envelope(
    make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    error = refused(
        "INSERT INTO auth.two_factor_auth (user_id, secret_encrypted) VALUES (:u, :e)",
        u=make_user(),
        e=b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DP",
    )
    assert _constraint(error) == "ck_two_factor_auth_secret_encrypted_envelope"


def test_a_backup_code_is_spent_once(conn: Connection, make_user: Callable[..., str]) -> None:
    owner = make_user()
    conn.execute(
        text("INSERT INTO auth.two_factor_auth (user_id, secret_encrypted) VALUES (:u, :e)"),
        {"u": owner, "e": b"\x01\x02k1" + bytes(48)},
    )
    codes = new_backup_codes()
    for code in codes:
        conn.execute(
            text("INSERT INTO auth.two_factor_backup_codes (user_id, code_hash) VALUES (:u, :h)"),
            {"u": owner, "h": HASHER.digest(normalize_backup_code(code))},
        )
    spend = text(
        "UPDATE auth.two_factor_backup_codes SET used_at = now() "
        "WHERE code_hash = ANY(:c) AND used_at IS NULL RETURNING id"
    )
    typed = codes[0].lower()
    candidates = HASHER.candidates(normalize_backup_code(typed))

    assert len(conn.execute(spend, {"c": candidates}).all()) == 1
    assert conn.execute(spend, {"c": candidates}).all() == []
    conn.execute(text("DELETE FROM auth.two_factor_auth WHERE user_id = :u"), {"u": owner})
    remaining = conn.execute(
        text("SELECT count(*) FROM auth.two_factor_backup_codes WHERE user_id = :u"),
        {"u": owner},
    ).scalar_one()
    assert remaining == 0  # the codes go with the enrolment


def test_oauth_raw_data_never_holds_provider_tokens(
    make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    error = refused(
        "INSERT INTO auth.oauth_connections (user_id, provider, provider_user_id, raw_data) "
        """VALUES (:u, 'google', '123', '{"sub": "123", "access_token": "ya29..."}')""",
        u=make_user(),
    )
    assert _constraint(error) == "ck_oauth_connections_raw_data_has_no_tokens"


def test_an_api_key_is_found_by_prefix_and_checked_by_digest(
    conn: Connection, make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    owner = make_user()
    raw = new_token()
    prefix = "am_" + raw[:8]
    conn.execute(
        text(
            "INSERT INTO auth.api_keys (user_id, name, prefix, key_hash, scopes) "
            "VALUES (:u, 'ci', :p, :h, ARRAY['read:users'])"
        ),
        {"u": owner, "p": prefix, "h": HASHER.digest(raw)},
    )
    stored = conn.execute(
        text(
            "SELECT key_hash, scopes FROM auth.api_keys WHERE prefix = :p "
            "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
        ),
        {"p": prefix},
    ).one()
    assert HASHER.matches(raw, bytes(stored[0]))
    assert stored[1] == ["read:users"]
    error = refused(
        "INSERT INTO auth.api_keys (user_id, name, prefix, key_hash) VALUES (:u, 'x', :p, :h)",
        u=owner,
        p=prefix,
        h=HASHER.digest(new_token()),
    )
    assert _constraint(error) == "uq_api_keys_prefix"


def test_a_trusted_device_needs_a_token_and_an_expiry(
    make_user: Callable[..., str], refused: Callable[..., DBAPIError]
) -> None:
    error = refused(
        "INSERT INTO auth.user_devices (user_id, fingerprint_hash, trust_token_hash, trusted_at) "
        "VALUES (:u, :f, :h, now())",
        u=make_user(),
        f=PRIVACY.client_hash("laptop"),
        h=HASHER.digest(new_token()),
    )
    assert _constraint(error) == "ck_user_devices_trust_is_complete"


# --- row-level security ------------------------------------------------------------------------


@pytest.fixture
def owner_engine(authmodels_fresh_engine: Engine) -> Engine:
    return authmodels_fresh_engine


def test_each_user_sees_only_their_own_security_rows(
    owner_engine: Engine, authmodels_fresh_database: URL
) -> None:
    with owner_engine.begin() as conn:
        a, b = (
            str(
                conn.execute(
                    text(
                        "INSERT INTO auth.users (email, password_hash) VALUES (:e, 'x') "
                        "RETURNING id"
                    ),
                    {"e": email},
                ).scalar_one()
            )
            for email in ("a@example.com", "b@example.com")
        )
        for owner in (a, b):
            conn.execute(
                text(
                    "INSERT INTO auth.login_attempts (user_id, identifier_hash, attempt_result) "
                    "VALUES (:u, :h, 'success')"
                ),
                {"u": owner, "h": HASHER.digest(owner)},
            )
            conn.execute(
                text(
                    "INSERT INTO auth.api_keys (user_id, name, prefix, key_hash) "
                    "VALUES (:u, 'k', :p, :h)"
                ),
                {"u": owner, "p": f"am_{owner[:8]}", "h": HASHER.digest(new_token())},
            )
    runner = MigrationRunner(authmodels_fresh_database)
    try:
        with application_role(runner, authmodels_fresh_database) as (_, app):
            with app.begin() as conn:
                rls.set_current_user(conn, a)
                seen = conn.execute(text("SELECT user_id::text FROM auth.login_attempts")).all()
                keys = conn.execute(text("SELECT user_id::text FROM auth.api_keys")).all()
                assert seen == [(a,)]
                assert keys == [(a,)]
                revoked = conn.execute(
                    text("UPDATE auth.api_keys SET revoked_at = now() WHERE user_id = :b"),
                    {"b": b},
                )
                assert revoked.rowcount == 0
            with pytest.raises(DBAPIError, match="row-level security"), app.begin() as conn:
                rls.set_current_user(conn, a)
                conn.execute(
                    text(
                        "INSERT INTO auth.login_attempts (user_id, identifier_hash, "
                        "attempt_result) VALUES (:u, :h, 'success')"
                    ),
                    {"u": a, "h": HASHER.digest(a)},
                )
    finally:
        runner.dispose()
