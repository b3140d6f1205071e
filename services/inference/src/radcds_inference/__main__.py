"""``radcds-inference``: parse settings, build the app, serve."""

from __future__ import annotations

from fastapi import FastAPI

from radcds.runtime.serve import build_app, run_service
from radcds.runtime.settings import load_settings
from radcds_inference.app import create_app
from radcds_inference.settings import InferenceSettings


def app_factory() -> FastAPI:
    """The app of one worker process (used when ``RADCDS_INFERENCE_HTTP_WORKERS`` > 1)."""
    return build_app("inference", load_settings(InferenceSettings), create_app)


def main() -> None:
    """Entry point of the inference service."""
    run_service("inference", InferenceSettings, create_app)


if __name__ == "__main__":
    main()
