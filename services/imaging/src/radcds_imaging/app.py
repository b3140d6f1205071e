"""Composition root of the imaging service.

``create_app(settings, ...)`` builds one :class:`ImagingComponents` holding the service's adapters (database engine,
instance store, event publisher, query objects) and long-running parts (outbox relay, study announcer, DIMSE
C-STORE listener); one lifespan migrates imaging's own database, then starts and stops that list in order.
Adapters can be handed in (tests, other deployments); the defaults are the real ones built from the settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import INSTANCE_STORED, SOURCE_IMAGING
from radcds.domain.ports import EventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_imaging.adapters.announcer import StudyAnnouncer
from radcds_imaging.adapters.db.assembly import StudyAssembler
from radcds_imaging.adapters.db.instances import InstanceQueries
from radcds_imaging.adapters.db.qido import QidoQueries
from radcds_imaging.adapters.diskguard import DiskSpaceGuard
from radcds_imaging.adapters.storage import FilesystemInstanceStore, InstanceStore, S3InstanceStore
from radcds_imaging.api.dicomweb import dicomweb_router
from radcds_imaging.api.dimse import DEFAULT_TRANSFER_SYNTAXES, DimseServer, dimse_config_from_settings, store_port
from radcds_imaging.api.qido import qido_router
from radcds_imaging.api.wado import wado_router
from radcds_imaging.handlers import ImagingService
from radcds_imaging.settings import ImagingSettings

#: The database chain of imaging (its own Alembic version table).
MIGRATION_CHAIN = "radcds_imaging.db"


@dataclass
class ImagingComponents:
    """Everything the imaging process runs, built once by :func:`build_components`."""

    settings: ImagingSettings
    engine: Engine
    store: InstanceStore
    publisher: EventPublisher
    #: Publishes what the store transactions wrote to the outbox.
    relay: OutboxRelay
    service: ImagingService
    instances: InstanceQueries
    qido: QidoQueries
    announcer: StudyAnnouncer
    metrics: ServiceMetrics
    #: The DIMSE C-STORE SCP (None when ``dimse_enabled`` is off).
    dimse: DimseServer | None = None
    #: The Kafka publisher, when imaging built it (warmed up on start, closed on stop).
    kafka: KafkaEventPublisher | None = None
    started: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Migrate the database, then start the outbox relay, the study announcer and the DIMSE listener."""
        migrate(self.engine, chain=MIGRATION_CHAIN, apply=self.settings.migrate_on_start)
        if self.kafka is not None:
            self.kafka.warm_up(INSTANCE_STORED.topic)
        if isinstance(self.store, S3InstanceStore) and self.settings.s3_create_bucket:
            self.store.ensure_bucket()
        self.relay.start()
        self.started.append("relay")
        self.announcer.start()
        self.started.append("announcer")
        if self.dimse is not None:
            self.dimse.start()
            self.started.append("dimse")

    def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order, then release the clients."""
        if "announcer" in self.started:
            self.announcer.stop()
        if "relay" in self.started:
            self.relay.stop()
        if "dimse" in self.started and self.dimse is not None:
            self.dimse.stop()
        if self.kafka is not None:
            self.kafka.close()
        self.engine.dispose()
        self.started.clear()

    def dimse_ready(self) -> bool:
        """Readiness of the DIMSE door: listening, or switched off."""
        return self.dimse is None or self.dimse.running

    def store_ready(self) -> bool:
        """Readiness of the instance store: writable (a store without a probe counts as ready)."""
        writable = getattr(self.store, "writable", None)
        return bool(writable()) if writable is not None else True


def build_components(
    settings: ImagingSettings,
    *,
    engine: Engine | None = None,
    store: InstanceStore | None = None,
    publisher: EventPublisher | None = None,
) -> ImagingComponents:
    """Wire imaging's adapters and use cases; nothing starts before :meth:`ImagingComponents.start`."""
    engine = engine or make_engine(settings.resolved_database_url())
    store = store or instance_store_from_settings(settings)
    kafka = None
    if publisher is None:
        kafka = publisher_for(settings, service="imaging", source=SOURCE_IMAGING)
        publisher = kafka
    # The disk guard watches the local volume; an object store reports its own limits (0xA700 on failure).
    guard = (
        DiskSpaceGuard(
            settings.storage_dir, min_free_bytes=settings.min_free_bytes, min_free_ratio=settings.min_free_ratio
        )
        if isinstance(store, FilesystemInstanceStore)
        else None
    )
    relay = OutboxRelay(engine, publisher, name="imaging-outbox")
    service = ImagingService(
        engine=engine,
        store=store,
        outbox=relay,
        public_base_url=settings.public_base_url,
        guard=guard,
        transfer_syntaxes=frozenset(settings.dimse_transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES),
    )
    announcer = StudyAnnouncer(
        StudyAssembler(
            engine=engine,
            quiet_period=timedelta(seconds=settings.study_quiet_period_s),
            wado_base_url=f"{settings.public_base_url.rstrip('/')}/dicom-web",
        ),
        publisher,
        interval_s=min(1.0, settings.study_quiet_period_s / 2),
    )
    dimse = (
        DimseServer(dimse_config_from_settings(settings), store=store_port(service)) if settings.dimse_enabled else None
    )
    return ImagingComponents(
        settings=settings,
        engine=engine,
        store=store,
        publisher=publisher,
        relay=relay,
        service=service,
        instances=InstanceQueries(engine),
        qido=QidoQueries(engine, public_base_url=settings.public_base_url),
        announcer=announcer,
        metrics=ServiceMetrics(),
        dimse=dimse,
        kafka=kafka,
    )


def create_app(
    settings: ImagingSettings,
    *,
    engine: Engine | None = None,
    store: InstanceStore | None = None,
    publisher: EventPublisher | None = None,
    components: ImagingComponents | None = None,
) -> FastAPI:
    """Build the imaging app over ``components`` (built from ``settings`` and the adapters handed in by default);
    the lifespan starts and stops them."""
    components = components or build_components(settings, engine=engine, store=store, publisher=publisher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            components.stop()

    checks = {
        "database": lambda: database_ready(components.engine),
        "kafka": lambda: kafka_reachable(settings.kafka_bootstrap_servers),
        "dimse": components.dimse_ready,
        "storage": components.store_ready,
    }
    app = FastAPI(title="radcds imaging", version="0.1.0", lifespan=lifespan)
    app.include_router(health_router(checks=checks, metrics=components.metrics))
    app.include_router(qido_router(queries=components.qido))
    app.include_router(
        wado_router(
            public_base_url=settings.public_base_url,
            service=components.service,
            instances=components.instances,
            store=components.store,
        )
    )
    app.include_router(
        dicomweb_router(
            service=components.service,
            max_request_bytes=settings.max_request_bytes,
            public_base_url=settings.public_base_url,
        )
    )
    instrument(app)
    return app


def instance_store_from_settings(settings: ImagingSettings) -> InstanceStore:
    """The storage adapter the settings name (built at start-up, never at import)."""
    if settings.storage_backend == "filesystem":
        return FilesystemInstanceStore(settings.storage_dir)
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            # S3-compatible stores do not all know the newer default checksum headers; Content-MD5 is sent instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=16,
        ),
    )
    return S3InstanceStore(client, bucket=settings.s3_bucket, prefix=settings.s3_prefix)
