"""Alembic environment of referral's own chain: runs on the connection handed in by
:func:`radcds.adapters.db.engine.migrate` and keeps its own version table."""

from __future__ import annotations

from alembic import context

from radcds.adapters.db.engine import version_table
from radcds_referral.db.tables import metadata

VERSION_TABLE = version_table("radcds_referral.db")

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
