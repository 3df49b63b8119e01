"""``authmodels keys``: new key ring entries, and re-encryption under the current key."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from authmodels.cli.common import URL, CommandSet, Context
from authmodels.config import Settings


def register(commands: CommandSet) -> None:
    """The ``keys`` commands."""
    keys = commands.group("keys", help="key rings")
    generate = keys.command(
        "generate", _generate, help="print a new key ring entry (kid:base64key)", uses=()
    )
    generate.add_argument("--id", default=None, help="key id (default: the current month)")
    reencrypt = keys.command(
        "reencrypt",
        _reencrypt,
        help="move every encrypted column to the current encryption key",
        description=(
            "Re-encrypt every encrypted column under the current key of\n"
            "AUTHMODELS_ENCRYPTION_KEYS, in batches that commit on their own (resumable). Run it\n"
            "as the owner of the tables."
        ),
        uses=(URL,),
    )
    reencrypt.add_argument("--batch-size", type=int, default=500, help="rows per batch")


def _generate(ctx: Context) -> int:
    kid = ctx.args.id or datetime.now(UTC).strftime("%Y-%m")
    ctx.say(f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}")
    return 0


def _reencrypt(ctx: Context) -> int:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from authmodels.security.encryption import FieldCipher
    from authmodels.services.reencryption import reencrypt

    cipher = FieldCipher.from_ring(Settings.from_env().require_encryption_keys())
    engine = ctx.engine()
    bar = ctx.progress("re-encrypting", None)
    bar.update(0, "batch(es) committed")
    batches = [0]

    def committed(_session: Any) -> None:  # reencrypt commits after every batch
        batches[0] += 1
        bar.update(batches[0], "batch(es) committed")

    try:
        with Session(engine) as db:
            event.listen(db, "after_commit", committed)
            report = reencrypt(db, batch_size=ctx.args.batch_size, cipher=cipher)
    finally:
        engine.dispose()
    for (table, column), count in sorted(report.values.items()):
        ctx.say(f"auth.{table}.{column}: {count} re-encrypted")
    old_keys = ", ".join(sorted(report.from_keys)) or "no other key"
    ctx.say(
        f"{report.total} value(s) moved to key {cipher.current!r} from {old_keys} "
        f"in {report.batches} batch(es)"
    )
    return 0
