"""Composition root of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import kafka_reachable, publisher_for
from radcds.domain.events import SOURCE_INFERENCE, STUDY_AVAILABLE
from radcds.runtime.http import health_router, instrument
from radcds.runtime.loop import LoopThread
from radcds.runtime.metrics import ServiceMetrics
from radcds_inference.adapters.dicomweb import DicomWebClient
from radcds_inference.adapters.triton.aio import AsyncTritonModels
from radcds_inference.adapters.triton.breaker import CircuitBreaker
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.api.grpc_server import GrpcEndpoint, InferenceServicer
from radcds_inference.handlers import InferenceService
from radcds_inference.settings import InferenceSettings

#: Topics the inference consumer reads: imaging's study announcements (after the quiet period).
CONSUMED_TOPICS = (STUDY_AVAILABLE.topic,)


def create_app(settings: InferenceSettings, *, models: AsyncTritonModels | None = None) -> FastAPI:
    """Build the inference app: study consumer, Triton (gRPC aio), DICOMweb client, gRPC AnalyzeStudy + health."""
    metrics = ServiceMetrics()
    manifest = load_manifest(settings.model_repository)
    active = [(e.name, e.version) for e in manifest.active()]
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor().instrument()
        loop = LoopThread("inference-io")
        triton = models or AsyncTritonModels(
            settings.triton_url,
            timeout_s=settings.triton_timeout_s,
            retries=settings.triton_retries,
            backoff_s=settings.triton_backoff_s,
            breaker=CircuitBreaker(
                name="triton",
                failure_threshold=settings.triton_breaker_failures,
                reset_timeout_s=settings.triton_breaker_reset_s,
            ),
            shared_memory=settings.triton_shared_memory,
        )

        async def make_http() -> httpx.AsyncClient:
            return httpx.AsyncClient(timeout=settings.retrieve_timeout_s)

        http = loop.run(make_http())
        dicomweb = DicomWebClient(http, base_url=settings.imaging_dicomweb_url, max_parallel=settings.retrieve_parallel)
        publisher = publisher_for(settings, service="inference", source=SOURCE_INFERENCE)
        service = InferenceService(
            manifest=manifest,
            models=triton,
            dicomweb=dicomweb,
            publisher=publisher,
            run=loop.run,
            store_reports=settings.store_structured_reports,
        )
        consumer = consumer_for(
            settings,
            service="inference",
            group_id=settings.consumer_group,
            topics=list(CONSUMED_TOPICS),
            handler=service.handle,
            dead_letters=publisher,
            metrics=metrics,
        )

        def run_bounded(coro: Any) -> Any:
            return loop.run(coro, timeout_s=settings.analyze_timeout_s)

        grpc_endpoint = GrpcEndpoint(
            host=settings.http_host,
            port=settings.grpc_port,
            ready=lambda: all(models_ready().values()),
            servicer=InferenceServicer(service, run_bounded, timeout_s=settings.analyze_timeout_s),
        )
        state.update(loop=loop, triton=triton, consumer=consumer)
        grpc_endpoint.start()
        consumer.start()
        yield
        consumer.stop()
        grpc_endpoint.stop()
        publisher.close()
        loop.run(http.aclose())
        loop.run(triton.close())
        loop.stop()

    def models_ready() -> dict[str, bool]:
        loop, triton = state.get("loop"), state.get("triton")
        if not isinstance(loop, LoopThread) or triton is None:
            return {name: False for name, _ in active}
        result: dict[str, bool] = loop.run(triton.models_ready(active), timeout_s=5.0)
        return result

    def model_check(name: str) -> Callable[[], bool]:
        return lambda: models_ready().get(name, False)

    def consumer_ready() -> bool:
        consumer = state.get("consumer")
        return isinstance(consumer, EventConsumer) and consumer.alive and consumer.healthy

    def kafka_ready() -> bool:
        return kafka_reachable(settings.kafka_bootstrap_servers)

    checks: dict[str, Callable[[], bool]] = {f"triton:{name}": model_check(name) for name, _ in active}
    checks |= {"kafka": kafka_ready, "consumer": consumer_ready}
    app = FastAPI(title="radcds inference", version="0.2.0", lifespan=lifespan)
    app.include_router(health_router(checks=checks, metrics=metrics))
    instrument(app)
    return app
