"""``radcds-reporting``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_reporting.app import create_app
from radcds_reporting.settings import ReportingSettings


def main() -> None:
    """Entry point of the reporting service."""
    run_service("reporting", ReportingSettings, create_app)


if __name__ == "__main__":
    main()
