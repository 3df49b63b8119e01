"""Read replicas: the lookups' writes go to the primary.

:data:`authmodels.db.REPLICA_FLOWS` may run on a replica session
(:meth:`authmodels.db.ReplicatedDatabase.replica_session`). What they write -- a touch of
``last_activity_at``/``last_used_at``, a refusal's records -- goes to the primary in a
transaction of its own (:func:`authmodels.services.durable.durable` connects to the primary for
a replica session), and so does the lookup of a credential the replica does not know yet.

The other half of the replicas' contract is the database's: revision 0035 makes every
transaction that revokes a session, an access token or an API key commit with
``synchronous_commit = remote_apply``, whoever revokes (``docs/scaling.md``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from authmodels.db import replica_primary

__all__ = ["on_replica"]


def on_replica(db: Session) -> bool:
    """True when ``db`` is a replica session (its writes must go to the primary)."""
    return replica_primary(db) is not None
