"""CDS Hooks 2.0 contract tests: the HTTP service with real JWTs, SQLite and a recording publisher port."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from radcds.domain.events import ORDER_EVALUATED
from radcds_devstack import scenarios
from radcds_devstack.devkeys import sign_client_jwt, write_dev_issuer
from radcds_devstack.testing import RecordingPublisher
from radcds_referral.app import build_components, create_app
from radcds_referral.settings import ReferralSettings

ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"
SIGN = "radcds-imaging-order-sign"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def env(tmp_path):
    key_path, issuers = write_dev_issuer(tmp_path / "issuer", ISS)
    kid = json.loads(issuers.read_text())[0]["jwks"]["keys"][0]["kid"]
    settings = ReferralSettings(
        trusted_issuers_file=issuers,
        data_dir=tmp_path / "data",
        public_base_url=BASE,
        cors_origins=["https://ehr.example.org"],
    )
    publisher = RecordingPublisher()
    app = create_app(settings, components=build_components(settings, publisher=publisher))
    with TestClient(app) as client:
        yield client, key_path.read_bytes(), kid, publisher


def _auth(env, path: str, **kw) -> dict[str, str]:
    _, key, kid, _ = env
    return {"Authorization": "Bearer " + sign_client_jwt(key, kid=kid, iss=ISS, aud=BASE + path, **kw)}


def _call(env, body: dict[str, Any] | bytes, service: str = SIGN):
    client = env[0]
    path = f"/cds-services/{service}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={**_auth(env, path), "Content-Type": "application/json"})


def _no_null_or_empty(value: Any, where: str = "$") -> None:
    """CDS Hooks 2.0: optional fields are omitted, never null or empty (``cards: []`` is the exception)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert v is not None, f"{where}.{k} is null"
            if k != "cards":
                assert v not in ("", [], {}), f"{where}.{k} is empty"
            _no_null_or_empty(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_null_or_empty(v, f"{where}[{i}]")


def _check_card(card: dict[str, Any]) -> None:
    assert UUID.match(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    if "suggestions" in card:
        assert card["selectionBehavior"] in ("at-most-one", "any")
        if card["selectionBehavior"] == "at-most-one":
            assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) <= 1
        for s in card["suggestions"]:
            assert s["label"] and UUID.match(s["uuid"]) and s["actions"]
            for a in s["actions"]:
                assert a["type"] in ("create", "update", "delete") and a["description"]
                assert ("resource" in a) or ("resourceId" in a)
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"]


def test_discovery_without_token_is_a_bare_401(env):
    response = env[0].get("/cds-services")
    assert response.status_code == 401 and response.content == b""


def test_discovery_lists_three_services_with_prefetch(env):
    response = env[0].get("/cds-services", headers=_auth(env, "/cds-services"))
    services = response.json()["services"]
    assert {s["hook"] for s in services} == {"order-select", "order-sign", "patient-view"}
    for s in services:
        assert (
            s["id"] and s["title"] and s["description"] and s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        )
    _no_null_or_empty(response.json())


def test_token_for_another_endpoint_is_refused(env):
    headers = _auth(env, "/cds-services/other")
    assert env[0].get("/cds-services", headers=headers).status_code == 401


def test_low_risk_head_injury_gets_one_not_appropriate_card_and_a_rating(env):
    response = _call(env, scenarios.low_risk_minor_head_injury())
    assert response.status_code == 200
    body = response.json()
    _no_null_or_empty(body)
    (card,) = body["cards"]
    _check_card(card)
    assert "Stiell" in card["detail"]
    assert any(a["type"] == "delete" for s in card["suggestions"] for a in s["actions"])
    (action,) = body["systemActions"]
    assert action["type"] == "update" and action["resource"]["id"] == "draft-ct-head"
    ext = {e["url"]: e for e in action["resource"]["extension"]}
    rating = ext["http://fhir.org/argonaut/Extension/pama-rating"]["valueCodeableConcept"]["coding"][0]
    assert rating == {"system": "http://fhir.org/argonaut/CodeSystem/pama-rating", "code": "not-appropriate"}
    assert ext["http://fhir.org/argonaut/Extension/pama-rating-consult-id"]["valueUri"].startswith("urn:uuid:")
    assert "http://fhir.org/argonaut/Extension/pama-rating-auc-applied" in ext


def test_appropriate_order_gets_no_card_only_a_silent_rating(env):
    body = _call(env, scenarios.older_adult_head_injury()).json()
    assert body["cards"] == []
    ext = body["systemActions"][0]["resource"]["extension"]
    assert ext[0]["valueCodeableConcept"]["coding"][0]["code"] == "appropriate"


def test_order_without_indication_gets_one_card_asking_for_it_and_no_rating(env):
    body = _call(env, scenarios.head_ct_without_indication()).json()
    (card,) = body["cards"]
    _check_card(card)
    assert "reason" in card["summary"].lower()
    assert "systemActions" not in body


def test_missing_prefetch_without_fhir_server_is_412_operation_outcome(env):
    call = scenarios.low_risk_minor_head_injury()
    del call["prefetch"]["observations"]
    response = _call(env, call)
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body",
    [
        b"{broken",
        json.dumps({"hook": "order-sign"}).encode(),
        json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {}}).encode(),
    ],
)
def test_bad_calls_are_400_operation_outcomes(env, body):
    response = _call(env, body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "invalid"


def test_unknown_service_is_404(env):
    assert _call(env, scenarios.low_risk_minor_head_injury(), service="nope").status_code == 404


def test_repeated_hook_instance_returns_the_same_cards_and_one_consultation(env):
    call = scenarios.low_risk_minor_head_injury(hook_instance="5c7e6f4a-0000-4000-8000-000000000001")
    first, second = _call(env, call).json(), _call(env, call).json()
    assert first == second


def test_every_evaluation_publishes_a_schema_valid_event_with_the_consultation_id(env):
    body = _call(env, scenarios.low_risk_minor_head_injury()).json()
    consult = body["systemActions"][0]["resource"]["extension"][2]["valueUri"]
    deadline = time.monotonic() + 10  # the outbox relay publishes in the background
    while not env[3].events and time.monotonic() < deadline:
        time.sleep(0.05)
    kind, payload, event_id, subject = env[3].events[0]
    assert kind is ORDER_EVALUATED and event_id == consult and subject == "draft-ct-head"
    assert payload["rating"] == "not-appropriate" and payload["ruleId"] == "canadian-ct-head"
    assert payload["cardUuid"] == body["cards"][0]["uuid"]


def test_feedback_is_stored_once_and_rates_are_read_back_per_rule(env):
    card = _call(env, scenarios.low_risk_minor_head_injury()).json()["cards"][0]
    path = f"/cds-services/{SIGN}/feedback"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-28T10:00:00Z",
                "overrideReason": {"reason": {"code": "d6b0f6a7", "system": "http://example.org"}},
            }
        ]
    }
    for _ in range(2):
        r = env[0].post(path, json=feedback, headers=_auth(env, path))
        assert r.status_code == 200
    rates = env[0].get(path, headers=_auth(env, path)).json()["rules"]
    assert rates == [
        {"ruleId": "canadian-ct-head", "accepted": 0, "overridden": 1, "acceptRate": 0.0, "overrideRate": 1.0}
    ]


