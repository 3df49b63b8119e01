"""Legacy password hashes: the password history accepts every scheme the hasher reads.

Found in issue 13 ("account lifecycle"): accounts brought from seed 004's system hold bcrypt
hashes, and services moving to authmodels bring Django's and passlib's PBKDF2-SHA256 and
Django's Argon2 hashes. :class:`authmodels.security.passwords.PasswordHasher` reads them (and a
login replaces each with Argon2id), but ``ck_password_history_password_hash_format`` accepted
Argon2id and bcrypt only: a password change made before the account's first login since the
move kept its former hash in the history, and a PBKDF2 one was refused there.

What it does: the CHECK accepts the prefixes of every scheme the hasher reads (added ``NOT
VALID``, then validated, which takes ``SHARE UPDATE EXCLUSIVE`` only; every existing row passes,
the condition being wider).

Downgrade: history rows of the schemes the old CHECK refuses move to ``auth.quarantine`` (nothing
is deleted), then 0028's CHECK comes back the same way. Docs:
``docs/phases/0031-legacy-password-hashes.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from authmodels.revision_ops import (
    add_check_not_valid,
    quarantine_statement,
    restore_quarantined,
    step,
    validate_constraint,
)

revision: str = "0031_legacy_password_hashes"
down_revision: str | Sequence[str] | None = "0030_security_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "password_history"
CHECK = "ck_password_history_password_hash_format"
#: 0010's condition: Argon2id and bcrypt.
NARROW = r"password_hash ~ '^\$(argon2id|2[aby])\$'"
#: Every scheme PasswordHasher reads (authmodels.security.passwords.SCHEME_PREFIXES).
WIDE = (
    r"password_hash ~ '^(\$argon2id\$|\$2[aby]\$|pbkdf2_sha256\$|\$pbkdf2-sha256\$|argon2\$argon2)'"
)


def _replace_check(condition: str) -> None:
    with step():
        add_check_not_valid(TABLE, CHECK, condition)
    with step():
        validate_constraint(TABLE, CHECK)


def upgrade() -> None:
    _replace_check(WIDE)
    restore_quarantined(TABLE, revision=revision)  # what an earlier downgrade set aside


def downgrade() -> None:
    with step():
        op.execute(
            quarantine_statement(
                TABLE,
                where=f"NOT ({NARROW.replace('password_hash', 't.password_hash')})",
                reason="'a legacy scheme the password history of 0028 does not accept'",
                revision=revision,
            )
        )
    _replace_check(NARROW)
