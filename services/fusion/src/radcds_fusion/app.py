"""Composition root of the fusion service.

``create_app(settings, ...)`` builds one :class:`FusionComponents` holding the service's adapters and long-running
parts (outbox relay, Kafka consumer, overdue sweep); one lifespan migrates fusion's own database, then starts and
stops that list in order. Adapters can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.consumer import EventConsumer, consumer_for
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import (
    FINDINGS_ENTERED,
    FINDINGS_PRODUCED,
    INSTANCE_STORED,
    ORDER_EVALUATED,
    ORDER_RECEIVED,
    SOURCE_FUSION,
    STUDY_AVAILABLE,
)
from radcds.domain.ports import BatchEventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.loop import LoopThread
from radcds.runtime.metrics import ServiceMetrics
from radcds_fusion.adapters.ehr import ehr_context_reader
from radcds_fusion.adapters.ehr_auth import DevelopmentNoAuth, EhrAuth, SmartBackendServicesAuth
from radcds_fusion.adapters.ehr_source import EhrContextSource
from radcds_fusion.adapters.imaging import ImagingInstances
from radcds_fusion.api.fhir import fhir_router
from radcds_fusion.domain.context import ClinicalContext, PatientRef
from radcds_fusion.handlers import FusionService
from radcds_fusion.knowledge import load_knowledge
from radcds_fusion.queries import RecommendationQueries
from radcds_fusion.settings import FusionSettings

log = logging.getLogger(__name__)
#: Topics fusion reads: findings to assess (inference's, and the radiologist's sent with the report), studies and
#: orders (HL7 v2 from reporting, CDS Hooks order-sign from referral) that may close recommendations, instances
#: (measurement SRs; only with imaging's DICOMweb configured).
CONSUMED_TOPICS = (
    FINDINGS_PRODUCED.topic,
    FINDINGS_ENTERED.topic,
    STUDY_AVAILABLE.topic,
    ORDER_RECEIVED.topic,
    ORDER_EVALUATED.topic,
)
SR_TOPICS = (INSTANCE_STORED.topic,)
#: The database chain of fusion (its own Alembic version table).
MIGRATION_CHAIN = "radcds_fusion.db"


def no_ehr_context(patient: PatientRef) -> ClinicalContext:
    """The context when no EHR is configured: nothing known, and the assessment says so."""
    return ClinicalContext(missing=("EHR context (no EHR configured)",))


class OverdueSweep:
    """Runs ``sweep`` every ``interval_s`` seconds in a daemon thread until stopped."""

    def __init__(self, sweep: Callable[[], object], *, interval_s: float) -> None:
        self._sweep = sweep
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fusion-overdue-sweep", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sweep()
            except Exception:  # the next round tries again; never kill the thread
                log.exception("overdue sweep failed")

    def start(self) -> None:
        """Start sweeping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class FusionComponents:
    """Everything the fusion process runs, built once by :func:`create_app`."""

    settings: FusionSettings
    engine: Engine
    service: FusionService
    queries: RecommendationQueries
    metrics: ServiceMetrics
    #: Handed in (tests); otherwise the Kafka publisher below is used for the outbox too.
    publisher: BatchEventPublisher | None = None
    kafka: KafkaEventPublisher | None = None
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    sweep: OverdueSweep | None = None
    topics: tuple[str, ...] = CONSUMED_TOPICS
    #: Consume Kafka (False: serve the API and relay the outbox only, e.g. a read replica or a test).
    consume: bool = True
    #: The HTTP client of the WADO-RS adapter, when fusion built it (closed on stop).
    http: httpx.Client | None = None
    #: The EHR context source, when fusion built it (closed on stop).
    ehr: EhrContextSource | None = None
    started: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Migrate the database, then start the relay, the consumer (when :attr:`consume`) and the sweep."""
        consume = self.consume
        migrate(self.engine, chain=MIGRATION_CHAIN, apply=self.settings.migrate_on_start)
        if self.publisher is None or consume:
            self.kafka = publisher_for(self.settings, service="fusion", source=SOURCE_FUSION)
        events = self.publisher or self.kafka
        assert events is not None
        self.relay = OutboxRelay(self.engine, events, name="fusion-outbox")
        self.relay.start()
        self.started.append("relay")
        if consume and self.kafka is not None:
            self.consumer = consumer_for(
                self.settings,
                service="fusion",
                group_id=self.settings.consumer_group,
                topics=list(self.topics),
                handler=self.service.handle,
                dead_letters=self.kafka,
                metrics=self.metrics,
            )
            self.consumer.start()
            self.started.append("consumer")
        self.sweep = OverdueSweep(self.service.sweep_overdue, interval_s=self.settings.overdue_sweep_interval_s)
        self.sweep.start()
        self.started.append("sweep")

    def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order."""
        if self.sweep is not None:
            self.sweep.stop()
        if self.consumer is not None:
            self.consumer.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.kafka is not None:
            self.kafka.close()
        if self.http is not None:
            self.http.close()
        if self.ehr is not None:
            self.ehr.close()
            self.ehr = None
        self.started.clear()

    def notify_relay(self) -> None:
        """Wake the relay after a commit that wrote events."""
        if self.relay is not None:
            self.relay.notify()


