"""SQLAlchemy 2 declarative models of schema ``auth``, one module per domain."""

from __future__ import annotations

from authmodels.models.base import SCHEMA, Base, Timestamps, Versioned, metadata

__all__ = ["SCHEMA", "Base", "Timestamps", "Versioned", "metadata"]
