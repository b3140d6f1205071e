"""The start-up heap of a served app is frozen once its lifespan has started (radcds.runtime.serve)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from radcds.runtime.serve import freeze_heap_after_startup


def test_app_whose_lifespan_has_started_has_its_heap_frozen_after_its_startup_ran():
    seen: dict[str, int] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen["frozen at startup"] = gc.get_freeze_count()
        app.state.rules = [object() for _ in range(1000)]  # what a service builds as it starts
        yield
        seen["stopped"] = 1

    gc.unfreeze()
    app = freeze_heap_after_startup(FastAPI(lifespan=lifespan))
    try:
        with TestClient(app):
            frozen = gc.get_freeze_count()
            assert gc.is_tracked(app.state.rules)
            assert not any(obj is app.state.rules for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
    assert seen["frozen at startup"] == 0
    assert frozen > 1000
    assert seen["stopped"] == 1


def test_app_with_frozen_heap_still_collects_garbage_made_while_serving():
    app = freeze_heap_after_startup(FastAPI())

    class Cycle:
        pass

    try:
        with TestClient(app):
            a, b = Cycle(), Cycle()
            a.other, b.other = b, a  # type: ignore[attr-defined]
            del a, b
            assert gc.collect() >= 2
    finally:
        gc.unfreeze()
