"""Database adapters of the imaging service: repositories and query objects over its own tables."""
