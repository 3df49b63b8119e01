"""``authmodels keys``: data keys (wrapped, listed, rotated), key-encryption keys, re-encryption.

::

    authmodels keys generate [--id KID]          print a new ring entry (the env provider)
    authmodels keys list                         rings, key ids, creation dates: never a key
    authmodels keys create RING [--id KID]       a new data key, wrapped; staged unless first
    authmodels keys rotate RING [--id KID]       make a staged key current
    authmodels keys retire RING KID              remove a key that is not current
    authmodels keys import                       wrap the environment's rings into the store
    authmodels keys rewrap [--from URI]          every data key under the current KEK
    authmodels keys kek create [--id ID]         a new KEK (in the token, or the key file)
    authmodels keys kek retire ID                destroy a KEK nothing is wrapped under
    authmodels keys reencrypt [--batch-size N]   every encrypted column to the current key

Every command but ``generate`` (whose output *is* a key, for the ``env`` provider) prints ids,
dates and counts only. The wrapped-key commands need ``AUTHMODELS_KEY_PROVIDER`` set to a
``file:`` or ``pkcs11:`` provider and ``AUTHMODELS_WRAPPED_KEYS`` (see
:mod:`authmodels.security.keys`).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from authmodels.cli.common import JSON, URL, CommandSet, Context
from authmodels.config import KEY_PROVIDER_VAR, Settings
from authmodels.errors import KeyManagementError

RINGS = ("hash", "encryption", "privacy")


def register(commands: CommandSet) -> None:
    """The ``keys`` commands."""
    keys = commands.group("keys", help="key rings, wrapped data keys, key-encryption keys")
    generate = keys.command(
        "generate", _generate, help="print a new key ring entry (kid:base64key)", uses=()
    )
    generate.add_argument("--id", default=None, help="key id (default: the current month)")
    keys.command(
        "list",
        _list,
        help="every data key: ring, id, creation date, KEK, current or not (never a key)",
        uses=(JSON,),
    )
    create = keys.command(
        "create",
        _create,
        help="a new random data key, wrapped under the current KEK",
        description=(
            "Add a new random data key to RING, wrapped under the current key-encryption key.\n"
            "The first key of a ring is its current key; a later one is staged: restart every\n"
            "instance (so that all can read what it will make), then `keys rotate RING`."
        ),
        uses=(JSON,),
    )
    create.add_argument("ring", choices=RINGS)
    create.add_argument("--id", default=None, help="key id (default: the current month)")
    rotate = keys.command(
        "rotate",
        _rotate,
        help="make a staged data key the current one",
        description=(
            "Make KID (default: the newest key) the current key of RING. Restart every\n"
            "instance after; for the encryption ring, `keys reencrypt` then moves the stored\n"
            "values, and digests under older keys keep matching while those keys stay."
        ),
        uses=(JSON,),
    )
    rotate.add_argument("ring", choices=RINGS)
    rotate.add_argument("--id", default=None, help="the key to make current (default: newest)")
    retire = keys.command(
        "retire", _retire, help="remove a data key that is no longer current", uses=(JSON,)
    )
    retire.add_argument("ring", choices=RINGS)
    retire.add_argument("id", help="the key id to remove")
    keys.command(
        "import",
        _import,
        help="wrap the rings of AUTHMODELS_*_KEYS into the store (leaving the env provider)",
        uses=(JSON,),
    )
    rewrap = keys.command(
        "rewrap",
        _rewrap,
        help="re-wrap every data key under the current KEK (KEK rotation; no row changes)",
        uses=(JSON,),
    )
    rewrap.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="URI",
        help="unwrap with this provider's KEKs instead (moving between providers)",
    )
    kek = keys.group("kek", help="key-encryption keys (in the token, or in the key file)")
    kek_create = kek.command(
        "create", _kek_create, help="make a new key-encryption key", uses=(JSON,)
    )
    kek_create.add_argument(
        "--id",
        default=None,
        help="its label / key id (default: the URI's object for pkcs11, kek-<month> for file)",
    )
    kek_retire = kek.command(
        "retire", _kek_retire, help="destroy a KEK no data key is wrapped under", uses=(JSON,)
    )
    kek_retire.add_argument("id", help="the KEK's label / key id")
    reencrypt = keys.command(
        "reencrypt",
        _reencrypt,
        help="move every encrypted column to the current encryption key",
        description=(
            "Re-encrypt every encrypted column under the current key of the encryption ring\n"
            "(AUTHMODELS_ENCRYPTION_KEYS, or the key provider's store), in batches that commit\n"
            "on their own (resumable). Run it as the owner of the tables."
        ),
        uses=(URL,),
    )
    reencrypt.add_argument("--batch-size", type=int, default=500, help="rows per batch")


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def _generate(ctx: Context) -> int:
    kid = ctx.args.id or _month()
    ctx.say(f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}")
    return 0


def _wrapping() -> Any:
    from authmodels.security.keys import WrappingKeyProvider, provider_from_env

    provider = provider_from_env()
    if not isinstance(provider, WrappingKeyProvider):
        raise KeyManagementError(
            f"{KEY_PROVIDER_VAR} is 'env' (or unset): the keys are the environment's "
            "AUTHMODELS_*_KEYS, there is no wrapped key to manage. Set it to "
            "file:/path/to/kek or a pkcs11: URI, and AUTHMODELS_WRAPPED_KEYS (`authmodels keys "
            "generate` prints an entry for the env provider)"
        )
    return provider


def _list(ctx: Context) -> int:
    from authmodels.security.keys import WrappingKeyProvider, provider_from_env

    provider = provider_from_env()
    rows: list[dict[str, Any]] = []
    if isinstance(provider, WrappingKeyProvider):
        store = provider.store()
        for key in store.keys:
            ids = [k.id for k in store.ring(key.ring)]
            current = store.current[key.ring]
            state = "staged" if ids.index(key.id) > ids.index(current) else "old"
            rows.append(
                {"ring": key.ring, "id": key.id, "created_at": key.created_at.isoformat(),
                 "kek": key.wrapped.kek, "current": current == key.id,
                 "state": "current" if current == key.id else state}
            )  # fmt: skip
    else:
        rings = provider.load()
        for name in RINGS:
            ring = rings.ring(name)
            for kid in ring.keys if ring is not None else ():
                is_current = ring is not None and ring.current == kid
                rows.append(
                    {"ring": name, "id": kid, "created_at": None, "kek": None,
                     "current": is_current, "state": "current" if is_current else "old"}
                )  # fmt: skip
    ctx.note(f"key provider: {provider.describe()}")
    ctx.say(f"{'ring':<11} {'key id':<32} {'created':<10}  {'wrapped under':<20} state")
    for row in rows:
        ctx.emit("key", **row)
        created = (row["created_at"] or "-")[:10]
        kek = row["kek"] or "(in clear, env)"
        ctx.say(f"{row['ring']:<11} {row['id']:<32} {created:<10}  {kek:<20} {row['state']}")
    if not rows:
        ctx.note("no data key: `authmodels keys create hash` (and encryption, privacy)")
    return 0


def _create(ctx: Context) -> int:
    provider = _wrapping()
    key = provider.create(ctx.args.ring, ctx.args.id or _month())
    current = provider.store().current[key.ring] == key.id
    ctx.emit("created", ring=key.ring, id=key.id, kek=key.wrapped.kek, current=current)
    state = (
        "it is the ring's current key"
        if current
        else f"staged: restart every instance, then `authmodels keys rotate {key.ring}`"
    )
    ctx.say(f"created {key.ring} key {key.id!r}, wrapped under KEK {key.wrapped.kek!r}: {state}")
    return 0


def _rotate(ctx: Context) -> int:
    ring = ctx.args.ring
    chosen = _wrapping().rotate(ring, ctx.args.id)
    ctx.emit("rotated", ring=ring, current=chosen)
    after = (
        "; then `authmodels keys reencrypt` moves the stored values"
        if ring == "encryption"
        else "; digests under older keys keep matching while those keys stay in the ring"
    )
    ctx.say(f"the current {ring} key is now {chosen!r}: restart every instance{after}")
    return 0


def _retire(ctx: Context) -> int:
    _wrapping().retire(ctx.args.ring, ctx.args.id)
    ctx.emit("retired", ring=ctx.args.ring, id=ctx.args.id)
    ctx.say(f"removed {ctx.args.ring} key {ctx.args.id!r}")
    return 0


def _import(ctx: Context) -> int:
    from authmodels.security.keys import EnvKeyProvider

    provider = _wrapping()
    imported = provider.import_rings(EnvKeyProvider(_environ()).load())
    for key in imported:
        ctx.emit("imported", ring=key.ring, id=key.id, kek=key.wrapped.kek)
        ctx.say(f"imported {key.ring} key {key.id!r}, wrapped under KEK {key.wrapped.kek!r}")
    ctx.say(
        f"{len(imported)} key(s) imported: remove AUTHMODELS_*_KEYS from the environment of "
        "every instance, and restart them with the key provider"
    )
    return 0


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _rewrap(ctx: Context) -> int:
    from authmodels.security.keys import kek_from_uri

    provider = _wrapping()
    source = kek_from_uri(ctx.args.source, _environ()) if ctx.args.source else None
    moved = provider.rewrap(source)
    target = provider.kek.current
    ctx.emit("rewrapped", kek=target, from_keks=dict(moved), total=sum(moved.values()))
    old = ", ".join(f"{kek} ({count})" for kek, count in sorted(moved.items())) or "no other KEK"
    ctx.say(f"{sum(moved.values())} data key(s) rewrapped under KEK {target!r} from {old}")
    return 0


def _kek_create(ctx: Context) -> int:
    provider = _wrapping()
    kek_id = ctx.args.id or (provider.kek.current if provider.kind == "pkcs11" else None)
    kek_id = kek_id or f"kek-{_month()}"
    provider.kek.create(kek_id)
    ctx.emit("kek_created", kek=kek_id, provider=provider.kek.describe())
    ctx.say(f"created KEK {kek_id!r} in {provider.kek.describe()}")
    return 0


def _kek_retire(ctx: Context) -> int:
    provider = _wrapping()
    provider.retire_kek(ctx.args.id)
    ctx.emit("kek_retired", kek=ctx.args.id)
    ctx.say(f"destroyed KEK {ctx.args.id!r} of {provider.kek.describe()}")
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