def test_feedback_with_bad_outcome_is_400(env):
    path = f"/cds-services/{SIGN}/feedback"
    bad = {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-11-28T10:00:00Z"}]}
    assert env[0].post(path, json=bad, headers=_auth(env, path)).status_code == 400


def test_cors_preflight_from_an_allowed_origin_is_answered(env):
    response = env[0].options(
        "/cds-services",
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.headers["access-control-allow-origin"] == "https://ehr.example.org"


def test_patient_view_for_screening_candidate_offers_low_dose_ct_card(env):
    body = _call(env, scenarios.lung_screening_candidate(), service="radcds-imaging-patient-view").json()
    _no_null_or_empty(body)
    (card,) = body["cards"]
    _check_card(card)
    assert card["indicator"] == "info"
    created = card["suggestions"][0]["actions"][0]
    assert created["type"] == "create" and created["resource"]["code"]["coding"][0]["code"] == "71271"
    assert created["resource"]["subject"] == {"reference": "Patient/example-smoker"}
    assert "systemActions" not in body


@pytest.mark.parametrize(("system", "code"), [("http://loinc.org", "24727-0"), ("http://snomed.info/sct", "303653007")])
def test_head_ct_ordered_with_loinc_or_snomed_code_is_rated_like_cpt(env, system, code):
    call = scenarios.low_risk_minor_head_injury()
    order = call["context"]["draftOrders"]["entry"][0]["resource"]
    order["code"] = {"coding": [{"system": system, "code": code}], "text": "CT head"}
    body = _call(env, call).json()
    rating = body["systemActions"][0]["resource"]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
    assert rating == "not-appropriate"


def _odd_calls():
    """Syntactically valid JSON with odd shapes an EHR (or an attacker) might send."""
    base = scenarios.low_risk_minor_head_injury
    calls = []
    c = base()
    c["context"]["draftOrders"]["entry"] = [1, "x", None, {"resource": "nope"}, {"resource": {"resourceType": "X"}}]
    calls.append(c)
    c = base()
    c["context"]["draftOrders"]["entry"][0]["resource"]["code"] = "70450"
    calls.append(c)
    c = base()
    c["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"] = [{"coding": "S06"}, 5, None]
    calls.append(c)
    c = base()
    c["prefetch"]["patient"] = "Patient/example-patient"
    calls.append(c)
    c = base()
    c["prefetch"]["observations"] = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "code": {"coding": [{"system": 1, "code": None}]},
                    "valueQuantity": "a lot",
                }
            }
        ],
    }
    calls.append(c)
    c = base()
    c["prefetch"]["patient"] = {"resourceType": "Patient", "id": "p", "birthDate": "not-a-date", "gender": 7}
    calls.append(c)
    c = base()
    c["context"]["patientId"] = 12
    calls.append(c)
    c = base()
    c["context"]["draftOrders"]["entry"][0]["resource"]["id"] = {"nested": True}
    calls.append(c)
    return calls


