"""Composition root of the reporting service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.outcome import operation_outcome
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import kafka_reachable, publisher_for
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


def create_app(
    settings: ReportingSettings,
    *,
    engine: Engine | None = None,
    start_consumer: bool = True,
    publisher: EventPublisher | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    verifier: SmartTokenVerifier | None = None,
    start_mllp: bool | None = None,
) -> FastAPI:
    """Build the reporting app: FHIR API, the findings consumer, the critical-result escalation,
    the HL7 v2 order listener and the ORU delivery workers.

    ``publisher`` replaces the Kafka publisher (tests); ``verifier`` replaces the one the settings
    describe; ``clock`` is the time source of sign-off and critical-result handling.
    ``start_mllp`` (default: ``start_consumer``) runs the MLLP listener and the delivery workers
    when ``settings.mllp_enabled``; ORUs are queued whenever destinations are configured.
    """
    metrics = ServiceMetrics()
    engine = engine or make_engine(settings.resolved_database_url())
    state: dict[str, object] = {}
    run_mllp = settings.mllp_enabled and (start_consumer if start_mllp is None else start_mllp)
    results = ResultOutbox(engine=engine, destinations=settings.destinations(), clock=clock)
    metrics.registry.register(OutboundQueueCollector(results))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine, chain=MIGRATION_CHAIN)
        app.state.engine = engine
        consumer = None
        own_publisher = None
        events = publisher
        if events is None and start_consumer:
            own_publisher = publisher_for(settings, service="reporting", source=SOURCE_REPORTING)
            events = own_publisher
        app.state.authorizer = Authorizer(verifier or token_verifier(settings))
        app.state.results = results
        # Every reporting event (orders, reports, sign-offs, escalations) leaves through the
        # transactional outbox, written with the state it describes; one relay publishes them.
        relay = OutboxRelay(engine, events, name="reporting-outbox") if events is not None else None
        app.state.relay = relay
        app.state.signoff = ReportSignOff(engine=engine, publisher=events, clock=clock, results=results, relay=relay)
        if relay is not None and start_consumer:
            relay.start()
        order_store = OrderStore(engine=engine, log=SqlReceivedMessageLog(engine), relay=relay, clock=clock)
        app.state.order_store = order_store
        mllp_server = None
        if run_mllp:
            inbox = OrderInbox(order_store, log=SqlReceivedMessageLog(engine), local_timezone=settings.local_timezone())
            mllp_server = MLLPServer(inbox, host=settings.mllp_host, port=settings.mllp_port)
            await mllp_server.start()
            results.start()
            state["mllp"] = mllp_server
            app.state.mllp_server = mllp_server
            log.info(
                "mllp listener started", extra={"port": mllp_server.port, "destinations": len(results.destinations)}
            )
        critical = CriticalResults(
            engine=engine,
            publisher=events,
            ack_timeout=timedelta(seconds=settings.critical_ack_timeout_s),
            escalation_recipient=settings.critical_escalation_recipient,
            clock=clock,
            relay=relay,
        )
        app.state.critical = critical
        escalation = None
        if settings.critical_check_interval_s > 0 and start_consumer:
            escalation = asyncio.create_task(_escalation_loop(critical, settings.critical_check_interval_s))
        if start_consumer and events is not None:
            service = ReportingService(
                engine=engine,
                publisher=events,
                consumer_group=settings.consumer_group,
                default_recipient=settings.critical_default_recipient,
                clock=clock,
                results=results,
                relay=relay,
            )
            consumer = consumer_for(
                settings,
                service="reporting",
                group_id=settings.consumer_group,
                topics=[STUDY_AVAILABLE.topic, FINDINGS_PRODUCED.topic, ASSESSMENT_PRODUCED.topic],
                handler=service.handle,
                dead_letters=own_publisher or events,  # type: ignore[arg-type]
                metrics=metrics,
            )
            state.update(consumer=consumer, publisher=events)
            consumer.start()
        yield
        if mllp_server is not None:
            await mllp_server.close()
            await results.stop()
        if escalation is not None:
            escalation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await escalation
        if consumer is not None:
            consumer.stop()
        if relay is not None and start_consumer:
            relay.stop()  # after the consumer: its last events go out too
        if own_publisher is not None:
            own_publisher.close()
        engine.dispose()

    def consumer_ready() -> bool:
        consumer = state.get("consumer")
        return not start_consumer or (isinstance(consumer, EventConsumer) and consumer.alive and consumer.healthy)

    def kafka_ready() -> bool:
        return not start_consumer or kafka_reachable(settings.kafka_bootstrap_servers)

    def mllp_ready() -> bool:
        server = state.get("mllp")
        return not run_mllp or (isinstance(server, MLLPServer) and server.port > 0)

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
            checks={
                "database": lambda: database_ready(engine),
                "kafka": kafka_ready,
                "consumer": consumer_ready,
                "mllp": mllp_ready,
            },
            metrics=metrics,
        )
    )
    app.include_router(
        fhir_router(
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
