"""HTTP entrypoints of the worklist: the pages, the live stream, the actions and the sign-in."""
