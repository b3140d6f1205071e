"""Pure domain of the worklist: priority order, reading locks, feedback on AI findings, model monitoring."""
