"""Composition root of the referral service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.publisher import kafka_reachable, publisher_for
from radcds.domain.events import SOURCE_REFERRAL
from radcds.domain.ports import BatchEventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_referral.adapters.followups import FusionFollowUps
from radcds_referral.adapters.repository import ReferralRepository
from radcds_referral.adapters.security import CdsClientAuthenticator, load_trusted_issuers
from radcds_referral.api.cds_hooks import cds_router
from radcds_referral.handlers import ReferralService
from radcds_referral.knowledge import load_knowledge
from radcds_referral.settings import ReferralSettings

#: The database chain of referral (its own Alembic version table).
MIGRATION_CHAIN = "radcds_referral.db"


def create_app(
    settings: ReferralSettings,
    *,
    engine: Engine | None = None,
    publisher: BatchEventPublisher | None = None,
    authenticator: CdsClientAuthenticator | None = None,
) -> FastAPI:
    """Build the referral app. Rules and trusted issuers are loaded and checked here, at start-up."""
    metrics = ServiceMetrics()
    engine = engine or make_engine(settings.resolved_database_url())
    rules = load_knowledge(settings.knowledge_dir)
    jwks_http = httpx.Client(timeout=3.0)
    if authenticator is None and settings.trusted_issuers_file is not None:
        authenticator = CdsClientAuthenticator(load_trusted_issuers(settings.trusted_issuers_file), http=jwks_http)
    repository = ReferralRepository(engine)
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine, chain=MIGRATION_CHAIN)
        owned = None
        events = publisher
        if events is None:
            owned = publisher_for(settings, service="referral", source=SOURCE_REFERRAL)
            events = owned
        relay = OutboxRelay(engine, events, name="referral-outbox")
        repository.after_commit = relay.notify
        fhir_http = httpx.AsyncClient(timeout=settings.fhir_timeout_s)
        followups = (
            FusionFollowUps(fhir_http, base_url=settings.fusion_fhir_url, timeout_s=settings.fusion_timeout_s)
            if settings.fusion_fhir_url
            else None
        )
        app.state.referral = ReferralService(
            rules=rules, repository=repository, fhir_http=fhir_http, settings=settings, followups=followups
        )
        state["relay"] = relay
        relay.start()
        yield
        relay.stop()
        await fhir_http.aclose()
        jwks_http.close()  # noqa: ASYNC212 - shutdown, nothing else runs
        if owned is not None:
            owned.close()
        engine.dispose()

    def kafka_ready() -> bool:
        return publisher is not None or kafka_reachable(settings.kafka_bootstrap_servers)

    def trust_ready() -> bool:
        return authenticator is not None

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
            checks={"database": lambda: database_ready(engine), "kafka": kafka_ready, "trusted_issuers": trust_ready},
            metrics=metrics,
        )
    )
    app.include_router(cds_router(authenticator=authenticator, public_base_url=settings.public_base_url))
    instrument(app)
    return app
