"""Running a service: settings, logging, tracing, then uvicorn with graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from radcds.runtime.logging import configure_logging
from radcds.runtime.settings import ServiceSettings, load_settings
from radcds.runtime.telemetry import configure_tracing

S = TypeVar("S", bound=ServiceSettings)


#: Request-body bytes uvicorn buffers before it pauses reading the socket (its default is 64 KiB).
#: A STOW-RS request is tens of megabytes: with 64 KiB the body arrives in hundreds of event-loop
#: round trips, which cost more than storing the instances (measured with bench/imaging_bench.py).
BODY_HIGH_WATER_BYTES = 4 * 1024 * 1024


def _raise_body_high_water(limit: int = BODY_HIGH_WATER_BYTES) -> None:
    """Let uvicorn's HTTP protocols buffer up to ``limit`` bytes of request body per connection.

    uvicorn reads its flow-control limit from a module constant and offers no setting for it.
    """
    from uvicorn.protocols.http import h11_impl, httptools_impl

    httptools_impl.HIGH_WATER_LIMIT = limit  # type: ignore[attr-defined]
    h11_impl.HIGH_WATER_LIMIT = limit  # type: ignore[attr-defined]


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; the app's lifespan closes its adapters."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()


def build_app(name: str, settings: S, create_app: Callable[[S], FastAPI]) -> FastAPI:
    """Set up logs and traces for ``name`` and build its app (once per process)."""
    _raise_body_high_water()  # here, so each uvicorn worker process does it too
    configure_logging(service=name, level=settings.log_level)
    configure_tracing(service=name, otlp_endpoint=settings.otlp_endpoint, trace_file=settings.trace_file)
    return create_app(settings)


def run_service(name: str, settings_cls: type[S], create_app: Callable[[S], FastAPI]) -> None:
    """Validate settings (exit 2 with a clear message if bad), then serve.

    With ``HTTP_WORKERS`` > 1, uvicorn starts that many processes, each building its own app (and
    adapters) through ``radcds_<name>.__main__:app_factory``.
    """
    settings = load_settings(settings_cls)
    if settings.http_workers > 1:
        uvicorn.run(
            f"radcds_{name}.__main__:app_factory",
            factory=True,
            workers=settings.http_workers,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        return
    serve(build_app(name, settings, create_app), host=settings.http_host, port=settings.http_port)
