"""The latency budget is a deadline counted from the call's arrival (radcds_referral.api.shedding, handlers).

CDS Hooks 2.0 "Performance": a late answer is no answer, so ``latency_budget_s`` runs from the moment the call
reached the shedding middleware, not from the start of gathering. Clocks are fakes: no assertion here depends on
how fast anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from radcds_devstack import scenarios
from radcds_devstack.devkeys import sign_client_jwt, write_dev_issuer
from radcds_devstack.testing import RecordingPublisher
from radcds_referral import handlers
from radcds_referral.adapters.prefetch import Gathered, render
from radcds_referral.adapters.protocol import CdsRequest, parse_request
from radcds_referral.adapters.repository import ReferralRepository
from radcds_referral.api.shedding import ARRIVAL_KEY, LoadShedding, arrival_time
from radcds_referral.app import build_components, create_app
from radcds_referral.db.tables import cds_consultations
from radcds_referral.domain import catalog
from radcds_referral.domain.consultations import Consultation, Feedback
from radcds_referral.handlers import DeadlineExpired, ReferralService
from radcds_referral.knowledge import load_knowledge
from radcds_referral.settings import ReferralSettings

SIGN = catalog.by_id("radcds-imaging-order-sign")
FHIR = "https://ehr.example.org/fhir"
ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Repository:
    """Records what would be stored."""

    def __init__(self) -> None:
        self.stored: list[list[Consultation]] = []

    def add_consultations(self, items: list[Consultation]) -> None:
        self.stored.append(list(items))

    def add_feedback(self, service_id: str, items: list[Feedback]) -> int:
        return 0


class FhirServer:
    """An EHR FHIR server answering the prefetch queries of a scenario, recording the queries it got."""

    def __init__(self, body: dict[str, Any], on_query: Callable[[], None] = lambda: None) -> None:
        assert SIGN is not None
        empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        self.answers = {
            str(httpx.URL(f"{FHIR}/{render(t, body['context'])}")): body["prefetch"].get(k) or empty
            for k, t in SIGN.prefetch.items()
        }
        self.queries: list[str] = []
        self.on_query = on_query

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(str(request.url))
        self.on_query()
        return httpx.Response(200, json=self.answers[str(request.url)])


def _fallback_call(body: dict[str, Any]) -> dict[str, Any]:
    """The scenario without its prefetch: every resource comes from the FHIR fallback."""
    return {
        **{k: v for k, v in body.items() if k != "prefetch"},
        "fhirServer": FHIR,
        "fhirAuthorization": {
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "x",
            "subject": "s",
        },
    }


def _request(body: dict[str, Any]) -> CdsRequest:
    return parse_request(json.dumps(body).encode(), expected_hook="order-sign")


def _service(fhir: FhirServer, clock: FakeClock, repository: Repository) -> ReferralService:
    settings = ReferralSettings(latency_budget_s=0.45)
    return ReferralService(
        rules=load_knowledge(settings.knowledge_dir),
        repository=repository,
        fhir_http=httpx.AsyncClient(transport=httpx.MockTransport(fhir)),
        settings=settings,
        clock=clock,
    )


@pytest.fixture
def scenario() -> dict[str, Any]:
    return scenarios.low_risk_minor_head_injury()


@pytest.mark.anyio
async def test_a_call_whose_budget_was_spent_before_the_handler_gathers_nothing_and_stores_nothing(
    scenario: dict[str, Any],
) -> None:
    fhir, clock, repository = FhirServer(scenario), FakeClock(10.0), Repository()
    service = _service(fhir, clock, repository)
    assert SIGN is not None
    with pytest.raises(DeadlineExpired):
        await service.call(SIGN, _request(_fallback_call(scenario)), arrived_at=10.0 - 0.45)
    assert fhir.queries == []
    assert repository.stored == []


@pytest.mark.anyio
async def test_a_call_with_less_than_the_floor_left_gathers_nothing(scenario: dict[str, Any]) -> None:
    fhir, repository = FhirServer(scenario), Repository()
    service = _service(fhir, FakeClock(10.0), repository)
    assert SIGN is not None
    with pytest.raises(DeadlineExpired):
        await service.call(
            SIGN, _request(_fallback_call(scenario)), arrived_at=10.0 - 0.45 + handlers.MIN_REMAINING_BUDGET_S / 2
        )
    assert fhir.queries == [] and repository.stored == []


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The budget each gathering was given (gathering itself answers with nothing found)."""
    given: list[float] = []

    async def fake_gather(request: CdsRequest, templates: dict[str, str], **kw: Any) -> Gathered:
        given.append(kw["budget_s"])
        return Gathered({k: [] for k in templates}, frozenset())

    monkeypatch.setattr(handlers, "gather", fake_gather)
    return given


