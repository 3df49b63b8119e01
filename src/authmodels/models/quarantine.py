"""``auth.quarantine``: rows a revision could not convert, kept whole with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from authmodels.models.base import Base


class QuarantinedRow(Base):
    """A row a migration moved out of its table instead of deleting it.

    ``row_data`` is the complete original row (``to_jsonb``); an operator can inspect it, fix it
    and put it back with ``jsonb_populate_record``, and a revision's downgrade puts back the rows
    that revision moved.
    """

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_source_table_revision", "source_table", "revision"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    """Primary key, from an identity sequence."""

    source_table: Mapped[str] = mapped_column(Text)
    """The table (in schema ``auth``) the row came from."""

    reason: Mapped[str] = mapped_column(Text)
    """Why the row could not be converted."""

    row_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """The full original row."""

    revision: Mapped[str] = mapped_column(Text)
    """The revision that moved the row."""

    quarantined_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    """When the row was moved."""
