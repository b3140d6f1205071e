"""The shared Alembic chain of the releases before issue #12 (revisions 0001…0009, version table
``alembic_version``), frozen for the upgrade tests: it builds the one shared database that each service's own chain
adopts (:mod:`radcds.adapters.db.legacy`). No service runs it."""
