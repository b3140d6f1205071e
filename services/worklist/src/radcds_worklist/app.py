"""Composition root of the worklist service.

``create_app(settings, ...)`` builds one :class:`WorklistComponents` holding the service's adapters and
long-running parts (outbox relay, Kafka consumer); one lifespan migrates the worklist's own database, then starts
and stops them in order. Adapters can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    CRITICAL_RESULT_ESCALATED,
    FINDINGS_PRODUCED,
    ORDER_RECEIVED,
    REPORT_STORED,
    SOURCE_WORKLIST,
    STUDY_AVAILABLE,
)
from radcds.domain.ports import BatchEventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.adapters.db.locks import LockStore
from radcds_worklist.adapters.imaging import ImagingClient
from radcds_worklist.adapters.reporting import HttpReporting
from radcds_worklist.api.auth import build_authenticator, current_user, install_auth
from radcds_worklist.api.live import live_router
from radcds_worklist.api.monitoring import monitoring_router
from radcds_worklist.api.pages import pages_router
from radcds_worklist.api.views import envelope_text
from radcds_worklist.domain.ports import Reporting
from radcds_worklist.handlers import WorklistService
from radcds_worklist.settings import WorklistSettings
from radcds_worklist.use_cases.feedback import FeedbackDesk
from radcds_worklist.use_cases.monitoring import MonitoringDesk, load_declared_inputs
from radcds_worklist.use_cases.reading import ReadingDesk

#: The database chain of the worklist (its own Alembic version table).
MIGRATION_CHAIN = "radcds_worklist.db"
#: Topics the worklist reads: studies (imaging), findings (inference), assessments (fusion), reports and
#: critical-result escalations and acknowledgements (reporting's reports topic) and orders (reporting).
CONSUMED_TOPICS = tuple(
    dict.fromkeys(
        k.topic
        for k in (
            STUDY_AVAILABLE,
            FINDINGS_PRODUCED,
            ASSESSMENT_PRODUCED,
            REPORT_STORED,
            CRITICAL_RESULT_ESCALATED,
            ORDER_RECEIVED,
        )
    )
)


@dataclass
class WorklistComponents:
    """Everything the worklist process runs, built once by :func:`build_components`: the read model's event
    handlers (``service``), the reading desk (``desk``), the reading locks (``locks``), reporting's client
    (``reporting``); the relay and the consumer once started."""

    settings: WorklistSettings
    engine: Engine
    metrics: ServiceMetrics
    service: WorklistService
    locks: LockStore
    reporting: Reporting
    desk: ReadingDesk
    imaging: ImagingClient
    feedback: FeedbackDesk
    monitoring: MonitoringDesk
    #: Each model's validated envelope in words (from the model manifest), shown with its findings.
    envelopes: dict[str, str] = field(default_factory=dict)
    #: Handed in (tests); otherwise the Kafka publisher below is used for the outbox too.
    publisher: BatchEventPublisher | None = None
    kafka: KafkaEventPublisher | None = None
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    topics: tuple[str, ...] = CONSUMED_TOPICS
    #: Consume Kafka (False: serve the pages and relay the outbox only, e.g. a test).
    consume: bool = True
    #: The HTTP client of reporting's API, when the worklist built it (closed on stop).
    http: httpx.Client | None = None
    started: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Migrate the database, then start the outbox relay and the consumer (when :attr:`consume`)."""
        migrate(self.engine, chain=MIGRATION_CHAIN, apply=self.settings.migrate_on_start)
        self.started.append("database")
        if self.publisher is None or self.consume:
            self.kafka = publisher_for(self.settings, service="worklist", source=SOURCE_WORKLIST)
        events = self.publisher or self.kafka
        assert events is not None
        self.relay = OutboxRelay(self.engine, events, name="worklist-outbox")
        self.relay.start()
        self.started.append("relay")
        if self.consume and self.kafka is not None:
            self.consumer = consumer_for(
                self.settings,
                service="worklist",
                group_id=self.settings.consumer_group,
                topics=list(self.topics),
                handler=self.handle,
                dead_letters=self.kafka,
                metrics=self.metrics,
            )
            self.consumer.start()
            self.started.append("consumer")

    def handle(self, event: DecodedEvent) -> None:
        """One consumed event: the read model first, then monitoring's input profile (each idempotent, so a
        redelivery after a failure in the second redoes only what is missing)."""
        self.service.handle(event)
        self.monitoring.handle(event)

    def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order."""
        if self.consumer is not None:
            self.consumer.stop()
            self.consumer = None
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.kafka is not None:
            self.kafka.close()
            self.kafka = None
        if self.http is not None:
            self.http.close()
        self.started.clear()

    def notify_relay(self) -> None:
        """Wake the relay after a commit that wrote events to the outbox."""
        if self.relay is not None:
            self.relay.notify()


def model_envelopes(manifest: Path) -> dict[str, str]:
    """Each model's validated envelope in words, from the model manifest (empty when there is none)."""
    if not manifest.is_file():
        return {}
    document = json.loads(manifest.read_text(encoding="utf-8"))
    return {str(m["name"]): envelope_text(m.get("applies_to") or {}) for m in document.get("models", [])}


