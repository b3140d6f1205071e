"""Composition root of the reporting service.

``create_app(settings, ...)`` builds one :class:`ReportingComponents` holding the service's adapters, use cases
and long-running parts (outbox relay, Kafka consumer, MLLP listener and ORU delivery workers, critical-result
escalation); one lifespan migrates reporting's own database, then starts and stops that list in order. Adapters
can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.outcome import operation_outcome
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import ASSESSMENT_PRODUCED, FINDINGS_PRODUCED, SOURCE_REPORTING, STUDY_AVAILABLE
from radcds.domain.ports import EventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_reporting.adapters.auth.smart import SmartTokenVerifier
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import MLLPServer
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.api.deps import Authorizer
from radcds_reporting.api.fhir import fhir_router, smart_configuration
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.critical import CriticalResults
from radcds_reporting.use_cases.hl7_orders import OrderStore
from radcds_reporting.use_cases.orders import OrderUpdates
from radcds_reporting.use_cases.oru import OutboundQueueCollector, ResultOutbox
from radcds_reporting.use_cases.signoff import ReportSignOff

log = logging.getLogger(__name__)


def token_verifier(settings: ReportingSettings) -> SmartTokenVerifier | None:
    """The SMART access-token verifier the settings ask for (None: open access, development only)."""
    if settings.auth_mode == "open":
        return None
    key_file = settings.smart_public_key_file
    return SmartTokenVerifier(
        issuer=settings.smart_issuer,
        audience=settings.smart_audience or settings.fhir_base_url.rstrip("/"),
        algorithms=settings.smart_algorithms,
        leeway_s=settings.smart_leeway_s,
        jwks_url=settings.smart_jwks_url if key_file is None else None,
        public_key_pem=key_file.read_text(encoding="ascii") if key_file is not None else None,
    )


async def _escalation_loop(critical: CriticalResults, interval_s: float) -> None:
    """Run the critical-result escalation check every ``interval_s`` seconds."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(critical.escalate_overdue)
        except Exception:  # keep checking: one failed round (database, Kafka) must not stop escalation
            log.exception("critical-result escalation check failed")


#: reporting's own migration chain (version table ``alembic_version_reporting``).
MIGRATION_CHAIN = "radcds_reporting.db"
#: Topics reporting reads: studies (the report's ImagingStudy), inference's findings, fusion's assessments.
CONSUMED_TOPICS = (STUDY_AVAILABLE.topic, FINDINGS_PRODUCED.topic, ASSESSMENT_PRODUCED.topic)


class RelayHandle:
    """The outbox relay as the use cases see it (:class:`~radcds_reporting.domain.ports.OutboxNotifier`): the
    relay needs the event publisher, which is built at start, so the use cases, built before, wake it through
    this handle."""

    def __init__(self) -> None:
        self.relay: OutboxRelay | None = None

    def notify(self) -> None:
        """Wake the relay after a commit that wrote events (a no-op before start)."""
        if self.relay is not None:
            self.relay.notify()