@pytest.mark.anyio
async def test_gathering_is_given_the_budget_minus_the_time_since_arrival(
    scenario: dict[str, Any], budgets: list[float]
) -> None:
    service = _service(FhirServer(scenario), FakeClock(5.125), Repository())
    assert SIGN is not None
    await service.call(SIGN, _request(_fallback_call(scenario)), arrived_at=5.0)
    assert budgets == [pytest.approx(0.45 - 0.125)]


@pytest.mark.anyio
async def test_a_call_without_a_known_arrival_gets_the_whole_budget(
    scenario: dict[str, Any], budgets: list[float]
) -> None:
    service = _service(FhirServer(scenario), FakeClock(99.0), Repository())
    assert SIGN is not None
    await service.call(SIGN, _request(_fallback_call(scenario)))
    assert budgets == [0.45]


@pytest.mark.anyio
async def test_a_call_with_budget_left_is_answered_as_before_with_its_card_and_stored(
    scenario: dict[str, Any],
) -> None:
    fhir, repository = FhirServer(scenario), Repository()
    service = _service(fhir, FakeClock(1.0), repository)
    assert SIGN is not None
    response = await service.call(SIGN, _request(_fallback_call(scenario)), arrived_at=0.9)
    (card,) = response["cards"]
    assert "Stiell" in card["detail"]
    assert len(response["systemActions"]) == 1
    assert len(fhir.queries) == len(SIGN.prefetch)
    ((consultation,),) = repository.stored
    assert consultation.card_uuid == card["uuid"]


@pytest.mark.anyio
async def test_a_call_whose_budget_runs_out_after_its_data_arrived_is_still_evaluated_and_stored_whole(
    scenario: dict[str, Any],
) -> None:
    clock, repository = FakeClock(1.0), Repository()

    def late() -> None:  # each FHIR answer takes the clock past the deadline
        clock.now += 1.0

    service = _service(FhirServer(scenario, on_query=late), clock, repository)
    assert SIGN is not None
    response = await service.call(SIGN, _request(_fallback_call(scenario)), arrived_at=1.0)
    (card,) = response["cards"]
    ((consultation,),) = repository.stored
    assert consultation.card_uuid == card["uuid"]


