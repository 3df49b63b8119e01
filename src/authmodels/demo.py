"""``authmodels demo``: migrate a database to head and show the library at work on it.

With no database configured this runs on the embedded PostgreSQL under ``./.authmodels/``. The
example's rows are written in one transaction that is rolled back at the end, so the database is
left migrated and empty. Keys: the configured key rings, or throwaway ones generated for this run
(said on the output; nothing is written anywhere).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import timedelta

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, pool, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels import config as am_config
from authmodels.db import locate_database, open_engine
from authmodels.errors import AuthenticationError, RefreshTokenReused
from authmodels.migrations import SCHEMA, VERSION_TABLE, alembic_config
from authmodels.models import AuditLog, User
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.security.passwords import PasswordHasher
from authmodels.services import sessions
from authmodels.services.durable import CALLER_TRANSACTION, DURABLE_WRITES_KEY
from authmodels.services.settings import FlowSettings, use_settings


def _current_revision(conn: Connection) -> str | None:
    ctx = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
    )
    revision = ctx.get_current_revision()
    conn.rollback()
    return revision


def _ensure_keys(say: Callable[[str], None]) -> None:
    for var in (am_config.HASH_KEYS_VAR, am_config.ENCRYPTION_KEYS_VAR):
        if not os.environ.get(var):
            os.environ[var] = am_config.format_key_ring({"demo": secrets.token_bytes(32)})
            say(f"  {var} is not set: using a throwaway key for this run")


def run(url: str | URL | None = None, *, say: Callable[[str], None] = print) -> int:
    """Migrate to head and run the example; returns the process exit status."""
    _ensure_keys(say)
    location = locate_database(url, source="--url")
    engine = open_engine(location, poolclass=pool.NullPool)
    cfg = alembic_config()
    with engine.connect() as conn:
        before = _current_revision(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
        after = _current_revision(conn)
    script = ScriptDirectory.from_config(cfg)
    applied = [
        rev.revision
        for rev in reversed(list(script.iterate_revisions(after, before or "base")))
        if rev.revision != before
    ]
    say(f"database: {location.shown} (from {location.source})")
    if applied:
        say(f"migrated from {before or 'an empty database'} to {after}, {len(applied)} revisions:")
        for rev_id in applied:
            doc = (script.get_revision(rev_id).doc or "").splitlines()[0]
            say(f"  {rev_id:<32} {doc}")
    else:
        say(f"already at head ({after})")

    settings = am_config.Settings.from_env()
    passwords = PasswordHasher()
    cipher = FieldCipher.from_ring(settings.require_encryption_keys())

    connection = engine.connect()
    outer = connection.begin()
    # What must survive a rollback (a revoked token family) the flows write in a transaction of
    # their own; this example keeps it in SAVEPOINTs of the outer transaction instead, so the
    # rollback at the end undoes it all.
    db = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        info={DURABLE_WRITES_KEY: CALLER_TRANSACTION},
    )
    use_settings(db, FlowSettings.from_env().replace(refresh_grace_window=timedelta(0)))
    try:
        say("example (one transaction, rolled back at the end):")
        user = User(email="ada@example.com", password_hash=passwords.hash("correct horse"))
        db.add(user)
        db.flush()
        say(f"  created user {user.email}; password stored as {user.password_hash[:30]}...")
        say(
            "  password check: right -> "
            f"{passwords.verify(user.password_hash, 'correct horse')}, wrong -> "
            f"{passwords.verify(user.password_hash, 'wrong horse')}"
        )
        issued = sessions.create_session(
            db, user, ttl=timedelta(hours=8), ip="203.0.113.7", user_agent="authmodels-demo"
        )
        say(f"  session token handed to the client: {issued.session_token[:10]}...")
        stored = db.execute(
            text("SELECT token_hash, ip_hash FROM auth.sessions WHERE id = :i"),
            {"i": issued.session.id},
        ).one()
        say(
            f"  stored instead: a {len(stored.token_hash)}-byte keyed digest, the IP as a "
            f"{len(stored.ip_hash)}-byte keyed hash"
        )
        valid = sessions.validate_session(db, issued.session_token)
        say(f"  validate_session -> session {valid.id} of {valid.user_id == user.id and 'ada'}")
        pair = sessions.rotate_refresh_token(db, issued.refresh_token)
        say(f"  refresh rotated: new {pair.token_type} access token {pair.access_token[:10]}...")
        try:
            sessions.rotate_refresh_token(db, issued.refresh_token)
        except RefreshTokenReused as exc:
            say(f"  the old refresh token presented again: {type(exc).__name__}: {exc}")
        try:
            sessions.validate_session(db, issued.session_token)
        except AuthenticationError as exc:
            say(f"  ...and the session is gone with it: {type(exc).__name__}")
        aad = aad_for("two_factor_auth", "secret_encrypted", user.id)
        envelope = cipher.encrypt(b"JBSWY3DPEHPK3PXP", aad=aad)
        say(
            f"  a TOTP seed encrypted for this row: {len(envelope)} bytes, "
            f"decrypts back: {cipher.decrypt(envelope, aad=aad) == b'JBSWY3DPEHPK3PXP'}"
        )
        events = db.scalars(
            select(AuditLog.event_type)
            .where(AuditLog.user_id == user.id)
            .order_by(AuditLog.created_at)
        )
        say(f"  audit trail of the user: {sorted(set(events))}")
    finally:
        db.close()
        outer.rollback()
        connection.close()
        engine.dispose()
    say("example rolled back; the database stays at head")
    return 0
