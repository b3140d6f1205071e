"""Composition root of the reporting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.fhir.outcome import operation_outcome
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import kafka_reachable, publisher_for
from radcds.domain.events import FINDINGS_PRODUCED, SOURCE_REPORTING, STUDY_AVAILABLE
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_reporting.api.fhir import fhir_router
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings, *, engine: Engine | None = None, start_consumer: bool = True) -> FastAPI:
    """Build the reporting app: FHIR API plus the findings consumer."""
    metrics = ServiceMetrics()
    engine = engine or make_engine(settings.resolved_database_url())
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        app.state.engine = engine
        publisher = None
        consumer = None
        if start_consumer:
            publisher = publisher_for(settings, service="reporting", source=SOURCE_REPORTING)
            service = ReportingService(engine=engine, publisher=publisher, consumer_group=settings.consumer_group)
            consumer = consumer_for(
                settings,
                service="reporting",
                group_id=settings.consumer_group,
                topics=[STUDY_AVAILABLE.topic, FINDINGS_PRODUCED.topic],
                handler=service.handle,
                dead_letters=publisher,
                metrics=metrics,
            )
            state.update(consumer=consumer, publisher=publisher)
            consumer.start()
        yield
        if consumer is not None:
            consumer.stop()
        if publisher is not None:
            publisher.close()
        engine.dispose()

    def consumer_ready() -> bool:
        consumer = state.get("consumer")
        return not start_consumer or (isinstance(consumer, EventConsumer) and consumer.alive and consumer.healthy)

    def kafka_ready() -> bool:
        return not start_consumer or kafka_reachable(settings.kafka_bootstrap_servers)

    app = FastAPI(title="radcds reporting", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException):  # type: ignore[no-untyped-def]
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return operation_outcome(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        return operation_outcome(400, "invalid", str(exc.errors()[:3]))

    app.include_router(
        health_router(
            checks={"database": lambda: database_ready(engine), "kafka": kafka_ready, "consumer": consumer_ready},
            metrics=metrics,
        )
    )
    app.include_router(fhir_router(base_url=settings.fhir_base_url.rstrip("/")))
    instrument(app)
    return app
