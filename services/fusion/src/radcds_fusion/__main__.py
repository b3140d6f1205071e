"""``radcds-fusion``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_fusion.app import MIGRATION_CHAIN, create_app
from radcds_fusion.settings import FusionSettings


def main() -> None:
    """Entry point of the fusion service."""
    run_service("fusion", FusionSettings, create_app, migration_chain=MIGRATION_CHAIN)


if __name__ == "__main__":
    main()