@dataclass
class ReportingComponents:
    """Everything the reporting process runs, built once by :func:`build_components`; :meth:`start` and
    :meth:`stop` run the long-running parts (outbox relay, Kafka consumer, MLLP listener and ORU delivery
    workers, critical-result escalation) in order."""

    settings: ReportingSettings
    engine: Engine
    metrics: ServiceMetrics
    authorizer: Authorizer
    results: ResultOutbox
    signoff: ReportSignOff
    critical: CriticalResults
    order_store: OrderStore
    orders: OrderUpdates
    service: ReportingService
    outbox: RelayHandle
    #: Consume Kafka (and start the relay thread and the escalation loop); False: serve the API only.
    consume: bool = True
    #: Handed in (tests, other deployments); otherwise the Kafka publisher built at start (when consuming, it
    #: also takes the consumer's dead letters).
    publisher: EventPublisher | None = None
    kafka: KafkaEventPublisher | None = None
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    mllp: MLLPServer | None = None
    escalation: asyncio.Task[None] | None = None
    started: list[str] = field(default_factory=list)

    @property
    def events(self) -> EventPublisher | None:
        """Where the relay publishes: the handed-in publisher, else the Kafka one (None: events stay queued)."""
        return self.publisher or self.kafka

    async def start(self) -> None:
        """Migrate the database, then start the relay, the MLLP listener, the escalation loop and the consumer.

        Every reporting event (orders, reports, sign-offs, escalations) leaves through the transactional
        outbox, written with the state it describes; one relay publishes them."""
        settings = self.settings
        migrate(self.engine, chain=MIGRATION_CHAIN, apply=self.settings.migrate_on_start)
        if self.consume:
            self.kafka = publisher_for(settings, service="reporting", source=SOURCE_REPORTING)
        events = self.events
        if events is not None:
            self.relay = OutboxRelay(self.engine, events, name="reporting-outbox")
            self.outbox.relay = self.relay
            if self.consume:
                self.relay.start()
                self.started.append("relay")
        if settings.mllp_enabled:
            inbox = OrderInbox(
                self.order_store, log=SqlReceivedMessageLog(self.engine), local_timezone=settings.local_timezone()
            )
            self.mllp = MLLPServer(inbox, host=settings.mllp_host, port=settings.mllp_port)
            await self.mllp.start()
            self.results.start()
            self.started.append("mllp")
            log.info(
                "mllp listener started", extra={"port": self.mllp.port, "destinations": len(self.results.destinations)}
            )
        if settings.critical_check_interval_s > 0 and self.consume:
            self.escalation = asyncio.create_task(_escalation_loop(self.critical, settings.critical_check_interval_s))
            self.started.append("escalation")
        if self.consume and self.kafka is not None:
            self.consumer = consumer_for(
                settings,
                service="reporting",
                group_id=settings.consumer_group,
                topics=list(CONSUMED_TOPICS),
                handler=self.service.handle,
                dead_letters=self.kafka,
                metrics=self.metrics,
            )
            self.consumer.start()
            self.started.append("consumer")

    async def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order; the relay after the consumer, so its last events
        go out too."""
        if self.mllp is not None:
            await self.mllp.close()
            await self.results.stop()
        if self.escalation is not None:
            self.escalation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.escalation
        if self.consumer is not None:
            self.consumer.stop()
        if self.relay is not None and self.consume:
            self.relay.stop()
        if self.kafka is not None:
            self.kafka.close()
        self.engine.dispose()
        self.started.clear()

    def consumer_ready(self) -> bool:
        """Readiness: the Kafka consumer runs and is healthy (always ready when not consuming)."""
        return not self.consume or (self.consumer is not None and self.consumer.alive and self.consumer.healthy)

    def mllp_ready(self) -> bool:
        """Readiness: the MLLP listener has its port (always ready when MLLP is off)."""
        return not self.settings.mllp_enabled or (self.mllp is not None and self.mllp.port > 0)


def build_components(
    settings: ReportingSettings,
    *,
    engine: Engine | None = None,
    publisher: EventPublisher | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    verifier: SmartTokenVerifier | None = None,
    consume: bool = True,
) -> ReportingComponents:
    """Wire reporting's adapters and use cases; nothing starts before :meth:`ReportingComponents.start`.

    ``publisher`` replaces the Kafka publisher (tests); ``verifier`` replaces the one the settings describe;
    ``clock`` is the time source of sign-off and critical-result handling. Events are written to the outbox
    only when they have somewhere to go (a handed-in publisher, or Kafka when ``consume``)."""
    engine = engine or make_engine(settings.resolved_database_url())
    metrics = ServiceMetrics()
    results = ResultOutbox(engine=engine, destinations=settings.destinations(), clock=clock)
    metrics.registry.register(OutboundQueueCollector(results))
    outbox = RelayHandle()
    relay = outbox if publisher is not None or consume else None
    return ReportingComponents(
        settings=settings,
        engine=engine,
        metrics=metrics,
        authorizer=Authorizer(verifier or token_verifier(settings)),
        results=results,
        signoff=ReportSignOff(engine=engine, clock=clock, results=results, relay=relay),
        critical=CriticalResults(
            engine=engine,
            ack_timeout=timedelta(seconds=settings.critical_ack_timeout_s),
            escalation_recipient=settings.critical_escalation_recipient,
            clock=clock,
            relay=relay,
        ),
        order_store=OrderStore(engine=engine, log=SqlReceivedMessageLog(engine), relay=relay, clock=clock),
        orders=OrderUpdates(engine=engine, relay=relay, clock=clock),
        service=ReportingService(
            engine=engine,
            consumer_group=settings.consumer_group,
            default_recipient=settings.critical_default_recipient,
            clock=clock,
            results=results,
            relay=relay,
        ),
        outbox=outbox,
        consume=consume,
        publisher=publisher,
    )


def create_app(settings: ReportingSettings, *, components: ReportingComponents | None = None) -> FastAPI:
    """Build the reporting app over ``components`` (the real ones by default): the FHIR API, the findings
    consumer, the critical-result escalation, the HL7 v2 order listener and the ORU delivery workers; the
    lifespan starts and stops them."""
    parts = components or build_components(settings)
    settings = parts.settings
    engine = parts.engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parts.start()
        try:
            yield
        finally:
            await parts.stop()

    def kafka_ready() -> bool:
        return not parts.consume or kafka_reachable(settings.kafka_bootstrap_servers)

    app = FastAPI(title="radcds reporting", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return operation_outcome(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return operation_outcome(400, "invalid", str(exc.errors()[:3]))

    app.include_router(
        health_router(
            checks={
                "database": lambda: database_ready(engine),
                "kafka": kafka_ready,
                "consumer": parts.consumer_ready,
                "mllp": parts.mllp_ready,
            },
            metrics=parts.metrics,
        )
    )
    app.include_router(
        fhir_router(
            engine=engine,
            auth=parts.authorizer,
            signoff=parts.signoff,
            critical=parts.critical,
            orders=parts.orders,
            base_url=settings.fhir_base_url.rstrip("/"),
            default_count=settings.search_default_count,
            max_count=settings.search_max_count,
            smart=smart_configuration(
                issuer=settings.smart_issuer,
                jwks_url=settings.smart_jwks_url,
                authorize_url=settings.smart_authorize_url,
                token_url=settings.smart_token_url,
            )
            if settings.auth_mode == "smart"
            else None,
        )
    )
    instrument(app)
    return app
