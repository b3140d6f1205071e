"""HTTP entrypoints of the reporting service."""
