"""SQLAlchemy 2 persistence, one code path for SQLite (local default) and PostgreSQL."""
