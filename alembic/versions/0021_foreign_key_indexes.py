"""Foreign key indexes: deleting a token or a user no longer scans a token table per row.

Found while measuring the purge of sessions that have refresh tokens (issue "retention at scale").
Three foreign keys had no index on their referencing column:

- ``refresh_tokens.parent_token_id`` → ``refresh_tokens`` (``ON DELETE SET NULL``, 0005) and
  ``access_tokens.rotated_from`` → ``access_tokens`` (``ON DELETE SET NULL``, 0005): every
  deleted token (by the purge, or with its session) ran ``UPDATE ... SET parent_token_id = NULL
  WHERE parent_token_id = $1`` -- a scan of the whole table, per row. Purging n tokens of a table
  of N cost n scans of N rows;
- ``refresh_tokens.user_id`` → ``users`` (``ON DELETE CASCADE``, 0002): deleting a user scanned
  ``refresh_tokens``.

Three indexes, built concurrently (``SHARE UPDATE EXCLUSIVE``: reads and writes go on; the build
scans the table twice and waits for running transactions): ``ix_refresh_tokens_parent_token_id``
and ``ix_access_tokens_rotated_from`` (partial: ``WHERE ... IS NOT NULL``, which the foreign
key's ``= $1`` implies), and ``ix_refresh_tokens_user_id``. A test at head now checks that every
foreign key's first column leads an index.

Downgrade: the three indexes are dropped concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence

from authmodels.revision_ops import create_index_concurrently, drop_index_concurrently

revision: str = "0021_foreign_key_indexes"
down_revision: str | Sequence[str] | None = "0020_purge_function_locks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, column, partial)
INDEXES = (
    ("ix_refresh_tokens_parent_token_id", "refresh_tokens", "parent_token_id", True),
    ("ix_access_tokens_rotated_from", "access_tokens", "rotated_from", True),
    ("ix_refresh_tokens_user_id", "refresh_tokens", "user_id", False),
)


def upgrade() -> None:
    for name, table, column, partial in INDEXES:
        create_index_concurrently(
            name, table, column, where=f"{column} IS NOT NULL" if partial else None
        )


def downgrade() -> None:
    for name, _, _, _ in INDEXES:
        drop_index_concurrently(name)
