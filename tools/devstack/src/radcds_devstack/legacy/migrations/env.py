"""Alembic environment of the legacy shared chain (see :mod:`radcds.adapters.db.legacy`): runs on the connection
handed in by :func:`radcds.adapters.db.engine.migrate`. Its revisions spell out their tables, so it needs no
metadata."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
