"""``radcds-referral``: parse settings, build the app, serve."""

from __future__ import annotations

from fastapi import FastAPI

from radcds.runtime.serve import build_app, run_service
from radcds.runtime.settings import load_settings
from radcds_referral.app import MIGRATION_CHAIN, create_app
from radcds_referral.settings import ReferralSettings


def app_factory() -> FastAPI:
    """The app of one worker process (used when ``RADCDS_REFERRAL_HTTP_WORKERS`` > 1)."""
    return build_app("referral", load_settings(ReferralSettings), create_app)


def main() -> None:
    """Entry point of the referral service."""
    run_service("referral", ReferralSettings, create_app, migration_chain=MIGRATION_CHAIN)


if __name__ == "__main__":
    main()
