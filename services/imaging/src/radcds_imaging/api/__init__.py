"""HTTP entrypoints of the imaging service."""
