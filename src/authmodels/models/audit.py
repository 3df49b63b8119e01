"""``auth.audit_logs``: the security audit trail (seed 004, with seed 001's audit log merged in).

``auth.audit_logs_archive`` holds rows moved out by ``auth.archive_audit_logs()`` (seed 001's
monthly archival).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from authmodels.models.base import Base, user_reference, uuid_pk
from authmodels.models.checks import token_digest
from authmodels.models.enums import AuditEventStatus, pg_enum

#: Event types seed 004 defines.
AUDIT_EVENT_TYPES = (
    "login",
    "logout",
    "password_change",
    "password_reset_request",
    "password_reset_complete",
    "email_verification",
    "account_locked",
    "account_unlocked",
    "2fa_enabled",
    "2fa_disabled",
    "session_revoked",
    # seed 001 (revision 0009)
    "role_changed",
    "master_admin_designated",
    "master_admin_transferred",
    "step_up_issued",
    "step_up_used",
    "sensitive_action",
)
#: Event types the flows of :mod:`authmodels.services` add (revision 0014).
FLOW_AUDIT_EVENT_TYPES = (
    "refresh_token_reused",
    "refresh_token_grace_replay",
    "dpop_binding_mismatch",
    "dpop_proof_replayed",
    "access_token_revoked",
    "device_flow_approved",
    "device_flow_denied",
    "device_flow_user_code_rejected",
    "device_flow_tokens_issued",
)
#: Event types of the account lifecycle flows (revision 0034).
LIFECYCLE_AUDIT_EVENT_TYPES = (
    "signup",
    "email_change_requested",
    "email_changed",
    "magic_link_requested",
    "magic_link_login",
    "account_recovery_requested",
    "account_recovered",
    "account_recovery_cancelled",
    "device_trusted",
    "device_revoked",
)
#: Outcomes of an audited event.
AUDIT_EVENT_STATUSES = tuple(status.value for status in AuditEventStatus)
#: Longest ``action`` (``ck_audit_logs_action_length``: 1 to this many characters).
MAX_ACTION_LENGTH = 100
#: Longest ``correlation_id`` (``ck_audit_logs_correlation_id_length``: 1 to this many).
MAX_CORRELATION_ID_LENGTH = 200


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AuditLog(Base):
    """One security event: who did what to whom, outcome, from where, in which request.

    "From where" is kept only as keyed hashes of the client address and user agent
    (:class:`~authmodels.security.privacy.PrivacyHasher`, revision 0025): an entry can be matched
    against a known address, but a copy of the table does not reveal it.

    ``user_id`` is the account the event concerns; ``actor_user_id`` who performed it (NULL for
    the system, and for rows written before revision 0009), ``target_user_id`` the account acted
    upon (seed 001). A ``sensitive_action`` event names its operation in ``action``.

    Partitioned by month of ``created_at`` (revision 0015): the primary key is ``(id,
    created_at)``, and a month is removed whole by the retention job.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (
        CheckConstraint(
            _in(
                "event_type",
                AUDIT_EVENT_TYPES + FLOW_AUDIT_EVENT_TYPES + LIFECYCLE_AUDIT_EVENT_TYPES,
            ),
            name="event_type_known",
        ),
        CheckConstraint(
            f"char_length(action) BETWEEN 1 AND {MAX_ACTION_LENGTH}", name="action_length"
        ),
        CheckConstraint(
            f"char_length(correlation_id) BETWEEN 1 AND {MAX_CORRELATION_ID_LENGTH}",
            name="correlation_id_length",
        ),
        CheckConstraint(
            "event_type <> 'sensitive_action' OR action IS NOT NULL", name="sensitive_action_named"
        ),
        Index("ix_audit_logs_user_id_created_at", "user_id", text("created_at DESC")),
        Index("ix_audit_logs_event_type_created_at", "event_type", text("created_at DESC")),
        Index("ix_audit_logs_created_at", text("created_at DESC")),
        token_digest("ip_hash"),
        token_digest("ua_hash"),
        Index("ix_audit_logs_ip_hash_created_at", "ip_hash", text("created_at DESC")),
        Index("ix_audit_logs_event_status_event_type", "event_status", "event_type"),
        Index("ix_audit_logs_actor_user_id_created_at", "actor_user_id", text("created_at DESC")),
        Index("ix_audit_logs_target_user_id_created_at", "target_user_id", text("created_at DESC")),
        Index(
            "ix_audit_logs_action_created_at",
            "action",
            text("created_at DESC"),
            postgresql_where=text("action IS NOT NULL"),
        ),
        Index(
            "ix_audit_logs_correlation_id",
            "correlation_id",
            postgresql_where=text("correlation_id IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    """Primary key, generated by the database."""

    user_id: Mapped[uuid.UUID | None] = user_reference(ondelete="SET NULL")
    """The user concerned, if known (kept as NULL when the account is deleted)."""

    event_type: Mapped[str] = mapped_column(Text)
    """What happened (one of :data:`AUDIT_EVENT_TYPES`)."""

    event_status: Mapped[AuditEventStatus] = mapped_column(
        pg_enum(AuditEventStatus, "audit_event_status"), server_default=text("'success'")
    )
    """Outcome (``auth.audit_event_status``)."""

    ip_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the client address (:meth:`PrivacyHasher.ip_hash`, revision 0025)."""

    ua_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the client ``User-Agent`` (:meth:`PrivacyHasher.ua_hash`, revision 0025)."""

    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    """Event-specific data (seed 001's ``metadata``)."""

    actor_user_id: Mapped[uuid.UUID | None] = user_reference(ondelete="SET NULL")
    """Who performed the action (NULL: the system, or not recorded)."""

    target_user_id: Mapped[uuid.UUID | None] = user_reference(ondelete="SET NULL")
    """The account acted upon (e.g. whose role changed)."""

    action: Mapped[str | None] = mapped_column(Text)
    """The operation, e.g. ``admin.role_change`` (1 to 100 characters)."""

    correlation_id: Mapped[str | None] = mapped_column(Text)
    """Request / trace id shared by the records of one operation across services."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), primary_key=True, sort_order=100
    )
    """When the event happened (also the partition key, hence part of the primary key)."""


class AuditLogArchive(Base):
    """An audit row moved out of ``audit_logs`` by ``auth.archive_audit_logs()``.

    The same columns as :class:`AuditLog` plus ``archived_at``; no foreign keys, so deleting an
    account never has to scan the archive (the ids of deleted accounts stay as they were).
    """

    __tablename__ = "audit_logs_archive"
    __table_args__ = (
        # serves the retention policy (revision 0016)
        Index("ix_audit_logs_archive_archived_at", text("archived_at")),
        token_digest("ip_hash"),
        token_digest("ua_hash"),
        Index("ix_audit_logs_archive_created_at", "created_at"),
        Index("ix_audit_logs_archive_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, sort_order=-100)
    """The id the row had in ``audit_logs``."""

    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The account the event concerned."""

    event_type: Mapped[str] = mapped_column(Text)
    """What happened."""

    event_status: Mapped[AuditEventStatus] = mapped_column(
        pg_enum(AuditEventStatus, "audit_event_status")
    )
    """Outcome."""

    ip_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the client address (:meth:`PrivacyHasher.ip_hash`, revision 0025)."""

    ua_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the client ``User-Agent`` (:meth:`PrivacyHasher.ua_hash`, revision 0025)."""

    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """Event-specific data."""

    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """Who performed the action."""

    target_user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The account acted upon."""

    action: Mapped[str | None] = mapped_column(Text)
    """The operation."""

    correlation_id: Mapped[str | None] = mapped_column(Text)
    """Request / trace id."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), sort_order=100)
    """When the event happened."""

    archived_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), sort_order=101
    )
    """When the row was moved to the archive."""
