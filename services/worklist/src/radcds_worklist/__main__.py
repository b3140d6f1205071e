"""``radcds-worklist``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_worklist.app import MIGRATION_CHAIN, create_app
from radcds_worklist.settings import WorklistSettings


def main() -> None:
    """Entry point of the worklist service."""
    run_service("worklist", WorklistSettings, create_app, migration_chain=MIGRATION_CHAIN)


if __name__ == "__main__":
    main()
