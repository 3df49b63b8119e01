"""Rows the report's tests write as the owner, at chosen ages: login attempts, security events,
sessions and tokens, deliveries, step-up tokens, users with a given password hash.

Each helper writes with plain SQL, as the tables stand at head, so a test states exactly what
the database holds (the delivery logs and the legacy password hashes have no flow writing them
yet: issue 13). Ages are intervals before the transaction's ``now()``, which the report's
queries also use, so a row 4 minutes old is inside a 5-minute window whenever the test runs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from authmodels.models import User
from authmodels.security.privacy import mask_email, mask_phone
from authmodels.services.settings import FlowSettings
from authmodels.testing.factories import UserFactory

ARGON2ID = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
BCRYPT = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"


def digest(label: str) -> bytes:
    """A value of the shape ``auth.is_token_digest`` accepts (key id ``k1``), from ``label``."""
    return b"\x01\x02k1" + hashlib.sha256(label.encode()).digest()


def _run(db: Session, statement: TextClause, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        db.execute(statement, list(rows))


def login_attempts(
    db: Session,
    count: int,
    *,
    result: str = "failed_password",
    ip: str | None = "203.0.113.9",
    identifiers: Sequence[str] | None = None,
    ago: str = "1 minute",
    user: User | None = None,
) -> None:
    """``count`` attempts from ``ip`` (None: no address), each against the next identifier of
    ``identifiers`` (default: one identifier)."""
    names = identifiers or ["victim@example.com"]
    _run(
        db,
        text(
            "INSERT INTO auth.login_attempts (user_id, identifier_hash, ip_hash, attempt_result, "
            "failure_reason, created_at) VALUES (:user_id, :identifier, :ip, "
            "CAST(:result AS auth.login_attempt_result), :reason, now() - CAST(:ago AS interval))"
        ),
        [
            {
                "user_id": user.id if user else None,
                "identifier": digest(names[i % len(names)]),
                "ip": None if ip is None else digest(ip),
                "result": result,
                "reason": None if result == "success" else "test",
                "ago": ago,
            }
            for i in range(count)
        ],
    )


def security_events(
    db: Session,
    count: int,
    event_type: str,
    severity: str,
    *,
    ago: str = "1 minute",
    user: User | None = None,
) -> None:
    """``count`` security events of one type."""
    _run(
        db,
        text(
            "INSERT INTO auth.security_events (user_id, event_type, severity, ip_hash, "
            "created_at) VALUES (:user_id, :event_type, CAST(:severity AS "
            "auth.security_event_severity), :ip, now() - CAST(:ago AS interval))"
        ),
        [
            {
                "user_id": user.id if user else None,
                "event_type": event_type,
                "severity": severity,
                "ip": digest("203.0.113.9"),
                "ago": ago,
            }
            for _ in range(count)
        ],
    )


def sessions(
    db: Session,
    user: User,
    count: int,
    *,
    live: bool = True,
    revoked: bool = False,
    dpop: bool = False,
    ago: str = "1 minute",
    tokens: bool = False,
) -> list[uuid.UUID]:
    """``count`` sessions of ``user``: live, expired (``live=False``) or revoked; with a refresh
    and an access token each when ``tokens``."""
    ids = [uuid.uuid4() for _ in range(count)]
    _run(
        db,
        text(
            "INSERT INTO auth.sessions (id, user_id, token_hash, dpop_jkt, is_active, "
            "expires_at, revoked_at, created_at, last_activity_at) VALUES (:id, :user_id, :hash, "
            ":jkt, NOT :revoked, now() + CAST(:expires AS interval), "
            "CASE WHEN :revoked THEN now() END, "
            "now() - CAST(:ago AS interval), now() - CAST(:ago AS interval))"
        ),
        [
            {
                "id": i,
                "user_id": user.id,
                "hash": digest(f"session {i}"),
                "jkt": "j" * 43 if dpop else None,
                "revoked": revoked,
                "expires": "1 hour" if live else "-1 second",
                "ago": ago,
            }
            for i in ids
        ],
    )
    if tokens:
        for table in ("refresh_tokens", "access_tokens"):
            _run(
                db,
                text(
                    f"INSERT INTO auth.{table} (user_id, session_id, token_hash, dpop_jkt, "
                    "expires_at) SELECT user_id, id, :hash, dpop_jkt, "
                    "greatest(expires_at, now() + interval '1 minute') FROM auth.sessions "
                    "WHERE id = :id"
                ),
                [{"id": i, "hash": digest(f"{table} {i}")} for i in ids],
            )
            if not live or revoked:
                db.execute(
                    text(f"UPDATE auth.{table} SET revoked_at = now() WHERE session_id = ANY(:i)"),
                    {"i": ids},
                )
    return ids


def settings_for_tests() -> FlowSettings:
    """The run's key rings (the pytest plugin exports them to the environment)."""
    return FlowSettings.from_env()