@pytest.mark.parametrize("call", _odd_calls())
def test_odd_but_valid_json_never_causes_a_server_error(env, call):
    response = _call(env, call)
    assert response.status_code in (200, 400, 412)
    body = response.json()
    assert ("cards" in body) or body.get("resourceType") == "OperationOutcome"


# --- RFC 6750 section 3: every 401 carries a Bearer challenge -------------------------------------------------

FEEDBACK = f"/cds-services/{SIGN}/feedback"
ENDPOINTS = [("GET", "/cds-services"), ("POST", f"/cds-services/{SIGN}"), ("POST", FEEDBACK), ("GET", FEEDBACK)]


def _request(env, method: str, path: str, headers: dict[str, str]):
    client = env[0]
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, content=json.dumps(scenarios.low_risk_minor_head_injury()).encode(), headers=headers)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_call_without_credentials_gets_a_bare_bearer_challenge_without_error_code(env, method, path):
    """RFC 6750 3.1: a request without authentication information gets no ``error`` attribute."""
    response = _request(env, method, path, {})
    assert response.status_code == 401 and response.content == b""
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_call_with_another_auth_scheme_gets_a_bearer_challenge_without_error_code(env, method, path):
    """RFC 6750 3.1: an unsupported authentication method counts as no authentication information."""
    response = _request(env, method, path, {"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401 and response.content == b""
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_call_with_a_refused_token_gets_invalid_token_and_no_detail(env, method, path):
    """RFC 6750 3.1 ``invalid_token``; no ``error_description`` and never the token (CDS Hooks security)."""
    token = _auth(env, "/cds-services/other")["Authorization"]  # signed, but for another endpoint
    response = _request(env, method, path, {"Authorization": token})
    assert response.status_code == 401 and response.content == b""
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer error="invalid_token"'
    assert token.split(" ", 1)[1] not in challenge


def test_replayed_token_gets_invalid_token(env):
    headers = _auth(env, "/cds-services")
    assert env[0].get("/cds-services", headers=headers).status_code == 200
    replay = env[0].get("/cds-services", headers=headers)
    assert replay.status_code == 401 and replay.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_401_to_an_allowed_browser_origin_exposes_the_challenge_header(env):
    """Fetch only lets page scripts read non-safelisted response headers named in Access-Control-Expose-Headers."""
    response = env[0].get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "https://ehr.example.org"
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert "www-authenticate" in exposed


def test_service_without_trust_configuration_challenges_every_call(tmp_path):
    settings = ReferralSettings(data_dir=tmp_path / "data", public_base_url=BASE)
    app = create_app(settings, components=build_components(settings, publisher=RecordingPublisher()))
    with TestClient(app) as client:
        bare = client.get("/cds-services")
        presented = client.get("/cds-services", headers={"Authorization": "Bearer abc.def.ghi"})
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert presented.status_code == 401 and presented.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# --- CDS Hooks 2.0 "Feedback": the rules of each Feedback object --------------------------------------------

TS = "2026-11-28T10:00:00Z"


def _post_feedback(env, items: list[Any]):
    return env[0].post(FEEDBACK, json={"feedback": items}, headers=_auth(env, FEEDBACK))


def _rates(env) -> list[dict[str, Any]]:
    return env[0].get(FEEDBACK, headers=_auth(env, FEEDBACK)).json()["rules"]


def _shown_card(env) -> dict[str, Any]:
    return _call(env, scenarios.low_risk_minor_head_injury()).json()["cards"][0]


def _assert_400_naming(response, field: str) -> None:
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid" and field in outcome["issue"][0]["diagnostics"]


def test_accepted_feedback_without_accepted_suggestions_is_400_and_nothing_is_stored(env):
    """acceptedSuggestions is CONDITIONAL: "Required for accepted outcomes"."""
    card = _shown_card(env)
    response = _post_feedback(env, [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": TS}])
    _assert_400_naming(response, "acceptedSuggestions")
    assert _rates(env) == []


@pytest.mark.parametrize(
    "accepted",
    [[], None, "e56e1945", [{}], [{"id": ""}], [{"id": 7}], [{"id": None}], ["e56e1945"]],
    ids=["empty", "null", "string", "no-id", "empty-id", "number-id", "null-id", "bare-string"],
)
def test_accepted_feedback_with_malformed_accepted_suggestions_is_400(env, accepted):
    """One or more AcceptedSuggestion objects, each with a REQUIRED string ``id`` (no null or empty: "Use of JSON")."""
    item = {"card": "c-1", "outcome": "accepted", "outcomeTimestamp": TS, "acceptedSuggestions": accepted}
    _assert_400_naming(_post_feedback(env, [item]), "acceptedSuggestions")


def test_accepted_feedback_with_a_suggestion_is_stored_and_counted(env):
    card = _shown_card(env)
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": TS,
    }
    assert _post_feedback(env, [item]).status_code == 200
    assert _rates(env) == [
        {"ruleId": "canadian-ct-head", "accepted": 1, "overridden": 0, "acceptRate": 1.0, "overrideRate": 0.0}
    ]


def test_overridden_feedback_without_override_reason_is_stored(env):
    """ "Overridden guidance": an ``overridden`` outcome without ``overrideReason`` is valid."""
    card = _shown_card(env)
    assert (
        _post_feedback(env, [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": TS}]).status_code
        == 200
    )
    assert _rates(env)[0]["overridden"] == 1


def test_overridden_feedback_with_only_a_user_comment_is_stored(env):
    """OverrideReason.reason is CONDITIONAL: only a ``userComment`` is valid."""
    card = _shown_card(env)
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": TS,
        "overrideReason": {"userComment": "Patient on warfarin; clinical judgement."},
    }
    assert _post_feedback(env, [item]).status_code == 200


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"outcome": "overridden", "acceptedSuggestions": [{"id": "s-1"}]}, "acceptedSuggestions"),
        (
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}], "overrideReason": {"userComment": "x"}},
            "overrideReason",
        ),
        ({"outcome": "overridden", "overrideReason": {}}, "overrideReason"),
        ({"outcome": "overridden", "overrideReason": None}, "overrideReason"),
        ({"outcome": "overridden", "overrideReason": "wrong"}, "overrideReason"),
        ({"outcome": "overridden", "overrideReason": {"reason": {"code": "d7ecf885"}}}, "overrideReason.reason"),
        ({"outcome": "overridden", "overrideReason": {"reason": {"system": "http://x.org"}}}, "overrideReason.reason"),
        ({"outcome": "overridden", "overrideReason": {"reason": "d7ecf885"}}, "overrideReason.reason"),
        ({"outcome": "overridden", "overrideReason": {"userComment": ""}}, "overrideReason.userComment"),
        ({"outcome": "overridden", "overrideReason": {"userComment": 5}}, "overrideReason.userComment"),
        ({"outcome": None}, "outcome"),
        ({"outcome": "ignored"}, "outcome"),
    ],
    ids=[
        "overridden-with-accepted-suggestions",
        "accepted-with-override-reason",
        "empty-override-reason",
        "null-override-reason",
        "string-override-reason",
        "reason-without-system",
        "reason-without-code",
        "reason-not-a-coding",
        "empty-user-comment",
        "number-user-comment",
        "null-outcome",
        "ignored-outcome",
    ],
)
def test_feedback_breaking_a_feedback_rule_is_400_naming_the_field(env, item, field):
    _assert_400_naming(_post_feedback(env, [{"card": "c-1", "outcomeTimestamp": TS, **item}]), field)


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-28", "2026-11-28T10:00:00", "28/11/2026 10:00", "2026-13-28T10:00:00Z", "2026-11-28T10:00:00+02:00", 5],
    ids=["date-only", "no-offset", "not-iso", "month-13", "not-utc", "number"],
)
def test_feedback_whose_outcome_timestamp_is_not_an_rfc3339_utc_date_time_is_400(env, timestamp):
    """outcomeTimestamp: "date and time in UTC ... as profiled in section 5.6 of RFC3339"."""
    item = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": timestamp}
    _assert_400_naming(_post_feedback(env, [item]), "outcomeTimestamp")


