"""Re-encryption of every envelope column to the newest key of the encryption ring.

Every column that holds :class:`~authmodels.security.encryption.FieldCipher` envelopes carries a
``field_envelope()`` CHECK in its model (:func:`authmodels.models.checks.field_envelope`):
:data:`ENCRYPTED_COLUMNS` is derived from those checks, so a new encrypted column is re-encrypted
as soon as its model declares it. The associated data of each value is ``aad_for(table, column,
id)``.

:func:`reencrypt` moves every envelope to the current key of the ring, one (table, column, old
key) at a time, in batches of ``batch_size`` rows, **committing each batch**. Progress is the
data itself (an envelope names its key in its header), so an interrupted run loses at most one
uncommitted batch and the next run continues where it stopped; a second run finds nothing to do.
Each row is rewritten with a compare-and-set (``WHERE <column> = :old``), so a value stored
concurrently under the new key is never overwritten; ``updated_at`` is left alone
(``authmodels.keep_updated_at``): a storage conversion is not a change of the row. Rows another
transaction holds locked are skipped (``SKIP LOCKED``) and left for the next run, so a
re-encryption never waits behind, nor blocks, the application. It is the owner's job (row-level
security would hide rows from any other role); ``authmodels keys reencrypt`` runs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import CheckConstraint, text
from sqlalchemy.orm import Session

from authmodels import rls
from authmodels.errors import InvalidInputError
from authmodels.models import Base
from authmodels.models.checks import FIELD_ENVELOPE
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = ["ENCRYPTED_COLUMNS", "MAX_BATCH_SIZE", "ReencryptReport", "reencrypt"]

#: Most rows :func:`reencrypt` takes per batch.
MAX_BATCH_SIZE = 100_000


def _envelope_columns() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(table, columns) of every ``field_envelope()`` check of the models, by table name."""
    found = []
    for table in sorted(Base.metadata.tables.values(), key=lambda t: t.name):
        checked = {
            constraint.info[FIELD_ENVELOPE]
            for constraint in table.constraints
            if isinstance(constraint, CheckConstraint) and FIELD_ENVELOPE in constraint.info
        }
        if checked:
            found.append((table.name, tuple(c.name for c in table.columns if c.name in checked)))
    return tuple(found)


#: Every envelope column of schema ``auth``: (table, columns), from the models' checks.
ENCRYPTED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = _envelope_columns()


@dataclass
class ReencryptReport:
    """What :func:`reencrypt` did.

    Attributes:
        values: envelopes re-encrypted, per (table, column).
        from_keys: envelopes re-encrypted, per old key id.
        batches: batches committed.
    """

    values: Counter[tuple[str, str]] = field(default_factory=Counter)
    from_keys: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    @property
    def total(self) -> int:
        """Envelopes re-encrypted."""
        return sum(self.values.values())


def _key_id_sql(column: str) -> str:
    # an envelope starts with version (1 byte), len(key id) (1 byte), key id (ASCII)
    return f"convert_from(substring({column} FROM 3 FOR get_byte({column}, 1)), 'SQL_ASCII')"


@database_errors
def reencrypt(
    db: Session, *, batch_size: int = 500, cipher: FieldCipher | None = None
) -> ReencryptReport:
    """Re-encrypt every envelope of :data:`ENCRYPTED_COLUMNS` under the current key.

    Works one (table, column, old key) at a time, ``batch_size`` rows per transaction, and
    **commits after each batch** (see the module docstring: resumable, idempotent).

    Args:
        db: a session outside any work of its own (it is committed).
        batch_size: rows per batch.
        cipher: the key ring to use; ``FlowSettings.encryption_keys`` when None. Every old key
            still in use must be in it.

    Returns:
        What was re-encrypted.

    Raises:
        UnknownKeyError: an envelope names a key that is not in the ring (nothing of that
            batch is written; batches before it stay committed).
        ConfigurationError: the session's role does not own schema ``auth`` (row-level
            security would hide rows from it: re-encryption is the owner's job).
        InvalidInputError: ``batch_size`` is not an integer from 1 to 100,000, or ``cipher``
            not a :class:`~authmodels.security.encryption.FieldCipher`.
    """
    _inputs.integer(batch_size, "batch_size", minimum=1, maximum=MAX_BATCH_SIZE)
    if cipher is not None and not isinstance(cipher, FieldCipher):
        raise InvalidInputError(
            f"cipher must be a FieldCipher, not {type(cipher).__name__}", field="cipher"
        )
    rls.require_owner(db, "re-encryption")
    cipher = cipher or settings_for(db).cipher
    report = ReencryptReport()
    for table, columns in ENCRYPTED_COLUMNS:
        for column in columns:
            old_keys = db.execute(
                text(
                    f"SELECT DISTINCT {_key_id_sql(column)} FROM auth.{table} "  # noqa: S608
                    f"WHERE {column} IS NOT NULL AND {_key_id_sql(column)} <> :current"
                ),
                {"current": cipher.current},
            ).scalars()
            for old_key in sorted(old_keys):
                _reencrypt_key(db, cipher, table, column, old_key, batch_size, report)
    db.commit()
    return report


def _reencrypt_key(
    db: Session,
    cipher: FieldCipher,
    table: str,
    column: str,
    old_key: str,
    batch_size: int,
    report: ReencryptReport,
) -> None:
    """Re-encrypt the envelopes of one column made with ``old_key``, batch after batch."""
    select_batch = text(
        f"SELECT id, {column} AS envelope FROM auth.{table} "  # noqa: S608 (constant names)
        f"WHERE {column} IS NOT NULL AND {_key_id_sql(column)} = :old_key "
        "ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
    )
    # compare-and-set: a value written meanwhile (under the new key) is left alone
    rewrite = text(
        f"UPDATE auth.{table} SET {column} = :new WHERE id = :id AND {column} = :old"  # noqa: S608
    )
    while True:
        db.execute(text("SELECT set_config('authmodels.keep_updated_at', 'on', true)"))
        rows = db.execute(select_batch, {"old_key": old_key, "n": batch_size}).all()
        if not rows:
            db.commit()
            return
        for row in rows:
            new = cipher.reencrypt(row.envelope, aad=aad_for(table, column, row.id))
            db.execute(rewrite, {"id": row.id, "new": new, "old": row.envelope})
        db.commit()
        report.values[(table, column)] += len(rows)
        report.from_keys[old_key] += len(rows)
        report.batches += 1
