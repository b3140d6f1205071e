"""``radcds-imaging``: parse settings, build the app, serve."""

from __future__ import annotations

from fastapi import FastAPI

from radcds.runtime.serve import build_app, run_service
from radcds.runtime.settings import load_settings
from radcds_imaging.app import MIGRATION_CHAIN, create_app
from radcds_imaging.settings import ImagingSettings


def app_factory() -> FastAPI:
    """The app of one worker process (used when ``RADCDS_IMAGING_HTTP_WORKERS`` > 1)."""
    return build_app("imaging", load_settings(ImagingSettings), create_app)


def main() -> None:
    """Entry point of the imaging service."""
    run_service("imaging", ImagingSettings, create_app, migration_chain=MIGRATION_CHAIN)


if __name__ == "__main__":
    main()
