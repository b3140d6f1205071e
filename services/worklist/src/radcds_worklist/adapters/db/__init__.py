"""The worklist's database adapters (SQLAlchemy Core over :mod:`radcds_worklist.db.tables`)."""
