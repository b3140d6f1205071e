"""Running a service: settings, logging, tracing, then uvicorn with graceful shutdown."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar, runtime_checkable

import uvicorn
from fastapi import FastAPI

from radcds.adapters.db.engine import make_engine, migrate
from radcds.runtime.logging import configure_logging
from radcds.runtime.settings import ServiceSettings, load_settings
from radcds.runtime.telemetry import configure_tracing

S = TypeVar("S", bound=ServiceSettings)


#: Request-body bytes uvicorn buffers before it pauses reading the socket (its default is 64 KiB).
#: A STOW-RS request is tens of megabytes: with 64 KiB the body arrives in hundreds of event-loop
#: round trips, which cost more than storing the instances (measured with bench/imaging_bench.py).
BODY_HIGH_WATER_BYTES = 4 * 1024 * 1024


def _raise_body_high_water(limit: int = BODY_HIGH_WATER_BYTES) -> None:
    """Let uvicorn's HTTP protocols buffer up to ``limit`` bytes of request body per connection.

    uvicorn reads its flow-control limit from a module constant and offers no setting for it.
    """
    from uvicorn.protocols.http import h11_impl, httptools_impl

    httptools_impl.HIGH_WATER_LIMIT = limit  # type: ignore[attr-defined]
    h11_impl.HIGH_WATER_LIMIT = limit  # type: ignore[attr-defined]


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; the app's lifespan closes its adapters."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()


def freeze_heap_after_startup(app: FastAPI) -> FastAPI:
    """Once the app's lifespan has started its adapters, move every object alive then out of the collector's sight.

    A service's start-up heap (imported modules, decision rules, FHIR models, SQLAlchemy metadata) lives as long
    as the process. CPython's full (generation 2) collection walks all of it, and under load one came every
    ~12 s and held the GIL for 120-140 ms: the p99 of CDS Hooks order-sign at 100 req/s was that pause
    (bench/referral_bench.py). ``gc.freeze()`` (Python 3.7+, the "permanent generation") leaves those objects
    out of every later collection; garbage made while serving is still collected.
    """
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with started(application) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app


def build_app(name: str, settings: S, create_app: Callable[[S], FastAPI]) -> FastAPI:
    """Set up logs and traces for ``name`` and build its app (once per process); its start-up heap is frozen
    (:func:`freeze_heap_after_startup`)."""
    _raise_body_high_water()  # here, so each uvicorn worker process does it too
    configure_logging(service=name, level=settings.log_level)
    configure_tracing(service=name, otlp_endpoint=settings.otlp_endpoint, trace_file=settings.trace_file)
    return freeze_heap_after_startup(create_app(settings))


@runtime_checkable
class _HasDatabase(Protocol):
    def resolved_database_url(self) -> str: ...


def run_migrations(name: str, settings: _HasDatabase, chain: str) -> int:
    """``radcds-<name> migrate``: bring the service's database to its newest revision, then exit.

    The Helm chart runs it as a pre-install/pre-upgrade hook Job (one per service database) and sets
    ``MIGRATE_ON_START=false`` on the pods; applying an up-to-date chain again changes nothing.
    """
    engine = make_engine(settings.resolved_database_url())
    try:
        migrate(engine, chain=chain)
    finally:
        engine.dispose()
    logging.getLogger("radcds.migrate").info("database of %s at the newest revision of %s", name, chain)
    return 0


def run_service(
    name: str,
    settings_cls: type[S],
    create_app: Callable[[S], FastAPI],
    *,
    migration_chain: str | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Validate settings (exit 2 with a clear message if bad), then serve.

    With ``HTTP_WORKERS`` > 1, uvicorn starts that many processes, each building its own app (and
    adapters) through ``radcds_<name>.__main__:app_factory``. A service with a database
    (``migration_chain``) also takes the one command ``migrate`` (:func:`run_migrations`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    commands = ["migrate"] if migration_chain is not None else []
    if args and (len(args) > 1 or args[0] not in commands):
        print(f"usage: radcds-{name}" + (" [migrate]" if commands else ""), file=sys.stderr)
        raise SystemExit(2)
    settings = load_settings(settings_cls)
    if args and migration_chain is not None:
        configure_logging(service=name, level=settings.log_level)
        if not isinstance(settings, _HasDatabase):
            raise SystemExit(f"radcds-{name}: these settings name no database")
        raise SystemExit(run_migrations(name, settings, migration_chain))
    if settings.http_workers > 1:
        if migration_chain is not None and isinstance(settings, _HasDatabase) and settings.migrate_on_start:
            # once, here, before the workers start: each would otherwise migrate at start-up, and on a fresh
            # database they race on the same DDL ("table already exists"), and uvicorn stops them all
            configure_logging(service=name, level=settings.log_level)
            run_migrations(name, settings, migration_chain)
        uvicorn.run(
            f"radcds_{name}.__main__:app_factory",
            factory=True,
            workers=settings.http_workers,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        return
    serve(build_app(name, settings, create_app), host=settings.http_host, port=settings.http_port)
