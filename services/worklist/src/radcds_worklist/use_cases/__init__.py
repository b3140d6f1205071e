"""Use cases of the worklist service."""
