"""Seed rows for the row-isolation invariant: one row per per-user table and user, as data.

Each entry of :data:`SEEDS` gives the columns of one row that belongs to a user (``USER``). The
rows are written as the owner, once per user, in this order (an entry may reference the row an
earlier entry made for the same user with :class:`Ref`). Values that must have a real shape are
made by the library itself: token digests by ``TokenHasher``, envelopes by ``FieldCipher``.

A table that the catalog says holds per-user rows but that has no entry here makes the isolation
test fail, naming it: add its entry (the columns a row needs, owned by ``USER``).
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from authmodels.security import FieldCipher, TokenHasher, aad_for
from tests.invariants.catalog import RELATION_OID, SCHEMA, ident, sql_name


@dataclass(frozen=True)
class Marker:
    """A value made for each row (see the constants below)."""

    name: str


@dataclass(frozen=True)
class Ref:
    """The primary key of the row the entry for ``table`` made for the same user."""

    table: str


USER = Marker("the user who owns the row")
PEER = Marker("a second user of the same owner's world (the other party of an exchange)")
EMAIL = Marker("the owner's e-mail address")
DIGEST = Marker("a keyed digest of a random token (TokenHasher)")
ENVELOPE = Marker("an AES-256-GCM envelope of a random secret (FieldCipher)")
NEW_ID = Marker("a new uuid")
UNIQUE = Marker("a unique text value")
PUBLIC_KEY = Marker("a base64 X25519 public key")
BYTES_32 = Marker("32 random bytes")
BYTES_16 = Marker("16 random bytes")
IN_A_DAY = Marker("now() + 1 day")
IN_A_WEEK = Marker("now() + 7 days")
IN_FIVE_MINUTES = Marker("now() + 5 minutes")
NOW = Marker("now()")

#: One row per table and user, in dependency order.
SEEDS: dict[str, dict[str, Any]] = {
    "user_profiles": {"user_id": USER, "display_name": "seed"},
    "user_devices": {
        "user_id": USER,
        "fingerprint_hash": DIGEST,
        "trust_token_hash": DIGEST,
        "trusted_at": NOW,
        "trust_expires_at": IN_A_WEEK,
    },
    "sessions": {
        "user_id": USER,
        "device_id": Ref("user_devices"),
        "expires_at": IN_A_DAY,
        "token_hash": DIGEST,
        "refresh_token_hash": DIGEST,
        "ip_hash": DIGEST,
        "ua_hash": DIGEST,
    },
    "refresh_tokens": {
        "user_id": USER,
        "session_id": Ref("sessions"),
        "expires_at": IN_A_DAY,
        "token_hash": DIGEST,
    },
    "access_tokens": {
        "user_id": USER,
        "session_id": Ref("sessions"),
        "expires_at": IN_A_DAY,
        "token_hash": DIGEST,
    },
    "password_reset_tokens": {"user_id": USER, "expires_at": IN_A_DAY, "token_hash": DIGEST},
    "email_verification_tokens": {
        "user_id": USER,
        "email": EMAIL,
        "expires_at": IN_A_DAY,
        "token_hash": DIGEST,
    },
    "webauthn_credentials": {
        "user_id": USER,
        "credential_id": BYTES_16,
        "cose_public_key": BYTES_32,
    },
    "device_flows": {
        "user_id": USER,
        "client_id": "seed-cli",
        "expires_at": IN_A_DAY,
        "retention_expires_at": IN_A_WEEK,
        "device_code_hash": DIGEST,
        "user_code_hash": DIGEST,
    },
    "step_up_tokens": {
        "user_id": USER,
        "token_hash": DIGEST,
        "purpose": "seed.check",
        "expires_at": IN_FIVE_MINUTES,
    },
    "audit_logs": {
        "user_id": USER,
        "actor_user_id": USER,
        "target_user_id": USER,
        "event_type": "login",
        "action": "seed.check",
    },
    "audit_logs_archive": {
        "id": NEW_ID,
        "user_id": USER,
        "event_type": "login",
        "details": Jsonb({}),
        "event_status": "success",
        "created_at": NOW,
    },
    "login_attempts": {"user_id": USER, "identifier_hash": DIGEST, "attempt_result": "success"},
    "security_events": {"user_id": USER, "event_type": "seed.check", "severity": "low"},
    "password_history": {
        "user_id": USER,
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVk$c2VlZHNlZWRzZWVk",
    },
    "email_delivery_logs": {
        "user_id": USER,
        "recipient_hash": DIGEST,
        "recipient_masked": "s***@example.test",
        "template": "seed",
        "provider": "seed",
    },
    "sms_delivery_logs": {
        "user_id": USER,
        "recipient_hash": DIGEST,
        "recipient_masked": "+15****00",
        "template": "seed",
        "provider": "seed",
    },
    "two_factor_auth": {"user_id": USER, "secret_encrypted": ENVELOPE},
    "two_factor_backup_codes": {"user_id": USER, "code_hash": DIGEST},
    "oauth_connections": {"user_id": USER, "provider": "seed", "provider_user_id": UNIQUE},
    "api_keys": {"user_id": USER, "name": "seed", "prefix": UNIQUE, "key_hash": DIGEST},
    "account_recovery": {
        "user_id": USER,
        "method": "email",
        "token_hash": DIGEST,
        "expires_at": IN_A_DAY,
    },
    "session_audits": {"user_id": USER, "session_id": Ref("sessions"), "action": "created"},
    "magic_link_tokens": {
        "user_id": USER,
        "token_hash": DIGEST,
        "client_hash": DIGEST,
        "expires_at": IN_FIVE_MINUTES,
    },
    "flow_requests": {"user_id": USER, "flow": "password_reset", "identifier_hash": DIGEST},
    "device_keys": {
        "user_id": USER,
        "device_id": "seed-device",
        "public_key": PUBLIC_KEY,
        "private_key_encrypted": ENVELOPE,
    },
    "conversations": {"created_by": USER, "title": "seed"},
    "conversation_participants": {"conversation_id": Ref("conversations"), "user_id": USER},
    "messages": {"conversation_id": Ref("conversations"), "sender_id": USER, "content": "seed"},
    "key_exchanges": {
        "conversation_id": Ref("conversations"),
        "initiator_id": USER,
        "peer_id": PEER,
        "shared_secret_hash": BYTES_32,
    },
    "device_key_events": {"event_type": "exchange_failed", "user_id": USER, "reason": "seed"},
}


@dataclass(frozen=True)
class World:
    """A user, the second user of their exchanges, and the rows seeded for them."""

    label: str
    user: uuid.UUID
    peer: uuid.UUID
    emails: tuple[str, str]

    @property
    def user_ids(self) -> frozenset[str]:
        return frozenset({str(self.user), str(self.peer)})


def create_world(conn: Connection, label: str) -> World:
    """Insert two users (owner and peer) as the owner; the :class:`World` they make."""
    tag = uuid.uuid4().hex[:8]
    emails = (
        f"invariants-{label}-{tag}@example.test",
        f"invariants-{label}-peer-{tag}@example.test",
    )
    ids = [
        conn.scalar(
            text(
                f"INSERT INTO {sql_name('users')} (email, password_hash) VALUES (:e, '!unusable') "
                "RETURNING id"
            ),
            {"e": email},
        )
        for email in emails
    ]
    return World(label, ids[0], ids[1], emails)


def seed_world(conn: Connection, world: World, tables: set[str]) -> list[str]:
    """Insert :data:`SEEDS` for ``world`` as the owner; the entries that failed, as sentences.

    Entries for tables the database does not have (an older revision) are skipped, and so are
    columns a table does not have; an entry that fails is rolled back alone and reported.
    """
    hasher = TokenHasher({"seed": os.urandom(32)})
    cipher = FieldCipher({"seed": os.urandom(32)})
    made: dict[str, object] = {}
    failures = []
    for table, spec in SEEDS.items():
        if table not in tables:
            continue
        present = set(
            conn.scalars(
                text(
                    f"SELECT attname FROM pg_attribute WHERE attrelid = {RELATION_OID} "
                    "AND attnum > 0 AND NOT attisdropped"
                ),
                {"schema": SCHEMA, "table": table},
            )
        )
        values = {
            column: _value(value, world, made, hasher, cipher, table, column)
            for column, value in spec.items()
            if column in present
        }
        names = ", ".join(ident(c) for c in values)
        params = ", ".join(f":{c}" for c in values)
        key = ident("id" if "id" in present else next(iter(values)))
        try:
            with conn.begin_nested():
                made[table] = conn.scalar(
                    text(
                        f"INSERT INTO {sql_name(table)} ({names}) VALUES ({params}) RETURNING {key}"
                    ),
                    values,
                )
        except DBAPIError as exc:
            failures.append(
                f"the seed row of {SCHEMA}.{table} for user {world.label} could not be written "
                f"({type(exc.orig).__name__}: {str(exc.orig).splitlines()[0]}): "
                "update its entry in tests/invariants/seeds.py"
            )
    return failures


def _value(
    value: Any,
    world: World,
    made: dict[str, object],
    hasher: TokenHasher,
    cipher: FieldCipher,
    table: str,
    column: str,
) -> Any:
    now = datetime.now(UTC)
    if isinstance(value, Ref):
        return made.get(value.table)
    if not isinstance(value, Marker):
        return value
    simple: dict[Marker, Any] = {
        USER: world.user,
        PEER: world.peer,
        EMAIL: world.emails[0],
        NEW_ID: uuid.uuid4(),
        UNIQUE: f"seed{uuid.uuid4().hex[:12]}",
        BYTES_32: os.urandom(32),
        BYTES_16: os.urandom(16),
        IN_A_DAY: now + timedelta(days=1),
        IN_A_WEEK: now + timedelta(days=7),
        IN_FIVE_MINUTES: now + timedelta(minutes=5),
        NOW: now,
    }
    if value in simple:
        return simple[value]
    if value is DIGEST:
        return hasher.digest(uuid.uuid4().hex)
    if value is ENVELOPE:
        return cipher.encrypt(os.urandom(20), aad=aad_for(table, column, uuid.uuid4()))
    if value is PUBLIC_KEY:
        return base64.b64encode(os.urandom(32)).decode()
    raise AssertionError(f"unknown seed marker {value}")
