"""Read replicas: the revocation rule, and the lookups' writes sent to the primary.

**The rule.** A credential revoked on the primary is never accepted on a replica once the call
that revoked it has returned. Every statement that revokes what a replica may look up (a
session, an access token, an API key) first runs :func:`revocation_waits_for_replicas` in its
transaction: ``synchronous_commit = remote_apply`` for that transaction only, so its commit
returns once every synchronous standby of the primary has *applied* it -- made it visible to
queries there (PostgreSQL: "Synchronous Replication"). It holds for the replicas the primary's
``synchronous_standby_names`` requires; with none listed it is an ordinary (flushed) commit.

**The lookups.** :data:`authmodels.db.REPLICA_FLOWS` may run on a replica session
(:meth:`authmodels.db.ReplicatedDatabase.replica_session`). What they write -- a touch of
``last_activity_at``/``last_used_at``, a refusal's records -- goes to the primary in a
transaction of its own (:func:`authmodels.services.durable.durable` connects to the primary for
a replica session).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.db import replica_primary

__all__ = ["on_replica", "revocation_waits_for_replicas"]

_REMOTE_APPLY = text("SELECT set_config('synchronous_commit', 'remote_apply', true)")


def revocation_waits_for_replicas(db: Session) -> None:
    """Make the current transaction's commit wait until the synchronous standbys applied it."""
    db.execute(_REMOTE_APPLY)


def on_replica(db: Session) -> bool:
    """True when ``db`` is a replica session (its writes must go to the primary)."""
    return replica_primary(db) is not None
