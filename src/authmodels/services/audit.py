"""The one way the flows write an ``auth.audit_logs`` entry.

Every flow records its security events through :func:`record`, in the caller's transaction, so an
entry exists exactly when the change it describes was committed. A flow that refuses a request
*and* must keep a trace of the refusal (a wrong user code, a reused refresh token) commits before
raising; its docstring says so.

Details never hold a raw token or code: only ids, counts, reasons and key thumbprints. The
client's address and user agent are stored only as keyed hashes (``ip_hash``, ``ua_hash``, made
with the privacy key ring of the flow settings: :attr:`FlowSettings.privacy`).
"""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from authmodels.errors import InvalidInputError
from authmodels.models.audit import (
    AUDIT_EVENT_STATUSES,
    AUDIT_EVENT_TYPES,
    FLOW_AUDIT_EVENT_TYPES,
    LIFECYCLE_AUDIT_EVENT_TYPES,
    MAX_ACTION_LENGTH,
    MAX_CORRELATION_ID_LENGTH,
    AuditLog,
)
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

#: The event types ``ck_audit_logs_event_type_known`` accepts.
_EVENT_TYPES = frozenset(AUDIT_EVENT_TYPES + FLOW_AUDIT_EVENT_TYPES + LIFECYCLE_AUDIT_EVENT_TYPES)

__all__ = ["record"]


@database_errors
def record(
    db: Session,
    event_type: str,
    *,
    user_id: uuid.UUID | None,
    status: str = "success",
    details: dict[str, Any] | None = None,
    actor_user_id: uuid.UUID | None = None,
    target_user_id: uuid.UUID | None = None,
    action: str | None = None,
    correlation_id: str | None = None,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> None:
    """Add one audit entry in the session's transaction (nothing is committed here).

    Args:
        db: the session of the flow.
        event_type: one of :data:`~authmodels.models.audit.AUDIT_EVENT_TYPES` (the database's
            CHECK refuses anything else).
        user_id: the user concerned, when known.
        status: ``success``, ``failure``, ``blocked`` or ``pending``.
        details: event-specific data (JSON); never a raw secret.
        actor_user_id: who performed the action (seed 001), when it is not the user concerned.
        target_user_id: the account acted upon (seed 001).
        action: the operation (``admin.role_change``); required for ``sensitive_action``.
        correlation_id: the request / trace id shared by the records of one operation.
        ip: the client's address; stored only as its keyed hash.
        user_agent: the client's ``User-Agent``; stored only as its keyed hash.

    Raises:
        InvalidIPAddressError: ``ip`` is not an IPv4 or IPv6 address (nothing is written).
        MissingKeyError: ``ip`` or ``user_agent`` is given and no key ring is configured.
        InvalidInputError: ``event_type`` or ``status`` is not one of the accepted values,
            ``action`` not text of 1 to 100 characters (or missing for ``sensitive_action``),
            ``correlation_id`` not text of 1 to 200, ``details`` not a JSON object ``jsonb``
            can hold, an id not a UUID, or ``user_agent`` not text of at most 8,192
            characters (nothing is written).
    """
    if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
        raise InvalidInputError(
            f"event_type {str(event_type)[:64]!r} is not an audit event type "
            "(authmodels.models.audit.AUDIT_EVENT_TYPES, FLOW_AUDIT_EVENT_TYPES, "
            "LIFECYCLE_AUDIT_EVENT_TYPES)",
            field="event_type",
        )
    if status not in AUDIT_EVENT_STATUSES:
        raise InvalidInputError(
            f"status must be one of {', '.join(AUDIT_EVENT_STATUSES)}, not {str(status)[:40]!r}",
            field="status",
        )
    for name, value in (
        ("user_id", user_id),
        ("actor_user_id", actor_user_id),
        ("target_user_id", target_user_id),
    ):
        _inputs.optional_identifier(value, name)
    _inputs.optional_text(action, "action", max_length=MAX_ACTION_LENGTH)
    if event_type == "sensitive_action" and action is None:
        raise InvalidInputError("a sensitive_action entry must name its action", field="action")
    _inputs.optional_text(correlation_id, "correlation_id", max_length=MAX_CORRELATION_ID_LENGTH)
    if details is not None:
        _inputs.json_object(details, "details")
    _inputs.user_agent(user_agent)
    privacy = settings_for(db).privacy if ip is not None or user_agent is not None else None
    db.execute(
        insert(AuditLog).values(
            user_id=user_id,
            event_type=event_type,
            event_status=status,
            details=details or {},
            actor_user_id=actor_user_id,
            target_user_id=target_user_id,
            action=action,
            correlation_id=correlation_id,
            ip_hash=None if privacy is None or ip is None else privacy.ip_hash(ip),
            ua_hash=None if privacy is None or user_agent is None else privacy.ua_hash(user_agent),
        )
    )
