"""The worklist's own tables and migration chain (version table ``alembic_version_worklist``)."""
