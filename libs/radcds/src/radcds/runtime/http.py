"""HTTP plumbing every service shares: health, readiness, metrics and tracing of routes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from radcds.runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool]


def health_router(*, checks: Mapping[str, ReadinessCheck], metrics: ServiceMetrics) -> APIRouter:
    """``/healthz`` (process alive), ``/readyz`` (dependencies reachable) and ``/metrics``."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                results[name] = "ok" if check() else "not ready"
            except Exception as exc:  # a failing probe is a "no", never a 500
                log.debug("readiness check failed", extra={"check": name, "error_class": type(exc).__name__})
                results[name] = "not ready"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503
        )

    @router.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def instrument(app: FastAPI) -> None:
    """Trace every route except the operational ones (server spans, W3C context in and out)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # No internal span per ASGI receive/send message: a 10 MB STOW-RS body arrives in ~160 chunks,
    # and a span each cost more than storing the instances (measured with bench/imaging_bench.py).
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"])