def build_components(
    settings: WorklistSettings,
    *,
    engine: Engine | None = None,
    publisher: BatchEventPublisher | None = None,
    reporting: Reporting | None = None,
    imaging: ImagingClient | None = None,
    consume: bool = True,
) -> WorklistComponents:
    """Wire the worklist's adapters and use cases; nothing starts before :meth:`WorklistComponents.start`.

    ``publisher`` replaces the Kafka publisher of the outbox (tests); ``reporting`` and ``imaging`` replace the
    HTTP clients of reporting's FHIR API (``settings.reporting_fhir_url``) and imaging's DICOMweb
    (``settings.imaging_dicomweb_url``)."""
    engine = engine or make_engine(settings.resolved_database_url())
    http: httpx.Client | None = None
    if reporting is None or imaging is None:
        http = httpx.Client(timeout=settings.request_timeout_s)
    if reporting is None:
        assert http is not None
        reporting = HttpReporting(http, base_url=settings.reporting_fhir_url)
    if imaging is None:
        assert http is not None
        imaging = ImagingClient(http, dicomweb_url=settings.imaging_dicomweb_url)
    holder: list[WorklistComponents] = []

    def notify() -> None:
        if holder:
            holder[0].notify_relay()

    metrics = ServiceMetrics()
    locks = LockStore(engine, ttl=timedelta(seconds=settings.lock_ttl_s))
    monitoring = MonitoringDesk(
        engine=engine,
        acquisitions=imaging,
        metrics=metrics,
        declared=load_declared_inputs(settings.model_manifest),
        after_commit=notify,
    )
    components = WorklistComponents(
        settings=settings,
        engine=engine,
        metrics=metrics,
        service=WorklistService(engine=engine, consumer_group=settings.consumer_group),
        locks=locks,
        reporting=reporting,
        desk=ReadingDesk(engine=engine, locks=locks, reporting=reporting),
        imaging=imaging,
        feedback=FeedbackDesk(engine=engine, monitoring=monitoring, after_commit=notify),
        monitoring=monitoring,
        envelopes=model_envelopes(settings.model_manifest),
        publisher=publisher,
        consume=consume,
        http=http,
    )
    holder.append(components)
    return components


#: Sent with every response: scripts, styles and images from the worklist only, no framing, no sniffing, and no
#: URL to other origins (same-origin keeps the Origin header on form posts, which the CSRF check reads).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Add :data:`SECURITY_HEADERS` to the response (an existing header of the same name wins)."""
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def create_app(settings: WorklistSettings, *, components: WorklistComponents | None = None) -> FastAPI:
    """Build the worklist app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)
    engine = components.engine
    consume = components.consume

    oidc_http = httpx.AsyncClient(timeout=settings.request_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            components.stop()
            await oidc_http.aclose()

    def consumer_ready() -> bool:
        return not consume or (
            components.consumer is not None and components.consumer.alive and components.consumer.healthy
        )

    checks = {
        "database": lambda: database_ready(engine),
        "kafka": lambda: not consume or kafka_reachable(settings.kafka_bootstrap_servers),
        "consumer": consumer_ready,
    }
    app = FastAPI(title="radcds worklist", version="0.1.0", lifespan=lifespan)
    app.include_router(health_router(checks=checks, metrics=components.metrics))
    app.middleware("http")(security_headers)
    install_auth(app, build_authenticator(settings, http=oidc_http))
    app.include_router(live_router(engine, user=current_user))
    app.include_router(
        pages_router(
            engine=engine,
            desk=components.desk,
            feedback=components.feedback,
            imaging=components.imaging,
            envelopes=components.envelopes,
            viewer_url_template=settings.viewer_url_template,
            page_size=settings.page_size,
        )
    )
    app.include_router(monitoring_router(monitoring=components.monitoring))
    app.mount("/static", StaticFiles(directory=str(files("radcds_worklist").joinpath("static"))), name="static")
    instrument(app)
    return app
