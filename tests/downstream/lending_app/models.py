"""The downstream app's own model, in its own schema, referencing ``auth.users``."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Integer, MetaData, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from authmodels.models import User, Versioned


class AppBase(DeclarativeBase):
    metadata = MetaData(schema="lending")


class TokenLending(Versioned, AppBase):
    """Tokens lent by one user to another (seed 001's ``token_lending``, with a version)."""

    __tablename__ = "token_lending"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lender_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(User.id, ondelete="CASCADE")
    )
    borrower_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(User.id, ondelete="CASCADE")
    )
    token_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
