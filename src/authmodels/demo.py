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

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from authmodels import config as am_config
from authmodels.db import create_db_engine, resolve_url
from authmodels.migrations import SCHEMA, VERSION_TABLE, alembic_config
from authmodels.models import AuditLog, User
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.security.hashing import TokenHasher, new_token
from authmodels.security.passwords import PasswordHasher


def _current_revision(engine_url: object) -> str | None:
    engine = create_db_engine(engine_url)  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
            )
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def _ensure_keys(say: Callable[[str], None]) -> None:
    for var in (am_config.HASH_KEYS_VAR, am_config.ENCRYPTION_KEYS_VAR):
        if not os.environ.get(var):
            os.environ[var] = am_config.format_key_ring({"demo": secrets.token_bytes(32)})
            say(f"  {var} is not set: using a throwaway key for this run")


def run(url: str | None = None, *, say: Callable[[str], None] = print) -> int:
    """Migrate to head and run the example; returns the process exit status."""
    _ensure_keys(say)
    resolved = resolve_url(url)
    shown = resolved.render_as_string(hide_password=True)
    before = _current_revision(resolved)
    cfg = alembic_config(resolved)
    command.upgrade(cfg, "head")
    after = _current_revision(resolved)
    script = ScriptDirectory.from_config(cfg)
    applied = [
        rev.revision
        for rev in reversed(list(script.iterate_revisions(after, before or "base")))
        if rev.revision != before
    ]
    say(f"database: {shown}")
    if applied:
        say(f"migrated from {before or 'an empty database'} to {after}, {len(applied)} revisions:")
        for rev_id in applied:
            doc = (script.get_revision(rev_id).doc or "").splitlines()[0]
            say(f"  {rev_id:<32} {doc}")
    else:
        say(f"already at head ({after})")

    settings = am_config.Settings.from_env()
    passwords = PasswordHasher()
    tokens = TokenHasher.from_ring(settings.require_hash_keys())
    cipher = FieldCipher.from_ring(settings.require_encryption_keys())

    engine = create_db_engine(resolved)
    try:
        with Session(engine) as db, db.begin():
            say("example (one transaction, rolled back at the end):")
            user = User(email="ada@example.com", password_hash=passwords.hash("correct horse"))
            db.add(user)
            db.flush()
            say(f"  created user {user.email} ({user.id})")
            say(f"  password stored as {user.password_hash[:32]}...")
            say(
                "  login with the right password: "
                f"{passwords.verify(user.password_hash, 'correct horse')}; "
                f"with a wrong one: {passwords.verify(user.password_hash, 'wrong horse')}"
            )
            raw = new_token()
            digest = tokens.digest(raw)
            say(f"  token handed to the client: {raw[:12]}... (only its digest is stored:")
            say(f"    key id {tokens.key_id_of(digest)!r}, {len(digest)} bytes HMAC-SHA256)")
            say(f"  the token matches its digest: {tokens.matches(raw, digest)}")
            aad = aad_for("two_factor_auth", "secret_encrypted", user.id)
            envelope = cipher.encrypt(b"JBSWY3DPEHPK3PXP", aad=aad)
            say(
                f"  a TOTP seed encrypted for this row: {len(envelope)} bytes, "
                f"decrypts back: {cipher.decrypt(envelope, aad=aad) == b'JBSWY3DPEHPK3PXP'}"
            )
            db.add(
                AuditLog(
                    user_id=user.id,
                    event_type="login",
                    event_status="success",
                    details={"method": "password"},
                )
            )
            db.flush()
            events = db.scalars(select(AuditLog.event_type).where(AuditLog.user_id == user.id))
            say(f"  audit trail of the user: {list(events)}")
            counted = db.execute(
                text("SELECT count(*) FROM auth.users WHERE password_hash LIKE '$argon2id$%'")
            ).scalar()
            say(f"  users with an argon2id hash in this transaction: {counted}")
            db.rollback()
        say("example rolled back; the database stays at head")
    finally:
        engine.dispose()
    return 0
