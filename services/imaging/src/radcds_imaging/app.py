"""Composition root of the imaging service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.adapters.kafka.publisher import KafkaEventPublisher, kafka_reachable, publisher_for
from radcds.domain.events import INSTANCE_STORED, SOURCE_IMAGING
from radcds.domain.ports import EventPublisher
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_imaging.adapters.announcer import StudyAnnouncer
from radcds_imaging.adapters.db.assembly import StudyAssembler
from radcds_imaging.adapters.diskguard import DiskSpaceGuard
from radcds_imaging.adapters.storage import FilesystemInstanceStore, InstanceStore, S3InstanceStore
from radcds_imaging.api.dicomweb import dicomweb_router
from radcds_imaging.api.dimse import DEFAULT_TRANSFER_SYNTAXES, DimseServer, dimse_config_from_settings, store_port
from radcds_imaging.api.qido import qido_router
from radcds_imaging.api.wado import wado_router
from radcds_imaging.handlers import ImagingService
from radcds_imaging.settings import ImagingSettings


def create_app(
    settings: ImagingSettings,
    *,
    engine: Engine | None = None,
    store: InstanceStore | None = None,
    publisher: EventPublisher | None = None,
) -> FastAPI:
    """Build the imaging app; adapters default to the real ones built from ``settings``."""
    metrics = ServiceMetrics()
    engine = engine or make_engine(settings.resolved_database_url())
    store = store or instance_store_from_settings(settings)
    owned: list[KafkaEventPublisher] = []
    state: dict[str, DimseServer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal publisher
        migrate(engine)
        if publisher is None:
            kafka = publisher_for(settings, service="imaging", source=SOURCE_IMAGING)
            kafka.warm_up(INSTANCE_STORED.topic)
            owned.append(kafka)
            publisher = kafka
        if isinstance(store, S3InstanceStore) and settings.s3_create_bucket:
            store.ensure_bucket()
        # The disk guard watches the local volume; an object store reports its own limits (0xA700 on failure).
        guard = (
            DiskSpaceGuard(
                settings.storage_dir, min_free_bytes=settings.min_free_bytes, min_free_ratio=settings.min_free_ratio
            )
            if isinstance(store, FilesystemInstanceStore)
            else None
        )
        service = ImagingService(
            engine=engine,
            store=store,
            publisher=publisher,
            public_base_url=settings.public_base_url,
            guard=guard,
            transfer_syntaxes=frozenset(settings.dimse_transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES),
        )
        service.outbox.start()
        app.state.imaging = service
        app.state.engine = engine
        app.state.instance_store = store
        announcer = StudyAnnouncer(
            StudyAssembler(
                engine=engine,
                quiet_period=timedelta(seconds=settings.study_quiet_period_s),
                wado_base_url=f"{settings.public_base_url.rstrip('/')}/dicom-web",
            ),
            publisher,
            interval_s=min(1.0, settings.study_quiet_period_s / 2),
        )
        announcer.start()
        if settings.dimse_enabled:
            dimse = DimseServer(dimse_config_from_settings(settings), store=store_port(service))
            dimse.start()
            state["dimse"] = dimse
        yield
        announcer.stop()
        service.outbox.stop()
        if "dimse" in state:
            state["dimse"].stop()
        for p in owned:
            p.close()
        engine.dispose()

    def kafka_ready() -> bool:
        return kafka_reachable(settings.kafka_bootstrap_servers)

    def dimse_ready() -> bool:
        return not settings.dimse_enabled or ("dimse" in state and state["dimse"].running)

    def store_ready() -> bool:
        writable = getattr(store, "writable", None)
        return bool(writable()) if writable is not None else True

    app = FastAPI(title="radcds imaging", version="0.1.0", lifespan=lifespan)
    app.include_router(
        health_router(
            checks={
                "database": lambda: database_ready(engine),
                "kafka": kafka_ready,
                "dimse": dimse_ready,
                "storage": store_ready,
            },
            metrics=metrics,
        )
    )
    app.include_router(qido_router(public_base_url=settings.public_base_url))
    app.include_router(wado_router(public_base_url=settings.public_base_url))
    app.include_router(
        dicomweb_router(max_request_bytes=settings.max_request_bytes, public_base_url=settings.public_base_url)
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
