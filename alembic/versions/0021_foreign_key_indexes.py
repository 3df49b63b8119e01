"""Foreign key indexes: deleting a token or a user no longer scans a token table per row.

Found while measuring the purge. Builds, concurrently, the indexes three foreign keys lacked:
``ix_refresh_tokens_parent_token_id``, ``ix_access_tokens_rotated_from`` (both partial) and
``ix_refresh_tokens_user_id``.

Downgrade: the three indexes are dropped concurrently. Nothing is lost.

See docs/phases/0021-foreign-key-indexes.md.
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
