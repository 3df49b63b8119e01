"""What ``FlowSettings.security_event_hook`` receives (see :mod:`.security_events`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from authmodels.models.enums import SecurityEventSeverity

__all__ = ["SecurityEventAlert"]


@dataclass(frozen=True)
class SecurityEventAlert:
    """What the alert hook receives: the committed ``security_events`` row, without hashes.

    Attributes:
        id: the row's id.
        event_type: what happened (``refresh_token.reused``...).
        severity: ``high`` or ``critical``.
        user_id: the account concerned, if known.
        details: the event's details (ids, counts, reasons; never a secret).
        occurred_at: when the flow recorded it (UTC).
    """

    id: uuid.UUID
    event_type: str
    severity: SecurityEventSeverity
    user_id: uuid.UUID | None
    details: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