@pytest.mark.parametrize("timestamp", ["1985-04-12T23:20:50.52Z", "2020-12-11T00:00:00Z", "2026-11-28T10:00:00+00:00"])
def test_feedback_with_an_rfc3339_utc_timestamp_is_accepted(env, timestamp):
    item = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": timestamp}
    assert _post_feedback(env, [item]).status_code == 200


def test_one_bad_item_rejects_the_whole_feedback_batch_and_stores_nothing(env):
    card = _shown_card(env)
    good = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": TS}
    bad = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": TS}
    _assert_400_naming(_post_feedback(env, [good, bad]), "feedback[1].acceptedSuggestions")
    assert _rates(env) == []


def test_card_with_two_recommended_suggestions_in_the_rule_marks_only_one_under_at_most_one(env):
    """CDS Hooks 2.0 "Suggestion": "Multiple suggestions MAY be recommended, if card.selectionBehavior is any";
    our cards are ``at-most-one``, so only the first recommended suggestion keeps ``isRecommended``."""
    body = _call(env, scenarios.ctpa_without_d_dimer()).json()
    _no_null_or_empty(body)
    (card,) = body["cards"]
    _check_card(card)
    assert card["selectionBehavior"] == "at-most-one" and len(card["suggestions"]) == 2
    recommended = [s["label"] for s in card["suggestions"] if s.get("isRecommended")]
    assert recommended == ["Order a D-dimer first"]