class Followups:
    """Stands in for FusionFollowUps, recording the timeout each read was given."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    async def open_for(self, patient: dict[str, Any] | None, *, timeout_s: float | None = None) -> list[Any]:
        self.timeouts.append(timeout_s)
        return []


def _patient_view_service(clock: FakeClock, followups: Followups) -> ReferralService:
    settings = ReferralSettings(latency_budget_s=0.45, fusion_timeout_s=0.2)
    return ReferralService(
        rules=load_knowledge(settings.knowledge_dir),
        repository=Repository(),
        fhir_http=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))),
        settings=settings,
        followups=followups,  # type: ignore[arg-type]
        clock=clock,
    )


def _patient_view() -> tuple[catalog.CdsService, CdsRequest]:
    service = next(s for s in catalog.SERVICES if s.hook == "patient-view")
    body = scenarios.lung_screening_candidate()
    return service, parse_request(json.dumps(body).encode(), expected_hook="patient-view")


@pytest.mark.anyio
@pytest.mark.parametrize(("elapsed", "expected"), [(0.0, 0.2), (0.3, 0.15)])
async def test_the_fusion_read_gets_its_timeout_capped_by_the_budget_left(elapsed: float, expected: float) -> None:
    followups = Followups()
    service, request = _patient_view()
    await _patient_view_service(FakeClock(10.0 + elapsed), followups).call(service, request, arrived_at=10.0)
    assert followups.timeouts == [pytest.approx(expected)]


@pytest.mark.anyio
async def test_the_fusion_read_is_skipped_when_gathering_used_the_whole_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, followups = FakeClock(10.0), Followups()

    async def slow_gather(request: CdsRequest, templates: dict[str, str], **kw: Any) -> Gathered:
        clock.now += 1.0
        return Gathered({k: [] for k in templates}, frozenset())

    monkeypatch.setattr(handlers, "gather", slow_gather)
    service, request = _patient_view()
    response = await _patient_view_service(clock, followups).call(service, request, arrived_at=10.0)
    assert followups.timeouts == []
    assert "cards" in response


@pytest.mark.anyio
async def test_the_shedding_middleware_puts_the_arrival_time_in_the_scope_state() -> None:
    seen: list[float | None] = []

    async def hook(request: Request) -> JSONResponse:
        seen.append(arrival_time(request.scope))
        seen.append(getattr(request.state, ARRIVAL_KEY))
        return JSONResponse({"cards": []})

    app = Starlette(routes=[Route("/cds-services/{service_id}", hook, methods=["POST"])])
    shedding = LoadShedding(app, max_in_flight=1, clock=FakeClock(42.0))
    transport = httpx.ASGITransport(app=shedding)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        response = await client.post("/cds-services/order-sign", json={})
    assert seen == [42.0, 42.0]
    assert response.headers["server-timing"] == "app;dur=0.0"  # Server-Timing still from the same arrival


def test_a_call_arriving_past_its_budget_is_answered_200_with_no_cards_counted_and_nothing_fetched_or_published(
    tmp_path: Any, scenario: dict[str, Any]
) -> None:
    key_path, issuers = write_dev_issuer(tmp_path / "issuer", ISS)
    kid = json.loads(issuers.read_text())[0]["jwks"]["keys"][0]["kid"]
    settings = ReferralSettings(trusted_issuers_file=issuers, data_dir=tmp_path / "data", public_base_url=BASE)
    publisher = RecordingPublisher()
    components = build_components(settings, publisher=publisher)
    fhir = FhirServer(scenario)
    # The handler's clock runs an hour ahead of the middleware's: every call arrives with its budget spent.
    components.service = ReferralService(
        rules=load_knowledge(settings.knowledge_dir),
        repository=ReferralRepository(components.engine, after_commit=components.notify_relay),
        fhir_http=httpx.AsyncClient(transport=httpx.MockTransport(fhir)),
        settings=settings,
        clock=lambda: handlers.time.perf_counter() + 3600.0,
    )
    app = create_app(settings, components=components)
    path = f"/cds-services/{SIGN.id if SIGN else ''}"
    token = sign_client_jwt(key_path.read_bytes(), kid=kid, iss=ISS, aud=BASE + path)
    with TestClient(app) as client:
        response = client.post(
            path,
            content=json.dumps(_fallback_call(scenario)).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        metrics = client.get("/metrics").text
        with components.engine.connect() as db:
            stored = db.execute(select(func.count()).select_from(cds_consultations)).scalar_one()
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    assert "app;dur=" in response.headers["server-timing"]
    assert fhir.queries == []
    assert stored == 0 and publisher.events == []
    assert "radcds_referral_deadline_expired_total 1.0" in metrics


@pytest.mark.anyio
async def test_fusion_reads_are_capped_by_the_time_left_and_none_starts_with_nothing_left() -> None:
    from radcds_referral.adapters.followups import FusionFollowUps

    timeouts: list[float] = []

    def fusion(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})

    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "1"}]}
    async with httpx.AsyncClient(transport=httpx.MockTransport(fusion)) as http:
        followups = FusionFollowUps(http, base_url="http://fusion/fhir", timeout_s=0.2)
        assert await followups.open_for(patient, timeout_s=0.0) == []
        assert timeouts == []
        await followups.open_for(patient, timeout_s=0.05)
        await followups.open_for(patient)
    assert 0 < timeouts[0] <= 0.05
    assert timeouts[1] == 0.2
