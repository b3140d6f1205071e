"""Alembic environment: runs on the connection handed in by :func:`radcds.adapters.db.engine.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from radcds.adapters.db import tables_fhir  # noqa: F401  (registers its tables on metadata)
from radcds.adapters.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` command line: needs sqlalchemy.url
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
