"""Composition root of the referral service.

``create_app(settings, ...)`` builds one :class:`ReferralComponents` holding the service's adapters and long-running
parts (the outbox relay and the HTTP clients); one lifespan migrates referral's own database, then starts and stops
them. Adapters can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import SOURCE_REFERRAL
from radcds.domain.ports import BatchEventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_referral.adapters.followups import FusionFollowUps
from radcds_referral.adapters.repository import ReferralRepository
from radcds_referral.adapters.security import CdsClientAuthenticator, load_trusted_issuers
from radcds_referral.api.cds_hooks import cds_router
from radcds_referral.api.shedding import LoadShedding
from radcds_referral.handlers import ReferralService
from radcds_referral.knowledge import load_knowledge
from radcds_referral.queries import FeedbackQueries
from radcds_referral.settings import ReferralSettings

#: The database chain of referral (its own Alembic version table).
MIGRATION_CHAIN = "radcds_referral.db"


@dataclass
class ReferralComponents:
    """Everything the referral process runs, built once by :func:`build_components`."""

    settings: ReferralSettings
    engine: Engine
    service: ReferralService
    feedback_queries: FeedbackQueries
    metrics: ServiceMetrics
    #: Checks the CDS Clients' JWTs; ``None`` (no trusted issuers configured): every call is refused.
    authenticator: CdsClientAuthenticator | None
    #: The client of the EHR's FHIR fallback and of fusion's follow-ups (closed on stop).
    fhir_http: httpx.AsyncClient
    #: The client that fetches the trusted issuers' JWKS, when referral built the authenticator (closed on stop).
    jwks_http: httpx.Client | None = None
    #: Handed in (tests); otherwise the Kafka publisher below is built on start.
    publisher: BatchEventPublisher | None = None
    kafka: KafkaEventPublisher | None = None
    relay: OutboxRelay | None = None
    started: list[str] = field(default_factory=list)
    #: Hook calls answered ``{"cards": []}`` at once: their latency budget was spent before gathering began.
    deadline_expired: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.deadline_expired = Counter(
            "radcds_referral_deadline_expired",
            "Hook calls answered with no cards because their latency budget was spent before gathering began",
            registry=self.metrics.registry,
        )

    def start(self) -> None:
        """Migrate the database, then start the outbox relay (over the Kafka publisher unless one was handed in)."""
        migrate(self.engine, chain=MIGRATION_CHAIN, apply=self.settings.migrate_on_start)
        if self.publisher is None:
            self.kafka = publisher_for(self.settings, service="referral", source=SOURCE_REFERRAL)
        events = self.publisher or self.kafka
        assert events is not None
        self.relay = OutboxRelay(self.engine, events, name="referral-outbox")
        self.relay.start()
        self.started.append("relay")

    async def stop(self) -> None:
        """Stop what :meth:`start` started, close the HTTP clients and the Kafka publisher, release the engine."""
        if self.relay is not None:
            self.relay.stop()
        await self.fhir_http.aclose()
        if self.jwks_http is not None:
            self.jwks_http.close()
        if self.kafka is not None:
            self.kafka.close()
            self.kafka = None
        self.engine.dispose()
        self.started.clear()

    def notify_relay(self) -> None:
        """Wake the relay after a commit that wrote events."""
        if self.relay is not None:
            self.relay.notify()

    def kafka_ready(self) -> bool:
        """Readiness: a handed-in publisher, or the Kafka brokers answer."""
        return self.publisher is not None or kafka_reachable(self.settings.kafka_bootstrap_servers)

    def trust_ready(self) -> bool:
        """Readiness: trusted issuers are configured (without them every call is refused)."""
        return self.authenticator is not None


def build_components(
    settings: ReferralSettings,
    *,
    engine: Engine | None = None,
    publisher: BatchEventPublisher | None = None,
    authenticator: CdsClientAuthenticator | None = None,
) -> ReferralComponents:
    """Wire referral's adapters and use case. Rules and trusted issuers are loaded and checked here, at start-up (a
    bad file stops the service); nothing starts before :meth:`ReferralComponents.start`."""
    engine = engine or make_engine(settings.resolved_database_url())
    rules = load_knowledge(settings.knowledge_dir)
    jwks_http: httpx.Client | None = None
    if authenticator is None and settings.trusted_issuers_file is not None:
        jwks_http = httpx.Client(timeout=3.0)
        authenticator = CdsClientAuthenticator(load_trusted_issuers(settings.trusted_issuers_file), http=jwks_http)
    holder: list[ReferralComponents] = []
    repository = ReferralRepository(engine, after_commit=lambda: holder[0].notify_relay())
    fhir_http = httpx.AsyncClient(timeout=settings.fhir_timeout_s)
    followups = (
        FusionFollowUps(fhir_http, base_url=settings.fusion_fhir_url, timeout_s=settings.fusion_timeout_s)
        if settings.fusion_fhir_url
        else None
    )
    service = ReferralService(
        rules=rules, repository=repository, fhir_http=fhir_http, settings=settings, followups=followups
    )
    components = ReferralComponents(
        settings=settings,
        engine=engine,
        service=service,
        feedback_queries=FeedbackQueries(engine),
        metrics=ServiceMetrics(),
        authenticator=authenticator,
        fhir_http=fhir_http,
        jwks_http=jwks_http,
        publisher=publisher,
    )
    holder.append(components)
    return components


def create_app(settings: ReferralSettings, *, components: ReferralComponents | None = None) -> FastAPI:
    """Build the referral app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)
    engine = components.engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            await components.stop()

    app = FastAPI(title="radcds referral (CDS Hooks 2.0)", version="0.1.0", lifespan=lifespan)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            # A browser client may only read the RFC 6750 challenge of a 401 when it is exposed (Fetch standard,
            # "CORS-safelisted response header": WWW-Authenticate is not one).
            expose_headers=["WWW-Authenticate"],
            max_age=600,
        )
    app.include_router(
        health_router(
            checks={
                "database": lambda: database_ready(engine),
                "kafka": components.kafka_ready,
                "trusted_issuers": components.trust_ready,
            },
            metrics=components.metrics,
        )
    )
    app.include_router(
        cds_router(
            referral=components.service,
            feedback_queries=components.feedback_queries,
            authenticator=components.authenticator,
            public_base_url=settings.public_base_url,
            on_deadline_expired=components.deadline_expired.inc,
        )
    )
    # Outermost but for tracing: a shed call costs no authentication, parsing or database work.
    app.add_middleware(LoadShedding, max_in_flight=settings.max_in_flight)
    instrument(app)
    return app
