"""``radcds-inference``: parse settings, build the app, serve."""

from __future__ import annotations

from radcds.runtime.serve import run_service
from radcds_inference.app import create_app
from radcds_inference.settings import InferenceSettings


def main() -> None:
    """Entry point of the inference service."""
    run_service("inference", InferenceSettings, create_app)


if __name__ == "__main__":
    main()
