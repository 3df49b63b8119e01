"""PostgreSQL ENUM types of schema ``auth`` (revision 0008) and their Python counterparts.

Each type is a :class:`enum.StrEnum`, so a member compares equal to its text (``UserRole.ADMIN ==
"admin"``) and raw SQL keeps working with string literals.
"""

from __future__ import annotations

import enum

from sqlalchemy.dialects.postgresql import ENUM

from authmodels.models.base import SCHEMA

__all__ = [
    "AuditEventStatus",
    "DeviceFlowStatus",
    "LogLevel",
    "UserRole",
    "pg_enum",
]


class UserRole(enum.StrEnum):
    """``auth.user_role``: what an account may do."""

    USER = "user"
    ADMIN = "admin"


class DeviceFlowStatus(enum.StrEnum):
    """``auth.device_flow_status``: the state of an RFC 8628 device authorization."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CONSUMED = "consumed"


class AuditEventStatus(enum.StrEnum):
    """``auth.audit_event_status``: the outcome of an audited event."""

    SUCCESS = "success"
    FAILURE = "failure"
    BLOCKED = "blocked"
    PENDING = "pending"


class LogLevel(enum.StrEnum):
    """``auth.log_level``: severity of an application log record."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


def pg_enum(python_enum: type[enum.StrEnum], name: str) -> ENUM:
    """The SQLAlchemy type of the PostgreSQL ENUM ``auth.<name>``, storing the members' values.

    The type is created by revision 0008, never by ``metadata.create_all`` of a model.
    """
    return ENUM(
        python_enum,
        name=name,
        schema=SCHEMA,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
        create_type=False,
    )
