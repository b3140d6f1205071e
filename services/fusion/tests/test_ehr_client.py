"""The EHR context reader (adapters/ehr.py): cache TTL, degradation within the budget (on a fake of our own
FhirReader port), and the HTTP reader's paging, errors and timeouts against a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from radcds_fusion.adapters.ehr import EhrContextReader, EhrReadError, HttpFhirReader, TtlCache, ehr_context_reader
from radcds_fusion.adapters.ehr_auth import DevelopmentNoAuth
from radcds_fusion.domain.context import SmokingStatus

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
TODAY = date(2026, 12, 1)

# ------------------------------------------------------------------------------------------- TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_entry_is_served_until_its_ttl_and_then_expires() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_s=60, max_entries=10, clock=clock)
    cache.put("p", 1)
    clock.now += 59.9
    assert cache.get("p") == 1
    clock.now += 0.1
    assert cache.get("p") is None


def test_full_cache_drops_the_least_recently_used_entry() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60, max_entries=2, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now more recent than b
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


# ------------------------------------------------------------------------------ EhrContextReader on a fake port


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


CHART: dict[str, list[dict[str, Any]]] = {
    "Condition": [{"resourceType": "Condition", "code": _cc(SCT, "13645005")}],
    "Observation": [
        {
            "resourceType": "Observation",
            "status": "final",
            "code": _cc(LOINC, "72166-2"),
            "effectiveDateTime": "2026-11-01",
            "valueCodeableConcept": _cc(SCT, "449868002"),
        }
    ],
    "Device": [],
    "Procedure": [],
    "ImagingStudy": [],
    "DiagnosticReport": [],
}


class FakeFhirReader:
    """Our own FhirReader port, answering from a dict; a source may fail or hang."""

    def __init__(self, *, fail: Mapping[str, str] | None = None, hang: set[str] | None = None) -> None:
        self.fail = dict(fail or {})
        self.hang = hang or set()
        self.calls = 0
        self.cancelled = 0

    async def _maybe(self, name: str) -> None:
        self.calls += 1
        if name in self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if name in self.fail:
            raise EhrReadError(self.fail[name])

    async def read(self, resource_type: str, resource_id: str) -> Mapping[str, Any]:
        await self._maybe(resource_type)
        return {"resourceType": "Patient", "id": resource_id, "birthDate": "1962-03-14", "gender": "male"}

    async def search(self, resource_type: str, params: Mapping[str, str]) -> list[Mapping[str, Any]]:
        await self._maybe(resource_type)
        return list(CHART[resource_type])


def test_context_from_every_source_has_nothing_missing() -> None:
    reader = EhrContextReader(reader=FakeFhirReader(), today=lambda: TODAY)
    ctx = asyncio.run(reader.context("p1"))
    assert ctx.missing == ()
    assert (ctx.birth_date, ctx.sex, ctx.copd, ctx.known_cancer) == (date(1962, 3, 14), "male", True, False)
    assert ctx.smoking_status is SmokingStatus.CURRENT


def test_failing_source_is_named_in_missing_and_the_rest_is_returned(caplog: pytest.LogCaptureFixture) -> None:
    reader = EhrContextReader(reader=FakeFhirReader(fail={"Condition": "HTTP 503"}), today=lambda: TODAY)
    with caplog.at_level(logging.DEBUG, logger="radcds_fusion"):
        ctx = asyncio.run(reader.context("patient-secret-id"))
    assert "Condition" in caplog.text and "patient-secret-id" not in caplog.text  # no PHI in logs
    assert ctx.missing == ("Condition (HTTP 503)",)
    assert ctx.copd is None and ctx.known_cancer is None
    assert ctx.smoking_status is SmokingStatus.CURRENT and ctx.birth_date == date(1962, 3, 14)


def test_source_that_does_not_answer_within_the_budget_is_cancelled_and_named() -> None:
    reader = EhrContextReader(reader=FakeFhirReader(hang={"Patient"}), budget_s=0.2, today=lambda: TODAY)
    ctx = asyncio.run(reader.context("p1"))
    assert ctx.missing == ("Patient (over the 0.2 s budget)",)
    assert ctx.birth_date is None and ctx.copd is True


def test_caller_giving_up_cancels_every_pending_ehr_request() -> None:
    port = FakeFhirReader(hang={"Patient", "Condition"})
    reader = EhrContextReader(reader=port, budget_s=60, today=lambda: TODAY)

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.context("p1"), timeout=0.2)
        await asyncio.sleep(0.05)  # let cancelled requests unwind (asyncio.run would cancel leftovers itself)
        assert port.cancelled == 2

    asyncio.run(run())


def test_complete_context_is_cached_until_the_ttl_and_read_again_after() -> None:
    clock = Clock()
    port = FakeFhirReader()
    reader = EhrContextReader(reader=port, cache_ttl_s=300, clock=clock, today=lambda: TODAY)

    async def run() -> None:
        first = await reader.context("p1")
        calls = port.calls
        assert await reader.context("p1") is first
        assert port.calls == calls
        clock.now += 300
        await reader.context("p1")
        assert port.calls == 2 * calls

    asyncio.run(run())


def test_context_with_something_missing_is_not_cached() -> None:
    port = FakeFhirReader(fail={"Device": "timed out"})
    reader = EhrContextReader(reader=port, today=lambda: TODAY)

    async def run() -> None:
        await reader.context("p1")
        calls = port.calls
        await reader.context("p1")
        assert port.calls == 2 * calls

    asyncio.run(run())


def test_unknown_body_region_is_refused() -> None:
    reader = EhrContextReader(reader=FakeFhirReader())
    with pytest.raises(ValueError, match="unknown body region"):
        asyncio.run(reader.context("p1", body_region="elbow"))


# ------------------------------------------------------------------------------------------- HttpFhirReader, real HTTP

Route = Callable[[str, Mapping[str, str]], tuple[int, Any]]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out closed its socket: expected here


class Loopback:
    """A real HTTP server on 127.0.0.1 (ephemeral port) answering JSON from ``route(path, headers)``."""

    def __init__(self, route: Route, delay_s: float = 0.0) -> None:
        self.route = route
        self.delay_s = delay_s
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers)))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, body = outer.route(self.path, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback() -> Iterator[Callable[..., Loopback]]:
    servers: list[Loopback] = []

    def make(route: Route, delay_s: float = 0.0) -> Loopback:
        servers.append(Loopback(route, delay_s))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


class CountingAuth:
    """Our own EhrAuth port: a fixed bearer token, counting invalidations."""

    def __init__(self) -> None:
        self.invalidated = 0

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"Bearer token-{self.invalidated}"}

    def invalidate(self) -> None:
        self.invalidated += 1


def _bundle(base: str, ids: list[str], next_page: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Condition", "id": i}, "search": {"mode": "match"}} for i in ids],
        "link": [{"relation": "self", "url": base}],
    }
    if next_page:
        bundle["link"].append({"relation": "next", "url": next_page})
    return bundle


def _search(base: str, **kw: Any) -> list[Mapping[str, Any]]:
    async def run() -> list[Mapping[str, Any]]:
        reader = HttpFhirReader(base_url=base, auth=kw.pop("auth", CountingAuth()), **kw)
        try:
            return await reader.search("Condition", {"patient": "p1"})
        finally:
            await reader.aclose()

    return asyncio.run(run())


def test_search_follows_next_links_through_every_page(loopback: Callable[..., Loopback]) -> None:
    def route(path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        if path.startswith("/fhir/Condition?"):
            assert "_count=1" in path and "patient=p1" in path
            return 200, _bundle(server.base, ["c1"], f"{server.base}?_getpages=x&_getpagesoffset=1")
        if "_getpagesoffset=1" in path:
            return 200, _bundle(server.base, ["c2"], f"{server.base}?_getpages=x&_getpagesoffset=2")
        return 200, _bundle(server.base, ["c3"], None)

    server = loopback(route)
    found = _search(server.base, page_size=1)
    assert [r["id"] for r in found] == ["c1", "c2", "c3"]
    assert all(h.get("Authorization") == "Bearer token-0" for _, h in server.requests)


def test_next_link_to_another_origin_is_not_followed(loopback: Callable[..., Loopback]) -> None:
    server = loopback(lambda path, h: (200, _bundle("x", ["c1"], "http://other.example:8080/fhir?page=2")))
    with pytest.raises(EhrReadError, match="paging link outside the EHR"):
        _search(server.base)
    assert len(server.requests) == 1


def test_more_pages_than_the_limit_fail_the_source(loopback: Callable[..., Loopback]) -> None:
    server = loopback(lambda path, h: (200, _bundle("x", ["c"], f"{server.base}?_getpages=again")))
    with pytest.raises(EhrReadError, match="more than 3 pages"):
        _search(server.base, max_pages=3)


def test_http_error_status_names_the_status(loopback: Callable[..., Loopback]) -> None:
    server = loopback(lambda path, h: (503, {"resourceType": "OperationOutcome"}))
    with pytest.raises(EhrReadError, match=r"^HTTP 503$"):
        _search(server.base)


def test_401_drops_the_token_and_retries_once_with_a_new_one(loopback: Callable[..., Loopback]) -> None:
    def route(path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        if headers.get("Authorization") == "Bearer token-0":
            return 401, {"resourceType": "OperationOutcome"}
        return 200, _bundle("x", ["c1"], None)

    server = loopback(route)
    auth = CountingAuth()
    assert [r["id"] for r in _search(server.base, auth=auth)] == ["c1"]
    assert auth.invalidated == 1


def test_server_slower_than_the_read_timeout_times_out(loopback: Callable[..., Loopback]) -> None:
    server = loopback(lambda path, h: (200, _bundle("x", [], None)), delay_s=1.0)
    with pytest.raises(EhrReadError, match=r"^timed out$"):
        _search(server.base, read_timeout_s=0.1)


def test_port_where_nothing_listens_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EhrReadError, match=r"^EHR unreachable$"):
        _search(f"http://127.0.0.1:{port}/fhir")


def test_read_of_another_resource_type_is_an_invalid_response(loopback: Callable[..., Loopback]) -> None:
    server = loopback(lambda path, h: (200, {"resourceType": "OperationOutcome"}))

    async def run() -> None:
        reader = HttpFhirReader(base_url=server.base, auth=CountingAuth())
        try:
            with pytest.raises(EhrReadError, match="not a Patient"):
                await reader.read("Patient", "p1")
        finally:
            await reader.aclose()

    asyncio.run(run())


def test_reader_built_from_plain_values_reads_a_whole_context_over_http(loopback: Callable[..., Loopback]) -> None:
    def route(path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        if path.startswith("/fhir/Patient/p1"):
            return 200, {"resourceType": "Patient", "id": "p1", "birthDate": "1990-05-01", "gender": "female"}
        return 200, {"resourceType": "Bundle", "type": "searchset", "entry": []}

    server = loopback(route)

    async def run() -> Any:
        reader, http = ehr_context_reader(base_url=server.base, auth=DevelopmentNoAuth(), budget_s=10)
        try:
            return await reader.context("p1")
        finally:
            await http.aclose()

    ctx = asyncio.run(run())
    assert ctx.missing == ()
    assert (ctx.birth_date, ctx.sex, ctx.known_cancer, ctx.devices, ctx.prior_studies) == (
        date(1990, 5, 1),
        "female",
        False,
        (),
        (),
    )
    assert len(server.requests) == 9