def deliveries(
    db: Session,
    channel: str,
    statuses: dict[str, int],
    *,
    ago: str = "1 day",
    cost: Decimal | None = None,
    currency: str | None = None,
) -> None:
    """E-mails (``channel="email"``) or text messages in the given statuses."""
    table = "email_delivery_logs" if channel == "email" else "sms_delivery_logs"
    # the recipient as the delivery flows keep it (revision 0032): a keyed hash, a masked form
    recipient = "recipient_hash, recipient_masked" + (
        ", cost, currency" if channel == "sms" else ""
    )
    values = ":to_hash, :to_masked" + (", :cost, :currency" if channel == "sms" else "")
    rows = []
    for status, n in statuses.items():
        for i in range(n):
            rows.append(
                {
                    "status": status,
                    **_recipient(channel, i),
                    "cost": cost,
                    "currency": currency,
                    "error": "mailbox full" if status == "failed" else None,
                    "sent": status in ("sent", "delivered", "bounced"),
                    "delivered": status == "delivered",
                    "ago": ago,
                }
            )
    _run(
        db,
        text(
            f"INSERT INTO auth.{table} (template, status, provider, error_message, sent_at, "
            f"delivered_at, created_at, updated_at, {recipient}) VALUES ('otp', "
            "CAST(:status AS auth.delivery_status), 'test', :error, "
            "CASE WHEN :sent THEN now() - CAST(:ago AS interval) END, "
            "CASE WHEN :delivered THEN now() - CAST(:ago AS interval) END, "
            f"now() - CAST(:ago AS interval), now(), {values})"
        ),
        rows,
    )


def _recipient(channel: str, i: int) -> dict[str, object]:
    privacy = settings_for_tests().privacy
    if channel == "email":
        address = f"user{i}@example.com"
        return {"to_hash": privacy.email_hash(address), "to_masked": mask_email(address)}
    number = f"+1555000{i:04d}"
    return {"to_hash": privacy.phone_hash(number), "to_masked": mask_phone(number)}


def step_up_tokens(
    db: Session, user: User, *, used: int = 0, unused_live: int = 0, expired: int = 0
) -> None:
    """Step-up tokens of ``user``: used, still valid, and expired without use."""
    rows = []
    for kind, n in (("used", used), ("live", unused_live), ("expired", expired)):
        for i in range(n):
            created = "20 minutes" if kind == "expired" else "2 minutes"
            rows.append(
                {
                    "user_id": user.id,
                    "hash": digest(f"step-up {kind} {i} {uuid.uuid4()}"),
                    "created": created,
                    "used": kind == "used",
                }
            )
    _run(
        db,
        text(
            "INSERT INTO auth.step_up_tokens (user_id, token_hash, purpose, created_at, "
            "expires_at, used_at) VALUES (:user_id, :hash, 'role_change', "
            "now() - CAST(:created AS interval), "
            "now() - CAST(:created AS interval) + interval '10 minutes', "
            "CASE WHEN :used THEN now() - interval '1 minute' END)"
        ),
        rows,
    )


def users_with_hashes(db: Session, hashes: Sequence[str], *, deleted: bool = False) -> None:
    """Accounts with the given password hashes (as a migration from another system leaves)."""
    _run(
        db,
        text(
            "INSERT INTO auth.users (email, password_hash, deleted_at) "
            "VALUES (:email, :hash, CASE WHEN :deleted THEN now() END)"
        ),
        [
            {"email": f"legacy-{uuid.uuid4().hex[:12]}@example.com", "hash": h, "deleted": deleted}
            for h in hashes
        ],
    )


def new_user(db: Session) -> User:
    """A committed-in-this-transaction user (argon2id hash, the test hasher's)."""
    return UserFactory(db)()
