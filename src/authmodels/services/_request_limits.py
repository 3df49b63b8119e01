"""The per-address and per-client limits of the flows that send a message to an address typed.

A sign-up, a password-reset request, a magic-link request or an account-recovery request makes
the server send a message to the address the client typed, before anyone is signed in: unlimited,
such a form mails anyone as often as a script likes, and lets a script try addresses. Each such
request goes through :func:`admit`, which:

- counts, for the flow, the requests already accepted in ``FlowSettings.request_limit_window``
  for the **address typed** (its keyed digest, whether or not an account has it: a limit counted
  per account would refuse only existing accounts, and so tell which addresses have one) and
  from the **client's address** (its keyed hash);
- refuses the request with :class:`~authmodels.errors.TooManyRequestsError` when either count
  has reached its limit (``request_limit_per_account``, ``request_limit_per_ip``), with the
  seconds until the oldest counted request leaves the window, and records a ``low`` security
  event ``request_limit.reached``; a refused request is not counted (the limit bounds the
  messages sent, and a flood cannot extend it);
- otherwise records the request (``auth.flow_requests``).

Counter first, as :mod:`authmodels.services.passwords` counts a login: all of this runs in a
transaction of its own (:func:`~authmodels.services.durable.durable`), committed before the flow
goes on, so a caller that rolls back does not undo the count, and the same work is done whether
or not the account exists. Concurrent requests for one address, or from one client, are
serialised by transaction-level advisory locks taken in a fixed order (the address's, then the
client's: no two requests wait on each other in a cycle), so a burst is counted exactly: of 20
concurrent requests under a limit of 3, 3 are admitted.
"""

from __future__ import annotations

import math
import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authmodels.errors import TooManyRequestsError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.services import security_events
from authmodels.services.durable import durable
from authmodels.services.settings import settings_for

FOREIGN_KEY_VIOLATION = "23503"

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# the rule: at most :per_account requests of a flow per address typed, and :per_ip per client
# address, in the window; a request is recorded only when both counts are under their limits
_ADMIT = text(
    """
    WITH account AS (
        SELECT count(*) AS n, min(created_at) AS oldest FROM auth.flow_requests
         WHERE flow = :flow AND identifier_hash = ANY(:identifiers)
           AND created_at > now() - :window
    ), client AS (
        SELECT count(*) AS n, min(created_at) AS oldest FROM auth.flow_requests
         WHERE flow = :flow AND ip_hash = ANY(:ips) AND created_at > now() - :window
    ), admitted AS (
        INSERT INTO auth.flow_requests (flow, user_id, identifier_hash, ip_hash)
        SELECT :flow, :user_id, :identifier_hash, :ip_hash FROM account, client
         WHERE account.n < :per_account AND client.n < :per_ip
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM admitted) AS admitted,
           account.n >= :per_account AS account_limited,
           extract(epoch FROM account.oldest + :window - now()) AS account_wait,
           extract(epoch FROM client.oldest + :window - now()) AS client_wait
      FROM account, client
    """
)


#: The live account an address names (one per lower-cased address among live accounts: the
#: unique index of revision 0023).
_LIVE_ACCOUNT = text("SELECT id FROM auth.users WHERE lower(email) = :email AND deleted_at IS NULL")


def live_account(db: Session, address: str) -> uuid.UUID | None:
    """The id of the live account whose e-mail is ``address`` (already normalised), or None:
    what a request for that address is counted against, and what it acts on."""
    found: uuid.UUID | None = db.execute(_LIVE_ACCOUNT, {"email": address}).scalar()
    return found


def admit(
    db: Session,
    flow: str,
    *,
    email: str,
    ip: str | IPv4Address | IPv6Address | None,
    user_id: uuid.UUID | None,
) -> None:
    """Count one request of ``flow`` for ``email`` (normalised) from ``ip``, or refuse it.

    Raises:
        TooManyRequestsError: a limit was reached (the refusal's security event is committed).
        InvalidIPAddressError: ``ip`` is not an address (nothing is written).
    """
    settings = settings_for(db)
    identifier_hash = settings.hasher.digest(email)
    ip_hash = None if ip is None else settings.privacy.ip_hash(ip)
    # the advisory locks: the address's, then the client's (always in this order)
    locks = [f"authmodels.flow_requests:{flow}:{identifier_hash.hex()}"]
    if ip_hash is not None:
        locks.append(f"authmodels.flow_requests:{flow}:ip:{ip_hash.hex()}")
    params = {
        "flow": flow,
        "identifiers": settings.hasher.candidates(email),
        "ips": [] if ip is None else settings.privacy.ip_candidates(ip),
        "identifier_hash": identifier_hash,
        "ip_hash": ip_hash,
        "window": settings.request_limit_window,
        "per_account": settings.request_limit_per_account,
        "per_ip": settings.request_limit_per_ip,
    }
    try:
        verdict = _count(db, locks, {**params, "user_id": user_id})
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != FOREIGN_KEY_VIOLATION or user_id is None:
            raise
        # the account exists only in the caller's transaction, not committed yet: counted
        # without it (it cannot be named by a row that must outlive that transaction)
        verdict = _count(db, locks, {**params, "user_id": None})
    if verdict.admitted:
        return
    which = "address" if verdict.account_limited else "client"
    wait = verdict.account_wait if verdict.account_limited else verdict.client_wait
    retry_after = max(1, math.ceil(float(wait or 1)))
    # named after the account when the caller knows it: a signed-in user's own request may
    # write its own events only (revision 0028), and an anonymous request names nobody
    security_events.report(
        db, "request_limit.reached", SecurityEventSeverity.LOW, user_id=user_id, ip=ip,
        details={"flow": flow, "limit": which, "retry_after": retry_after},
    )  # fmt: skip
    raise TooManyRequestsError(
        f"too many requests for this {which}: try again in {retry_after} seconds",
        retry_after=retry_after,
    )


def _count(db: Session, locks: list[str], params: dict[str, Any]) -> Row[Any]:
    with durable(db) as side:
        for key in locks:
            side.execute(_LOCK, {"key": key})
        return side.execute(_ADMIT, params).one()