def ehr_context_source(settings: FusionSettings) -> EhrContextSource | None:
    """The EHR context port from the settings (``None`` when no EHR is configured)."""
    if settings.ehr_fhir_base_url is None:
        return None
    auth: EhrAuth
    if settings.ehr_auth == "none":
        auth = DevelopmentNoAuth()
    else:
        assert settings.ehr_client_id and settings.ehr_private_key_file and settings.ehr_key_id  # settings check
        auth = SmartBackendServicesAuth(
            client_id=settings.ehr_client_id,
            private_key_pem=settings.ehr_private_key_file.read_text(encoding="utf-8"),
            key_id=settings.ehr_key_id,
            fhir_base_url=settings.ehr_fhir_base_url,
            token_url=settings.ehr_token_url,
            algorithm=settings.ehr_algorithm,
        )
    reader, fhir = ehr_context_reader(
        base_url=settings.ehr_fhir_base_url,
        auth=auth,
        connect_timeout_s=settings.ehr_connect_timeout_s,
        read_timeout_s=settings.ehr_read_timeout_s,
        budget_s=settings.ehr_budget_s,
        cache_ttl_s=settings.ehr_cache_ttl_s,
    )
    return EhrContextSource(
        reader=reader,
        fhir=fhir,
        loop=LoopThread("fusion-ehr"),
        identifier_system=settings.ehr_patient_identifier_system,
        # the reader's own budget plus the identifier lookup
        timeout_s=settings.ehr_budget_s + settings.ehr_read_timeout_s + 1.0,
    )


def build_components(
    settings: FusionSettings,
    *,
    engine: Engine | None = None,
    publisher: BatchEventPublisher | None = None,
    context: Callable[[PatientRef], ClinicalContext] | None = None,
    instances: ImagingInstances | None = None,
    consume: bool = True,
) -> FusionComponents:
    """Wire fusion's adapters and use cases (knowledge checked here: a bad file stops the service); nothing
    starts before :meth:`FusionComponents.start`."""
    knowledge = load_knowledge(settings.knowledge_dir)
    engine = engine or make_engine(settings.resolved_database_url())
    holder: list[FusionComponents] = []
    ehr = ehr_context_source(settings) if context is None else None
    http: httpx.Client | None = None
    if instances is None and settings.imaging_dicomweb_url:
        http = httpx.Client(timeout=settings.retrieve_timeout_s)
        instances = ImagingInstances(http)
    service = FusionService(
        engine=engine,
        knowledge=knowledge,
        context=context or ehr or no_ehr_context,
        consumer_group=settings.consumer_group,
        after_commit=lambda: holder[0].notify_relay(),
        instances=instances,
        mrn_system=settings.ehr_patient_identifier_system,
    )
    components = FusionComponents(
        settings=settings,
        engine=engine,
        service=service,
        queries=RecommendationQueries(engine),
        metrics=ServiceMetrics(),
        publisher=publisher,
        topics=CONSUMED_TOPICS + (SR_TOPICS if instances is not None else ()),
        http=http,
        ehr=ehr,
        consume=consume,
    )
    holder.append(components)
    return components


def create_app(settings: FusionSettings, *, components: FusionComponents | None = None) -> FastAPI:
    """Build the fusion app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)
    consume = components.consume
    engine = components.engine
    service = components.service

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
    app = FastAPI(title="radcds fusion", version="0.1.0", lifespan=lifespan)
    app.include_router(health_router(checks=checks, metrics=components.metrics))
    app.include_router(
        fhir_router(service=service, queries=components.queries, mrn_system=settings.ehr_patient_identifier_system)
    )
    instrument(app)
    return app
