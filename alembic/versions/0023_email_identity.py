"""E-mail identity: an address names at most one live account, whatever its letter case.

Found in issue 12. ``uq_users_email_identity``, unique on ``lower(email)`` among live accounts,
built concurrently; live accounts that share an address in another letter case stop the upgrade
before anything changes (``authmodels users email-conflicts`` resolves them).

Downgrade: the index is dropped concurrently; addresses changed by ``email-conflicts --resolve``
stay changed (their old rows are in ``auth.quarantine``).

See docs/phases/0023-email-identity.md.
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