# --- Argonaut "CDS Hooks for PAMA": an order whose rule lacks chart data gets no rating --------------------------
#
# "In the event that not enough information is available to reach one of these ratings (e.g., if key data have
# not been captured in a structured form), the CDS Service SHALL NOT produce a PAMA Response for the
# ServiceRequest, and SHOULD instead offer Cards ... that would lead to a computable rating" (argonautproject/
# cds-hooks-for-pama, docs/index.md, "CDS Service returns a PAMA Response"; see docs/referral.md, "Rating").

RULES_DIR = ReferralSettings.model_fields["knowledge_dir"].default / "rules"

#: For every clinical rule: an order it covers, an indication it covers, and a patient it applies to, with
#: none of the rule's findings documented (cspine: GCS 15 documented so that the rule applies).
UNDOCUMENTED: dict[str, tuple[str, str, str, int, list[dict[str, Any]]]] = {
    "canadian-ct-head": ("70450", "CT head without contrast", "S06.0X0A", 40, []),
    "pecarn-head": ("70450", "CT head without contrast", "S06.0X0A", 10, []),
    "canadian-cspine": ("72125", "CT cervical spine without contrast", "S13.4XXA", 40, [scenarios.gcs(15)]),
    "nexus-cspine": ("72125", "CT cervical spine without contrast", "S13.4XXA", 10, []),
    "ottawa-ankle": ("73610", "Radiographs ankle, 3 views", "S93.401A", 40, []),
    "ottawa-foot": ("73630", "Radiographs foot, 3 views", "S93.601A", 40, []),
    "ottawa-knee": ("73562", "Radiographs knee, 3 views", "S83.90XA", 40, []),
    "pe-wells-perc": ("71275", "CT angiography chest", "R06.02", 40, []),
    "low-back-pain": ("72148", "MRI lumbar spine without contrast", "M54.50", 40, []),
}


