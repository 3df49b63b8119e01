"""SQLAlchemy 2 declarative models of schema ``auth``, one module per domain.

The models describe the schema at the head of the revision chain; the test suite checks that an
Alembic autogenerate run against a database at head finds nothing to change.
"""

from __future__ import annotations

from authmodels.models.audit import AuditLog
from authmodels.models.base import SCHEMA, Base, Timestamps, Versioned, metadata
from authmodels.models.device_flow import DeviceFlow
from authmodels.models.enums import AuditEventStatus, DeviceFlowStatus, LogLevel, UserRole
from authmodels.models.logs import AppLog
from authmodels.models.messaging import Conversation, ConversationParticipant, Message
from authmodels.models.profiles import UserProfile
from authmodels.models.quarantine import QuarantinedRow
from authmodels.models.retention import RetentionPolicy
from authmodels.models.sessions import Session
from authmodels.models.tokens import (
    DIGEST_SCHEME_LEGACY_SHA256_HEX,
    DIGEST_SCHEME_RAW,
    AccessToken,
    EmailVerificationToken,
    PasswordResetToken,
    RefreshToken,
    token_digest_candidates,
)
from authmodels.models.users import User
from authmodels.models.webauthn import WebAuthnCredential

__all__ = [
    "DIGEST_SCHEME_LEGACY_SHA256_HEX",
    "DIGEST_SCHEME_RAW",
    "SCHEMA",
    "AccessToken",
    "AppLog",
    "AuditEventStatus",
    "AuditLog",
    "Base",
    "Conversation",
    "ConversationParticipant",
    "DeviceFlow",
    "DeviceFlowStatus",
    "EmailVerificationToken",
    "LogLevel",
    "Message",
    "PasswordResetToken",
    "QuarantinedRow",
    "RefreshToken",
    "RetentionPolicy",
    "Session",
    "Timestamps",
    "User",
    "UserProfile",
    "UserRole",
    "Versioned",
    "WebAuthnCredential",
    "metadata",
    "token_digest_candidates",
]
