"""``auth.app_logs``: structured application log records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from authmodels.models.base import Base
from authmodels.models.enums import LogLevel, pg_enum

#: Accepted log levels.
LOG_LEVELS = tuple(level.value for level in LogLevel)


class AppLog(Base):
    """One application log record."""

    __tablename__ = "app_logs"
    __table_args__ = (Index("ix_app_logs_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True, sort_order=-100)
    """Primary key, from an identity sequence."""

    level: Mapped[LogLevel] = mapped_column(
        pg_enum(LogLevel, "log_level"), server_default=text("'info'")
    )
    """Severity (``auth.log_level``)."""

    logger: Mapped[str] = mapped_column(Text, server_default=text("'app'"))
    """Name of the emitting logger."""

    message: Mapped[str] = mapped_column(Text)
    """The log message."""

    context: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    """Structured fields of the record."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), sort_order=100
    )
    """When the record was written."""
