"""Composition root of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import kafka_reachable, publisher_for
from radcds.adapters.triton.client import TritonClient
from radcds.domain.events import INSTANCE_STORED, SOURCE_INFERENCE
from radcds.domain.models import PIXEL_STATISTICS
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_inference.grpc_server import GrpcEndpoint
from radcds_inference.handlers import InferenceService
from radcds_inference.retrieval import WadoRsRetriever
from radcds_inference.settings import InferenceSettings

#: Version of ``pixel_statistics`` this build requests explicitly (models/pixel_statistics/1).
PIXEL_STATISTICS_VERSION = "1"


def create_app(settings: InferenceSettings, *, triton: TritonClient | None = None) -> FastAPI:
    """Build the inference app: Kafka consumer, Triton client, gRPC health endpoint."""
    metrics = ServiceMetrics()
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        GrpcInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor().instrument()
        models = triton or TritonClient(settings.triton_url, timeout_s=settings.triton_timeout_s)
        http = httpx.Client(timeout=settings.retrieve_timeout_s)
        publisher = publisher_for(settings, service="inference", source=SOURCE_INFERENCE)
        service = InferenceService(
            models=models,
            retriever=WadoRsRetriever(http),
            publisher=publisher,
            model_version=PIXEL_STATISTICS_VERSION,
            max_image_size=settings.max_image_size,
        )
        consumer = consumer_for(
            settings,
            service="inference",
            group_id=settings.consumer_group,
            topics=[INSTANCE_STORED.topic],
            handler=service.handle,
            dead_letters=publisher,
            metrics=metrics,
        )
        grpc_endpoint = GrpcEndpoint(
            host=settings.http_host, port=settings.grpc_port, ready=lambda: models.model_ready(PIXEL_STATISTICS)
        )
        state.update(models=models, consumer=consumer, publisher=publisher)
        grpc_endpoint.start()
        consumer.start()
        yield
        consumer.stop()
        grpc_endpoint.stop()
        publisher.close()
        http.close()  # noqa: ASYNC212 - shutdown, nothing else runs
        models.close()

    def triton_ready() -> bool:
        models = state.get("models")
        return isinstance(models, TritonClient) and models.model_ready(PIXEL_STATISTICS)

    def consumer_ready() -> bool:
        consumer = state.get("consumer")
        return isinstance(consumer, EventConsumer) and consumer.alive and consumer.healthy

    def kafka_ready() -> bool:
        return kafka_reachable(settings.kafka_bootstrap_servers)

    app = FastAPI(title="radcds inference", version="0.1.0", lifespan=lifespan)
    app.include_router(
        health_router(
            checks={"triton": triton_ready, "kafka": kafka_ready, "consumer": consumer_ready}, metrics=metrics
        )
    )
    instrument(app)
    return app