def _rule_file(rule_id: str) -> dict[str, Any]:
    return json.loads((RULES_DIR / f"{rule_id}.json").read_text())


def _events(env, count: int) -> list[tuple[Any, dict[str, Any], str, str]]:
    deadline = time.monotonic() + 10  # the outbox relay publishes in the background
    while len(env[3].events) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return env[3].events


def test_every_clinical_rule_of_the_catalogue_has_an_undocumented_case():
    clinical = {p.stem for p in RULES_DIR.glob("*.json") if json.loads(p.read_text())["kind"] == "clinical"}
    assert clinical == set(UNDOCUMENTED)


@pytest.mark.parametrize("rule_id", sorted(UNDOCUMENTED))
def test_order_whose_rule_lacks_chart_data_gets_a_card_asking_for_it_and_no_rating(env, rule_id):
    cpt, display, icd, age, observations = UNDOCUMENTED[rule_id]
    call = scenarios.order_sign(
        [scenarios.imaging_order(cpt, display, (icd, display))],
        observations=observations,
        patient_resource=scenarios.patient(age),
    )
    body = _call(env, call).json()
    _no_null_or_empty(body)
    assert "systemActions" not in body  # Argonaut PAMA: SHALL NOT include the undetermined ServiceRequest
    (card,) = body["cards"]
    _check_card(card)
    rule = _rule_file(rule_id)
    assert card["source"]["topic"]["code"] == rule_id and card["indicator"] == "info"
    assert card["summary"] == rule["needs_information"]["summary"]
    assert "**Not documented:**" in card["detail"]
    # the consultation still happens: one event, rating needs-information, with its own consultation id
    ((kind, payload, event_id, subject),) = _events(env, 1)
    assert kind is ORDER_EVALUATED and subject == "draft-ct-head"
    assert payload["rating"] == "needs-information" and payload["ruleId"] == rule_id
    assert payload["consultationId"] == event_id and event_id.startswith("urn:uuid:")
    assert payload["cardUuid"] == card["uuid"] and payload["criteriaUrl"]


def test_low_back_pain_for_ten_days_without_red_flags_documented_asks_for_each_red_flag_and_sends_no_rating(env):
    onset = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    condition = {
        "resourceType": "Condition",
        "id": "lbp",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": scenarios.ICD10CM, "code": "M54.50", "display": "Low back pain"}]},
        "subject": {"reference": "Patient/example-patient"},
        "onsetDateTime": onset,
    }
    call = scenarios.order_sign(
        [scenarios.imaging_order("72148", "MRI lumbar spine", ("M54.50", "Low back pain"), order_id="draft-mri")],
        observations=[],
        conditions=[condition],
        patient_resource=scenarios.patient(45),
    )
    body = _call(env, call).json()
    assert "systemActions" not in body
    (card,) = body["cards"]
    missing = card["detail"].split("**Not documented:**", 1)[1]
    labels = _rule_file("low-back-pain")["inputs"]
    for key, spec in labels.items():
        if key.startswith("red-flag-"):
            assert spec["label"] in missing, key
    assert labels["symptom-duration-days"]["label"] not in missing  # known from the Condition's onset


