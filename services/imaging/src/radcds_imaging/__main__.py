"""``radcds-imaging``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_imaging.app import create_app
from radcds_imaging.settings import ImagingSettings


def main() -> None:
    """Entry point of the imaging service."""
    run_service("imaging", ImagingSettings, create_app)


if __name__ == "__main__":
    main()
