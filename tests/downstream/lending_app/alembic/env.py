"""The downstream app's Alembic environment: its own revisions plus authmodels' chain."""

from __future__ import annotations

from alembic import context
from lending_app.models import AppBase

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=AppBase.metadata,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
