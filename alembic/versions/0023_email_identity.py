"""E-mail identity: an address names at most one live account, whatever its letter case.

Found in issue 12. ``ix_users_email`` made ``email`` unique among live accounts case-sensitively,
while login looked accounts up by ``lower(email)``: ``ADA@example.com`` and ``ada@example.com``
could both be live accounts, and ``authenticate`` silently took the older one.

What it does: ``uq_users_email_identity``, a unique index on ``lower(email)`` among live
accounts (``WHERE deleted_at IS NULL``), built concurrently. It is the identity that lookups use
(:func:`authmodels.email_identity.normalize_email`, ``passwords.authenticate``); the
case-sensitive ``ix_users_email`` stays, for queries by the exact address.

Existing duplicates are neither merged nor deleted: the upgrade first looks for live accounts
that share an address in different letter case and, if there are any, stops before changing
anything with an error that lists them (the first 20: id, address, created, last login; and the
counts) and names ``authmodels users email-conflicts``, which resolves them
(:func:`authmodels.email_identity.resolve_conflicts`). An account written with a conflicting
address between that check and the end of the build makes the build fail: the invalid index is
dropped and the same error is raised, so no invalid index is left behind.

Downgrade: the index is dropped concurrently. Addresses changed by ``email-conflicts --resolve``
stay changed (their old rows are in ``auth.quarantine``).

Docs: ``docs/phases/0023-email-identity.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import IntegrityError

from authmodels.email_identity import raise_for_conflicts
from authmodels.revision_ops import (
    create_index_concurrently,
    drop_index_concurrently,
    is_offline,
    refuse,
)

revision: str = "0023_email_identity"
down_revision: str | Sequence[str] | None = "0022_invoker_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_users_email_identity"


def upgrade() -> None:
    if is_offline():
        op.execute("-- live accounts sharing an address in another letter case stop the upgrade")
    else:
        raise_for_conflicts(op.get_bind())  # before any change
    try:
        create_index_concurrently(
            INDEX, "users", "lower(email)", unique=True, where="deleted_at IS NULL"
        )
    except IntegrityError:
        # an account written with a conflicting address after the check: the failed build left
        # the index INVALID (it would still slow every write of users down); it goes
        drop_index_concurrently(INDEX)
        raise_for_conflicts(op.get_bind(), while_building=True)
        refuse(
            "the unique index on lower(email) could not be built: an account written during "
            "the build shared an address with another, and no longer does; run the upgrade again"
        )


def downgrade() -> None:
    drop_index_concurrently(INDEX)
