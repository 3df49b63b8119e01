"""``auth.retention_policies``: what each accumulating table keeps, read by both purge paths."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, CheckConstraint, DateTime, Interval, SmallInteger, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from authmodels.models.base import Base


class RetentionPolicy(Base):
    """One retention policy (see :mod:`authmodels.retention`)."""

    __tablename__ = "retention_policies"
    __table_args__ = (
        CheckConstraint("keep_for >= interval '0'", name="keep_for_not_negative"),
        # written without the literal text of the parameter, which SQL text would take for one
        CheckConstraint("strpos(expired, ':' || 'cutoff') > 0", name="expired_uses_cutoff"),
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    """Policy name (``authmodels purge --only NAME``)."""

    table_name: Mapped[str] = mapped_column(Text)
    """Qualified table the policy purges."""

    expired: Mapped[str] = mapped_column(Text)
    """SQL condition, in terms of ``:cutoff``, true for rows past their end."""

    keep_for: Mapped[timedelta] = mapped_column(Interval)
    """How long after its end a row is kept."""

    key_column: Mapped[str] = mapped_column(Text, server_default=text("'id'"))
    """Primary key column the batches are picked by."""

    archive_to: Mapped[str | None] = mapped_column(Text)
    """Table rows are copied to before they are deleted."""

    partitioned: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """Whole months are dropped instead of rows deleted."""

    position: Mapped[int] = mapped_column(SmallInteger, server_default=text("100"))
    """Order in which the policies run."""

    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    """When the policy was last changed."""
