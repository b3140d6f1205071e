"""Composition root of the worklist service.

``create_app(settings, ...)`` builds one :class:`WorklistComponents` holding the service's adapters and
long-running parts (outbox relay, Kafka consumer); one lifespan migrates the worklist's own database, then starts
and stops them in order. Adapters can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import (
    ASSESSMENT_PRODUCED,
    CRITICAL_RESULT_ESCALATED,
    FINDINGS_PRODUCED,
    ORDER_RECEIVED,
    REPORT_STORED,
    STUDY_AVAILABLE,
)
from radcds.domain.ports import BatchEventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.adapters.db.locks import LockStore
from radcds_worklist.adapters.reporting import HttpReporting
from radcds_worklist.domain.ports import Reporting
from radcds_worklist.handlers import WorklistService
from radcds_worklist.settings import WorklistSettings
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
#: The CloudEvents source of the events the worklist publishes (feedback, monitoring alerts) through its outbox.
SOURCE_WORKLIST = "/radcds/worklist"


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
        migrate(self.engine, chain=MIGRATION_CHAIN)
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
                handler=self.service.handle,
                dead_letters=self.kafka,
                metrics=self.metrics,
            )
            self.consumer.start()
            self.started.append("consumer")

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


def build_components(
    settings: WorklistSettings,
    *,
    engine: Engine | None = None,
    publisher: BatchEventPublisher | None = None,
    reporting: Reporting | None = None,
    consume: bool = True,
) -> WorklistComponents:
    """Wire the worklist's adapters and use cases; nothing starts before :meth:`WorklistComponents.start`.

    ``publisher`` replaces the Kafka publisher of the outbox (tests); ``reporting`` replaces reporting's HTTP client
    (``settings.reporting_fhir_url``)."""
    engine = engine or make_engine(settings.resolved_database_url())
    http: httpx.Client | None = None
    if reporting is None:
        http = httpx.Client(timeout=settings.request_timeout_s)
        reporting = HttpReporting(http, base_url=settings.reporting_fhir_url)
    locks = LockStore(engine, ttl=timedelta(seconds=settings.lock_ttl_s))
    service = WorklistService(engine=engine, consumer_group=settings.consumer_group)
    return WorklistComponents(
        settings=settings,
        engine=engine,
        metrics=ServiceMetrics(),
        service=service,
        locks=locks,
        reporting=reporting,
        desk=ReadingDesk(engine=engine, locks=locks, reporting=reporting),
        publisher=publisher,
        consume=consume,
        http=http,
    )


def create_app(settings: WorklistSettings, *, components: WorklistComponents | None = None) -> FastAPI:
    """Build the worklist app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)
    engine = components.engine
    consume = components.consume

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            components.stop()

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
    instrument(app)
    return app
