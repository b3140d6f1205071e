"""Composition root of the worklist service.

``create_app(settings, ...)`` builds one :class:`WorklistComponents` holding the service's adapters and
long-running parts; one lifespan migrates the worklist's own database, then starts and stops them in order.
Adapters can be handed in (tests, other deployments); the defaults are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import Engine

from radcds.adapters.db.engine import database_ready, make_engine, migrate
from radcds.runtime.http import health_router, instrument
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.settings import WorklistSettings

#: The database chain of the worklist (its own Alembic version table).
MIGRATION_CHAIN = "radcds_worklist.db"


@dataclass
class WorklistComponents:
    """Everything the worklist process runs, built once by :func:`build_components`."""

    settings: WorklistSettings
    engine: Engine
    metrics: ServiceMetrics
    started: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Migrate the database."""
        migrate(self.engine, chain=MIGRATION_CHAIN)
        self.started.append("database")

    def stop(self) -> None:
        """Stop what :meth:`start` started, in reverse order."""
        self.started.clear()


def build_components(settings: WorklistSettings, *, engine: Engine | None = None) -> WorklistComponents:
    """Wire the worklist's adapters; nothing starts before :meth:`WorklistComponents.start`."""
    return WorklistComponents(
        settings=settings,
        engine=engine or make_engine(settings.resolved_database_url()),
        metrics=ServiceMetrics(),
    )


def create_app(settings: WorklistSettings, *, components: WorklistComponents | None = None) -> FastAPI:
    """Build the worklist app over ``components`` (the real ones by default); the lifespan starts and stops them."""
    components = components or build_components(settings)
    engine = components.engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components.start()
        try:
            yield
        finally:
            components.stop()

    app = FastAPI(title="radcds worklist", version="0.1.0", lifespan=lifespan)
    app.include_router(health_router(checks={"database": lambda: database_ready(engine)}, metrics=components.metrics))
    instrument(app)
    return app
