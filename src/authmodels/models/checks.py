"""CHECK constraints shared by the models: stored secrets have the shape authmodels writes.

A token or code is stored only as a :class:`~authmodels.security.hashing.TokenHasher` digest
(``b"\\x01" || len(kid) || kid || HMAC-SHA256``, 35 to 66 bytes) and a reversible secret only as
a :class:`~authmodels.security.encryption.FieldCipher` envelope (``b"\\x01" || len(kid) || kid ||
nonce || ciphertext || tag``). The SQL functions ``auth.is_token_digest(bytea)`` and
``auth.is_field_envelope(bytea)`` (revision 0009) check that shape, so a plaintext token, an
unkeyed SHA-256 or a base32 TOTP seed written by mistake is refused by the database itself.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint


def token_digest(column: str) -> CheckConstraint:
    """``CHECK (auth.is_token_digest(column))``, named ``ck_<table>_<column>_digest``."""
    return CheckConstraint(f"auth.is_token_digest({column})", name=f"{column}_digest")


#: ``CheckConstraint.info`` key of a :func:`field_envelope` check: the column it checks. The
#: re-encryption job finds every encrypted column by it
#: (:data:`authmodels.services.reencryption.ENCRYPTED_COLUMNS`).
FIELD_ENVELOPE = "field_envelope"


def field_envelope(column: str) -> CheckConstraint:
    """``CHECK (auth.is_field_envelope(column))``, named ``ck_<table>_<column>_envelope``.

    Declare it on every column that holds ``FieldCipher`` envelopes: it also enrols the column
    in the re-encryption to a new key.
    """
    return CheckConstraint(
        f"auth.is_field_envelope({column})",
        name=f"{column}_envelope",
        info={FIELD_ENVELOPE: column},
    )


def values_in(column: str, values: tuple[str, ...]) -> str:
    """SQL ``column IN ('a', 'b', ...)`` for a CHECK over a closed vocabulary."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"
