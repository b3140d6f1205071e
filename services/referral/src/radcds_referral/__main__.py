"""``radcds-referral``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_referral.app import create_app
from radcds_referral.settings import ReferralSettings


def main() -> None:
    """Entry point of the referral service."""
    run_service("referral", ReferralSettings, create_app)


if __name__ == "__main__":
    main()
