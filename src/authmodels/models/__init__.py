"""SQLAlchemy 2 declarative models of schema ``auth``, one module per domain.

The models describe the schema at the head of the revision chain; the test suite checks that an
Alembic autogenerate run against a database at head finds nothing to change.
"""

from __future__ import annotations

from authmodels.models.api_keys import ApiKey
from authmodels.models.audit import AuditLog, AuditLogArchive
from authmodels.models.base import SCHEMA, Base, Timestamps, Versioned, metadata
from authmodels.models.delivery import EmailDeliveryLog, SmsDeliveryLog
from authmodels.models.device_flow import DeviceFlow
from authmodels.models.devices import UserDevice
from authmodels.models.dpop import DPoPJti
from authmodels.models.e2ee import DeviceKey, DeviceKeyEvent, KeyExchange
from authmodels.models.enums import (
    AccountRecoveryMethod,
    AccountRecoveryStatus,
    AuditEventStatus,
    DeliveryStatus,
    DeviceFlowStatus,
    DeviceKeyEventType,
    LoginAttemptResult,
    LogLevel,
    OAuthRefreshStatus,
    SecurityEventSeverity,
    SessionAuditAction,
    UserRole,
)
from authmodels.models.flow_requests import FlowRequest
from authmodels.models.logs import AppLog
from authmodels.models.magic_links import MagicLinkToken
from authmodels.models.messaging import Conversation, ConversationParticipant, Message
from authmodels.models.mfa import TwoFactorAuth, TwoFactorBackupCode
from authmodels.models.oauth import OAuthConnection
from authmodels.models.password_history import PasswordHistory
from authmodels.models.profiles import UserProfile
from authmodels.models.quarantine import QuarantinedRow
from authmodels.models.recovery import AccountRecovery
from authmodels.models.retention import RetentionPolicy
from authmodels.models.security_events import LoginAttempt, SecurityEvent
from authmodels.models.session_audits import SessionAudit
from authmodels.models.sessions import Session
from authmodels.models.step_up import StepUpToken
from authmodels.models.tokens import (
    DIGEST_SCHEME_LEGACY_SHA256_HEX,
    DIGEST_SCHEME_RAW,
    AccessToken,
    EmailVerificationToken,
    PasswordResetToken,
    RefreshToken,
    token_lookup_clause,
    token_lookup_params,
    token_lookup_sql,
)
from authmodels.models.users import User
from authmodels.models.webauthn import WebAuthnCredential

__all__ = [
    "DIGEST_SCHEME_LEGACY_SHA256_HEX",
    "DIGEST_SCHEME_RAW",
    "SCHEMA",
    "AccessToken",
    "AccountRecovery",
    "AccountRecoveryMethod",
    "AccountRecoveryStatus",
    "ApiKey",
    "AppLog",
    "AuditEventStatus",
    "AuditLog",
    "AuditLogArchive",
    "Base",
    "Conversation",
    "ConversationParticipant",
    "DPoPJti",
    "DeliveryStatus",
    "DeviceFlow",
    "DeviceFlowStatus",
    "DeviceKey",
    "DeviceKeyEvent",
    "DeviceKeyEventType",
    "EmailDeliveryLog",
    "EmailVerificationToken",
    "FlowRequest",
    "KeyExchange",
    "LogLevel",
    "LoginAttempt",
    "LoginAttemptResult",
    "MagicLinkToken",
    "Message",
    "OAuthConnection",
    "OAuthRefreshStatus",
    "PasswordHistory",
    "PasswordResetToken",
    "QuarantinedRow",
    "RefreshToken",
    "RetentionPolicy",
    "SecurityEvent",
    "SecurityEventSeverity",
    "Session",
    "SessionAudit",
    "SessionAuditAction",
    "SmsDeliveryLog",
    "StepUpToken",
    "Timestamps",
    "TwoFactorAuth",
    "TwoFactorBackupCode",
    "User",
    "UserDevice",
    "UserProfile",
    "UserRole",
    "Versioned",
    "WebAuthnCredential",
    "metadata",
    "token_lookup_clause",
    "token_lookup_params",
    "token_lookup_sql",
]
