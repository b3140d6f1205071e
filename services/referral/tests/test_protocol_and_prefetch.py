"""CDS Hooks request parsing and the prefetch / FHIR fallback rules (CDS Hooks 2.0 "Prefetch")."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from radcds_referral.adapters.prefetch import BudgetExceeded, DataUnavailable, gather, render
from radcds_referral.adapters.protocol import BadRequest, draft_orders, parse_request
from radcds_referral.domain.catalog import ORDER_PREFETCH

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01", "gender": "female"}


def _body(**overrides) -> bytes:
    body = {
        "hook": "order-sign",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "id": "sr1",
                            "status": "draft",
                            "intent": "order",
                            "subject": {"reference": "Patient/p1"},
                            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "70450"}]},
                        }
                    }
                ],
            },
        },
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (_body(hook="patient-view"), "not the hook of this service"),
        (_body(hookInstance=None), "hookInstance is required"),
        (_body(context=None), "context is required"),
        (_body(context={"userId": "u", "patientId": "p"}), "draftOrders is required"),
        (_body(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}), "fhirServer is required"),
        (_body(fhirServer="ftp://x", fhirAuthorization={"access_token": "t", "token_type": "Bearer"}), "absolute http"),
        (_body(prefetch=[1]), "prefetch must be an object"),
    ],
)
def test_malformed_call_raises_bad_request_naming_the_problem(body, message):
    with pytest.raises(BadRequest, match=message):
        parse_request(body, expected_hook="order-sign")


def test_order_select_without_selections_is_a_bad_request():
    with pytest.raises(BadRequest, match="selections"):
        parse_request(_body(hook="order-select"), expected_hook="order-select")


def test_order_select_keeps_only_the_selected_orders():
    body = json.loads(_body(hook="order-select"))
    body["context"]["selections"] = ["ServiceRequest/sr2"]
    body["context"]["draftOrders"]["entry"].append(
        {"resource": {"resourceType": "ServiceRequest", "id": "sr2", "status": "draft", "intent": "order"}}
    )
    request = parse_request(json.dumps(body).encode(), expected_hook="order-select")
    assert [o["id"] for o in draft_orders(request)] == ["sr2"]


def test_fhir_authorization_token_is_not_in_the_repr():
    request = parse_request(
        _body(
            fhirServer="https://ehr.example/fhir",
            fhirAuthorization={"access_token": "secret-token", "token_type": "Bearer"},
        ),
        expected_hook="order-sign",
    )
    assert "secret-token" not in repr(request)


def test_render_fills_context_tokens():
    assert render("Condition?patient={{context.patientId}}", {"patientId": "p1"}) == "Condition?patient=p1"


class _FhirServer:
    """A small real HTTP server playing the EHR's FHIR endpoint (our own test double, not a mock)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization", "")))
                time.sleep(delay_s)
                if self.path.startswith("/fhir/Patient/"):
                    body = PATIENT
                else:
                    body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
                data = json.dumps(body).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the budget test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _gather(request, **kw):
    async def run():
        async with httpx.AsyncClient() as http:
            return await gather(
                request, ORDER_PREFETCH, http=http, timeout_s=kw.get("timeout_s", 1.0), budget_s=kw.get("budget_s", 2.0)
            )

    return asyncio.run(run())


def test_full_prefetch_needs_no_fhir_server_and_null_means_no_data():
    request = parse_request(
        _body(
            prefetch={
                "patient": PATIENT,
                "conditions": None,
                "observations": None,
                "allergies": {"resourceType": "Bundle", "entry": []},
            }
        ),
        expected_hook="order-sign",
    )
    gathered = _gather(request)
    assert gathered.resources["patient"] == [PATIENT]
    assert gathered.resources["conditions"] == []
    assert gathered.fetched == frozenset()


def test_absent_keys_without_fhir_server_raise_data_unavailable():
    request = parse_request(_body(prefetch={"patient": PATIENT}), expected_hook="order-sign")
    with pytest.raises(DataUnavailable, match="conditions"):
        _gather(request)


def test_absent_and_operation_outcome_keys_are_queried_with_the_bearer_token():
    server = _FhirServer()
    try:
        prefetch = {"patient": {"resourceType": "OperationOutcome", "issue": []}, "conditions": None}
        request = parse_request(
            _body(
                prefetch=prefetch,
                fhirServer=server.url,
                fhirAuthorization={"access_token": "tok", "token_type": "Bearer"},
            ),
            expected_hook="order-sign",
        )
        gathered = _gather(request)
    finally:
        server.close()
    assert gathered.resources["patient"] == [PATIENT]
    assert gathered.fetched == {"patient", "observations", "allergies"}
    assert {auth for _, auth in server.requests} == {"Bearer tok"}
    assert any(path.startswith("/fhir/Observation?patient=p1") for path, _ in server.requests)


def test_fhir_server_slower_than_the_budget_raises_budget_exceeded():
    server = _FhirServer(delay_s=0.5)
    try:
        request = parse_request(
            _body(fhirServer=server.url, fhirAuthorization={"access_token": "tok", "token_type": "Bearer"}),
            expected_hook="order-sign",
        )
        with pytest.raises(BudgetExceeded):
            _gather(request, timeout_s=0.1, budget_s=0.2)
    finally:
        server.close()
