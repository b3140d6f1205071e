"""Load shedding for CDS Hooks calls: a bounded number in process, the rest answered at once.

A CDS client waits for the service inside the clinician's ordering workflow and gives up after its own timeout
(CDS Hooks 2.0, "Performance": services should answer in well under a second); past capacity, queueing calls for
seconds helps nobody. At most ``max_in_flight`` hook calls (``POST /cds-services/{id}``, and their ``/feedback``)
are processed at once in one worker process; one more is answered immediately with ``503 Service Unavailable``,
``Retry-After: 1`` (RFC 9110 §10.2.3) and the body ``{"cards": []}``, so a client that reads the body anyway finds
no advice rather than an error document. Discovery (``GET /cds-services``) and the health endpoints are never shed.

Every hook call's response carries ``Server-Timing: app;dur=<ms>`` (W3C Server Timing): the milliseconds from the
call reaching this middleware to its response starting, shed or not. A client or a load test compares it with
the latency it measured to tell time spent in the service from time spent queueing before it.

The same arrival time is the start of the call's deadline: it is put in the ASGI scope (``scope["state"]``, under
:data:`ARRIVAL_KEY`, on the ``time.perf_counter`` clock) and the hook handler gives gathering (the FHIR fallback)
and the fusion read only what is left of ``latency_budget_s`` after the time the call waited in the event loop, for
its JWT check and its parsing. A call with (nearly) nothing left when the handler starts is answered at once with
``200`` and ``{"cards": []}`` (CDS Hooks 2.0: no advice), nothing gathered and nothing stored; those are counted
(``radcds_referral_deadline_expired`` at ``/metrics``). A call that got its data is still evaluated and stored whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SHED_BODY = json.dumps({"cards": []}).encode()
#: Key of the call's arrival time (``time.perf_counter`` seconds) in ``scope["state"]`` (``request.state``).
ARRIVAL_KEY = "radcds_arrived_at"


def arrival_time(scope: Scope) -> float | None:
    """When the call reached :class:`LoadShedding` (``None`` when it did not pass through it)."""
    value = (scope.get("state") or {}).get(ARRIVAL_KEY)
    return value if isinstance(value, float) else None


class LoadShedding:
    """Pure ASGI middleware (one event loop per worker process: the counter needs no lock)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        prefix: str = "/cds-services/",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.clock = clock
        self.max_in_flight = max_in_flight
        self.prefix = prefix
        self.in_flight = 0
        #: Calls answered 503 since start.
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = self.clock()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                dur = f"app;dur={(self.clock() - started) * 1e3:.1f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", dur)]}
            await send(message)

        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            await timed(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(SHED_BODY)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await timed({"type": "http.response.body", "body": SHED_BODY})
            return
        self.in_flight += 1
        # A copy: the server may share one lifespan state dict between calls.
        scope = {**scope, "state": {**(scope.get("state") or {}), ARRIVAL_KEY: started}}
        try:
            await self.app(scope, receive, timed)
        finally:
            self.in_flight -= 1
