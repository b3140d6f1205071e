"""HTTP entrypoints of fusion."""
