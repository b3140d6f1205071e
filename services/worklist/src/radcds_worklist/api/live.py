"""The live stream: Server-Sent Events (HTML Living Standard §9.2) of every change an open page must show.

Each event's ``id`` is its ``seq`` in the worklist's live log (:mod:`radcds_worklist.adapters.db.live`), its
``event`` the kind of change and its ``data`` a small JSON object (study UID and what changed; no patient data).
A page asks for the changes after the ``seq`` it was rendered at (``?since=``); when the connection drops, the
browser reconnects on its own and sends the last id it received as ``Last-Event-ID``, which wins over ``since``:
nothing is missed, nothing is sent twice. A response lasts at most ``max_duration_s``, then the browser
reconnects (so proxies and replicas never hold a stream forever); a comment line every ``heartbeat_s`` keeps idle
connections open through proxies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from radcds_worklist.adapters.db.live import LiveEvent, live_since


def format_event(event: LiveEvent) -> str:
    """One SSE message (``id``, ``event``, ``data`` lines, then a blank line)."""
    data = json.dumps({"study_uid": event.study_uid, **event.data}, separators=(",", ":"), default=str)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


def live_router(
    engine: Engine,
    *,
    user: Callable[..., Any],
    poll_s: float = 0.2,
    heartbeat_s: float = 15.0,
    max_duration_s: float = 300.0,
) -> APIRouter:
    """``GET /live``: the change stream for signed-in users (``user`` is the sign-in dependency)."""
    router = APIRouter(tags=["live"])

    @router.get("/live", dependencies=[Depends(user)])
    async def stream(
        since: Annotated[int, Query(ge=0, description="the seq the page was rendered at")] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else since

        async def events() -> AsyncIterator[str]:
            seq = start
            # Tell the browser how soon to reconnect after the response ends or the connection drops.
            yield "retry: 1000\n\n"
            opened = last_beat = time.monotonic()
            while time.monotonic() - opened < max_duration_s:
                batch = await asyncio.to_thread(live_since, engine, seq)
                for event in batch:
                    seq = event.seq
                    yield format_event(event)
                now = time.monotonic()
                if now - last_beat >= heartbeat_s:
                    last_beat = now
                    yield ": keep-alive\n\n"
                if not batch:
                    await asyncio.sleep(poll_s)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
