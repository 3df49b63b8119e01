"""PostgreSQL ENUM types of schema ``auth`` (revision 0008) and their Python counterparts.

Each type is a :class:`enum.StrEnum`, so a member compares equal to its text (``UserRole.ADMIN ==
"admin"``) and raw SQL keeps working with string literals.
"""

from __future__ import annotations

import enum

from sqlalchemy.dialects.postgresql import ENUM

from authmodels.models.base import SCHEMA

__all__ = [
    "AccountRecoveryMethod",
    "AccountRecoveryStatus",
    "AuditEventStatus",
    "DeliveryStatus",
    "DeviceFlowStatus",
    "DeviceKeyEventType",
    "LogLevel",
    "LoginAttemptResult",
    "OAuthRefreshStatus",
    "SecurityEventSeverity",
    "SessionAuditAction",
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


# --- seed 002 (revision 0010) -------------------------------------------------------------------


class LoginAttemptResult(enum.StrEnum):
    """``auth.login_attempt_result``: how a login attempt ended."""

    SUCCESS = "success"
    FAILED_PASSWORD = "failed_password"  # noqa: S105 (a result name, not a password)
    FAILED_UNKNOWN_IDENTIFIER = "failed_unknown_identifier"
    FAILED_SECOND_FACTOR = "failed_second_factor"
    FAILED_LOCKED = "failed_locked"
    FAILED_UNVERIFIED = "failed_unverified"
    BLOCKED = "blocked"


class SecurityEventSeverity(enum.StrEnum):
    """``auth.security_event_severity``: how urgent a security event is (seed 002)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class DeliveryStatus(enum.StrEnum):
    """``auth.delivery_status``: the state of an e-mail or SMS delivery."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"


class AccountRecoveryMethod(enum.StrEnum):
    """``auth.account_recovery_method``: how an account is being recovered."""

    EMAIL = "email"
    SMS = "sms"
    BACKUP_CODE = "backup_code"
    ADMIN = "admin"


class AccountRecoveryStatus(enum.StrEnum):
    """``auth.account_recovery_status``: the state of a recovery request."""

    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class SessionAuditAction(enum.StrEnum):
    """``auth.session_audit_action``: what happened to a session."""

    CREATED = "created"
    REFRESHED = "refreshed"
    ROTATED = "rotated"
    STEPPED_UP = "stepped_up"
    IP_CHANGED = "ip_changed"
    REVOKED = "revoked"
    EXPIRED = "expired"
    # revision 0034: the refusals that are about a session
    REUSE_DETECTED = "reuse_detected"
    DPOP_MISMATCH = "dpop_mismatch"


# --- seed 003 (revisions 0011, 0013) -------------------------------------------------------------


class OAuthRefreshStatus(enum.StrEnum):
    """``auth.oauth_refresh_status``: outcome of the last provider token refresh (seed 003)."""

    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class DeviceKeyEventType(enum.StrEnum):
    """``auth.device_key_event_type``: an entry of the device-key audit trail (seed 003)."""

    REGISTERED = "registered"
    ROTATED = "rotated"
    DELETED = "deleted"
    EXCHANGE_FAILED = "exchange_failed"


def pg_enum(python_enum: type[enum.StrEnum], name: str) -> ENUM:
    """The SQLAlchemy type of the PostgreSQL ENUM ``auth.<name>``, storing the members' values.

    The type is created by a revision (0008, 0010, 0011, 0013), never by
    ``metadata.create_all`` of a model.
    """
    return ENUM(
        python_enum,
        name=name,
        schema=SCHEMA,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
        create_type=False,
    )
