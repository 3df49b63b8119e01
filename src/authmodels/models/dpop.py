"""``auth.dpop_jtis``: the DPoP proof replay store (RFC 9449 section 11.1).

A proof's ``jti`` is recorded, per key (``jkt``), for as long as the proof could still be accepted
(``iat + max_age + leeway``); a second proof with the same ``jti`` and key inside that time is a
replay. Rows are useless after ``expires_at`` and the purge removes them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from authmodels.models.base import Base

#: Longest ``jti`` stored (RFC 9449 asks for 96 random bits or more; 256 characters is ample).
MAX_JTI_LENGTH = 256
#: Longest ``jkt`` stored (a SHA-256 JWK thumbprint is 43 characters).
MAX_JKT_LENGTH = 128


class DPoPJti(Base):
    """One DPoP proof seen by the server: its key, its unique id, and until when it matters."""

    __tablename__ = "dpop_jtis"
    __table_args__ = (
        CheckConstraint(f"char_length(jkt) BETWEEN 1 AND {MAX_JKT_LENGTH}", name="jkt_length"),
        CheckConstraint(f"char_length(jti) BETWEEN 1 AND {MAX_JTI_LENGTH}", name="jti_length"),
        Index("ix_dpop_jtis_expires_at", "expires_at"),
    )

    jkt: Mapped[str] = mapped_column(Text, primary_key=True)
    """RFC 7638 thumbprint of the key that signed the proof."""

    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    """The proof's unique identifier (not a secret: it travels in every request's header)."""

    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """After this, a proof with this ``jti`` would be refused as too old anyway (purge column)."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), sort_order=100
    )
    """When the proof was first seen."""