def test_rated_and_undetermined_orders_in_one_call_rate_only_the_determined_one(env):
    """Argonaut PAMA: a systemAction for each ServiceRequest with a rating, none for the undetermined one."""
    head = scenarios.imaging_order("70450", "CT head without contrast", ("S06.0X0A", "Concussion"))
    spine = scenarios.imaging_order("72148", "MRI lumbar spine", ("M54.50", "Low back pain"), order_id="draft-mri")
    call = scenarios.order_sign(
        [head, spine],
        observations=[scenarios.gcs(15), *(scenarios.finding(f, False) for f in scenarios.CCHR_FLAGS)],
        patient_resource=scenarios.patient(40),
    )
    body = _call(env, call).json()
    _no_null_or_empty(body)
    (action,) = body["systemActions"]
    assert action["resource"]["id"] == "draft-ct-head"
    assert {c["source"]["topic"]["code"] for c in body["cards"]} == {"canadian-ct-head", "low-back-pain"}
    events = {p["orderId"]: p for _, p, _, _ in _events(env, 2)}
    assert events["draft-mri"]["rating"] == "needs-information"
    assert events["draft-ct-head"]["rating"] == "not-appropriate"
    assert events["draft-mri"]["consultationId"] != events["draft-ct-head"]["consultationId"]


def test_replace_suggestion_keeps_the_orders_own_extensions_and_drops_only_the_stale_pama_rating(env):
    """CDS Hooks 2.0 "Action": an ``update`` "holds the updated resource in its entirety"; only the code changes,
    and a PAMA rating of the old code no longer applies."""
    own = {"url": "https://ehr.example.org/fhir/StructureDefinition/order-comment", "valueString": "portable"}
    stale = {
        "url": "http://fhir.org/argonaut/Extension/pama-rating",
        "valueCodeableConcept": {
            "coding": [{"system": "http://fhir.org/argonaut/CodeSystem/pama-rating", "code": "x"}]
        },
    }
    order = scenarios.imaging_order("70460", "CT head with contrast", ("S06.0X0A", "Concussion"))
    order["extension"] = [own, stale]
    egfr = {
        "resourceType": "Observation",
        "id": "egfr",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
        "effectiveDateTime": datetime.now(UTC).date().isoformat(),
        "valueQuantity": {"value": 20, "unit": "mL/min/{1.73_m2}"},
    }
    call = scenarios.order_sign([order], observations=[scenarios.gcs(15), egfr], patient_resource=scenarios.patient(70))
    body = _call(env, call).json()
    (card,) = body["cards"]
    updates = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "update"]
    assert updates, card
    for action in updates:
        assert action["resource"]["extension"] == [own]
        assert action["resource"]["code"]["coding"][0]["code"] != "70460"
    (rating,) = body["systemActions"]
    assert rating["resource"]["extension"][0] == own  # the rating update changes nothing but the PAMA extensions


def test_safety_warning_on_an_order_whose_rule_lacks_chart_data_still_sends_no_rating(env):
    egfr = {
        "resourceType": "Observation",
        "id": "egfr",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
        "effectiveDateTime": datetime.now(UTC).date().isoformat(),
        "valueQuantity": {"value": 20, "unit": "mL/min/{1.73_m2}"},
    }
    order = scenarios.imaging_order("72132", "CT lumbar spine with contrast", ("M54.50", "Low back pain"))
    body = _call(env, scenarios.order_sign([order], observations=[egfr], patient_resource=scenarios.patient(45))).json()
    _no_null_or_empty(body)
    assert "systemActions" not in body
    (card,) = body["cards"]
    _check_card(card)
    assert card["indicator"] in ("warning", "critical")
    assert "**Not documented:**" in card["detail"]
    assert any(a["type"] == "update" for s in card["suggestions"] for a in s["actions"])
