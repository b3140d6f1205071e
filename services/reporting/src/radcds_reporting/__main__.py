"""``radcds-reporting``: parse settings, build the app, serve."""

from __future__ import annotations

from fastapi import FastAPI

from radcds.runtime.serve import build_app, run_service
from radcds.runtime.settings import load_settings
from radcds_reporting.app import MIGRATION_CHAIN, create_app
from radcds_reporting.settings import ReportingSettings


def app_factory() -> FastAPI:
    """The app of one worker process (used when ``RADCDS_REPORTING_HTTP_WORKERS`` > 1)."""
    return build_app("reporting", load_settings(ReportingSettings), create_app)


def main() -> None:
    """Entry point of the reporting service."""
    run_service("reporting", ReportingSettings, create_app, migration_chain=MIGRATION_CHAIN)


if __name__ == "__main__":
    main()
