"""Load shedding of CDS Hooks calls (radcds_referral.api.shedding): past ``max_in_flight`` calls in process,
the next is answered 503 with Retry-After at once; discovery and health are never shed."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from radcds_referral.api.shedding import LoadShedding


def _held_app(release: asyncio.Event, entered: list[str]) -> Starlette:
    async def hook(request: Request) -> JSONResponse:
        entered.append(request.url.path)
        await release.wait()
        return JSONResponse({"cards": [{"summary": "advice"}]})

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse({"services": []})

    return Starlette(
        routes=[
            Route("/cds-services/{service_id}", hook, methods=["POST"]),
            Route("/cds-services", discovery, methods=["GET"]),
        ]
    )


async def _wait_until(predicate, attempts: int = 1000) -> None:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


@pytest.mark.anyio
async def test_a_call_past_max_in_flight_is_answered_503_with_retry_after_and_no_cards() -> None:
    release = asyncio.Event()
    entered: list[str] = []
    shedding = LoadShedding(_held_app(release, entered), max_in_flight=2)
    transport = httpx.ASGITransport(app=shedding)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        held = [asyncio.create_task(client.post("/cds-services/order-sign", json={})) for _ in range(2)]
        await _wait_until(lambda: len(entered) == 2)
        refused = await client.post("/cds-services/order-sign", json={})
        discovery = await client.get("/cds-services")
        release.set()
        answered = await asyncio.gather(*held)
        after = await client.post("/cds-services/order-sign", json={})

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert json.loads(refused.content) == {"cards": []}
    assert discovery.status_code == 200  # discovery is never shed
    assert [r.status_code for r in answered] == [200, 200]
    assert after.status_code == 200  # capacity is back once the held calls finished
    assert shedding.shed == 1
    assert shedding.in_flight == 0
    # W3C Server Timing on every hook call, shed or answered; not on discovery
    for r in (refused, *answered, after):
        name, dur = r.headers["server-timing"].split(";dur=")
        assert name == "app" and float(dur) >= 0
    assert "server-timing" not in discovery.headers


@pytest.mark.anyio
async def test_a_call_that_fails_inside_still_frees_its_place() -> None:
    async def broken(request: Request) -> JSONResponse:
        raise RuntimeError("handler bug")

    app = Starlette(routes=[Route("/cds-services/{service_id}", broken, methods=["POST"])])
    shedding = LoadShedding(app, max_in_flight=1)
    transport = httpx.ASGITransport(app=shedding, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        for _ in range(3):
            assert (await client.post("/cds-services/order-sign", json={})).status_code == 500
    assert shedding.in_flight == 0 and shedding.shed == 0


def test_the_referral_app_sheds_hook_calls_past_its_max_in_flight_setting(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from radcds_devstack.testing import RecordingPublisher
    from radcds_referral.app import build_components, create_app
    from radcds_referral.settings import ReferralSettings

    monkeypatch.setenv("RADCDS_REFERRAL_MAX_IN_FLIGHT", "7")
    settings = ReferralSettings(data_dir=tmp_path / "data")
    app = create_app(settings, components=build_components(settings, publisher=RecordingPublisher()))
    wired = [m for m in app.user_middleware if m.cls is LoadShedding]
    assert len(wired) == 1 and wired[0].kwargs == {"max_in_flight": 7}
