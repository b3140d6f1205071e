"""Composition root of the inference service.

``create_app(settings, ...)`` builds one :class:`InferenceComponents` holding the service's adapters and long-running
parts (the asyncio loop thread, Triton, the DICOMweb client of imaging, the Kafka publisher and study consumer, the
gRPC ``AnalyzeStudy`` endpoint); one lifespan starts and stops that list in order. The Triton adapter can be handed
in (tests, other deployments); the default is the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from fastapi import FastAPI

from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import SOURCE_INFERENCE, STUDY_AVAILABLE
from radcds.runtime.http import health_router, instrument
from radcds.runtime.loop import LoopThread
from radcds.runtime.metrics import ServiceMetrics
from radcds_inference.adapters.dicomweb import DicomWebClient
from radcds_inference.adapters.triton.aio import AsyncTritonModels
from radcds_inference.adapters.triton.breaker import CircuitBreaker
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.api.grpc_server import GrpcEndpoint, InferenceServicer
from radcds_inference.domain.envelope import ModelManifest
from radcds_inference.handlers import InferenceService, ModelPort
from radcds_inference.settings import InferenceSettings

T = TypeVar("T")
#: Topics the inference consumer reads: imaging's study announcements (after the quiet period).
CONSUMED_TOPICS = (STUDY_AVAILABLE.topic,)


class ServedModels(ModelPort, Protocol):
    """The models port plus what the process needs of the server: readiness (health) and closing."""

    async def models_ready(self, models: Sequence[tuple[str, str]], *, timeout_s: float = 2.0) -> dict[str, bool]:
        """Readiness of each (name, version), by name."""

    async def close(self) -> None:
        """Release the connection (and shared memory regions)."""


@dataclass
class InferenceComponents:
    """Everything the inference process runs, built once by :func:`build_components`, started by the lifespan."""

    settings: InferenceSettings
    manifest: ModelManifest
    metrics: ServiceMetrics
    models: ServedModels
    loop: LoopThread | None = None
    http: httpx.AsyncClient | None = None
    dicomweb: DicomWebClient | None = None
    publisher: KafkaEventPublisher | None = None
    service: InferenceService | None = None
    consumer: EventConsumer | None = None
    grpc: GrpcEndpoint | None = None
    started: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[tuple[str, str]]:
        """(name, version) of each active manifest model."""
        return [(e.name, e.version) for e in self.manifest.active()]

    def start(self) -> None:
        """Start the loop, the DICOMweb client, the publisher, the study consumer and the gRPC endpoint."""
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        settings = self.settings
        GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]  # instrument() is unannotated
        HTTPXClientInstrumentor().instrument()
        loop = self.loop = LoopThread("inference-io")
        self.started.append("loop")

        async def make_http() -> httpx.AsyncClient:
            return httpx.AsyncClient(timeout=settings.retrieve_timeout_s)

        self.http = loop.run(make_http())
        self.dicomweb = DicomWebClient(
            self.http, base_url=settings.imaging_dicomweb_url, max_parallel=settings.retrieve_parallel
        )
        self.publisher = publisher_for(settings, service="inference", source=SOURCE_INFERENCE)
        self.service = InferenceService(
            manifest=self.manifest,
            models=self.models,
            dicomweb=self.dicomweb,
            publisher=self.publisher,
            run=loop.run,
            store_reports=settings.store_structured_reports,
        )
        self.consumer = consumer_for(
            settings,
            service="inference",
            group_id=settings.consumer_group,
            topics=list(CONSUMED_TOPICS),
            handler=self.service.handle,
            dead_letters=self.publisher,
            metrics=self.metrics,
        )

        def run_bounded(coro: Coroutine[Any, Any, T]) -> T:
            return loop.run(coro, timeout_s=settings.analyze_timeout_s)

        self.grpc = GrpcEndpoint(
            host=settings.http_host,
            port=settings.grpc_port,
            ready=lambda: all(self.models_ready().values()),
            servicer=InferenceServicer(self.service, run_bounded, timeout_s=settings.analyze_timeout_s),
        )
        self.grpc.start()
        self.started.append("grpc")
        self.consumer.start()
        self.started.append("consumer")

    def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order."""
        if self.consumer is not None:
            self.consumer.stop()
        if self.grpc is not None:
            self.grpc.stop()
        if self.publisher is not None:
            self.publisher.close()
        if self.loop is not None:
            if self.http is not None:
                self.loop.run(self.http.aclose())
            self.loop.run(self.models.close())
            self.loop.stop()
            self.loop = None
        self.started.clear()

    def models_ready(self) -> dict[str, bool]:
        """Readiness of each active model on Triton (all not ready before :meth:`start`)."""
        if self.loop is None:
            return {name: False for name, _ in self.active}
        return self.loop.run(self.models.models_ready(self.active), timeout_s=5.0)

    def consumer_ready(self) -> bool:
        """The study consumer runs and is healthy."""
        return self.consumer is not None and self.consumer.alive and self.consumer.healthy


def triton_models(settings: InferenceSettings) -> AsyncTritonModels:
    """The Triton adapter (gRPC aio; connects on first use) with its circuit breaker, from the settings."""
    return AsyncTritonModels(
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


def build_components(settings: InferenceSettings, *, models: ServedModels | None = None) -> InferenceComponents:
    """Wire inference (the manifest is checked here: a bad file stops the service); nothing starts before
    :meth:`InferenceComponents.start`."""
    return InferenceComponents(
        settings=settings,
        manifest=load_manifest(settings.model_repository),
        metrics=ServiceMetrics(),
        models=models or triton_models(settings),
    )


def create_app(settings: InferenceSettings, *, components: InferenceComponents | None = None) -> FastAPI:
    """Build the inference app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            components.stop()

    def model_check(name: str) -> Callable[[], bool]:
        return lambda: components.models_ready().get(name, False)

    def kafka_ready() -> bool:
        return kafka_reachable(settings.kafka_bootstrap_servers)

    checks: dict[str, Callable[[], bool]] = {f"triton:{name}": model_check(name) for name, _ in components.active}
    checks |= {"kafka": kafka_ready, "consumer": components.consumer_ready}
    app = FastAPI(title="radcds inference", version="0.2.0", lifespan=lifespan)
    app.include_router(health_router(checks=checks, metrics=components.metrics))
    instrument(app)
    return app
