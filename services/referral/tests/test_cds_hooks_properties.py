"""Hostile CDS Hooks 2.0 request bodies (issue #15): property-based tests of the order-select, order-sign and
patient-view services, over HTTP with a real CDS Client JWT, SQLite and a recording publisher port.

* Any body (bytes, any JSON value) is answered 200 with a CDS Hooks response, 400 with an error, or 412 when the
  data it needs was neither prefetched nor fetchable (CDS Hooks 2.0 "HTTP Response"), never a 5xx.
* The real scenarios of ``radcds_devstack.scenarios`` mutated at any place (a value replaced by any JSON, a key
  removed, a huge or non-ASCII string, a deep nesting, draft orders duplicated) get the same answer; a 200 carries
  only well-formed cards (summary under 140 characters, indicator info|warning|critical, source.label).
* Partial state: a 400 or 412 adds no row to the referral database; a 200 records a consultation per order at most
  once, however often the same hookInstance comes again.

Profiles (root ``conftest.py``): ``ci`` in ``make test``, ``HYPOTHESIS_PROFILE=fuzz`` in ``make fuzz``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, create_engine, func, select

from radcds_devstack import scenarios
from radcds_devstack.devkeys import sign_client_jwt, write_dev_issuer
from radcds_devstack.testing import RecordingPublisher
from radcds_referral.app import build_components, create_app
from radcds_referral.settings import ReferralSettings

pytestmark = pytest.mark.properties

ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"
SERVICES = ("radcds-imaging-order-sign", "radcds-imaging-order-select", "radcds-imaging-patient-view")
SCENARIOS = (
    scenarios.low_risk_minor_head_injury,
    scenarios.older_adult_head_injury,
    scenarios.head_ct_without_indication,
    scenarios.ctpa_without_d_dimer,
    scenarios.lung_screening_candidate,
)
FUNCTION_SCOPED = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("referral-props")
    key_path, issuers = write_dev_issuer(tmp / "issuer", ISS)
    kid = json.loads(issuers.read_text())[0]["jwks"]["keys"][0]["kid"]
    cfg = ReferralSettings(trusted_issuers_file=issuers, data_dir=tmp / "data", public_base_url=BASE)
    app = create_app(cfg, components=build_components(cfg, publisher=RecordingPublisher()))
    with TestClient(app, raise_server_exceptions=False) as client:
        discovery = client.get("/cds-services", headers=_auth(key_path.read_bytes(), kid, "/cds-services")).json()
        services = {s["id"] for s in discovery["services"]}
        assert set(SERVICES) <= services, services
        yield client, key_path.read_bytes(), kid, create_engine(cfg.resolved_database_url())


def _auth(key: bytes, kid: str, path: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + sign_client_jwt(key, kid=kid, iss=ISS, aud=BASE + path)}


def _post(env, service: str, content: bytes):
    client, key, kid, _ = env
    path = f"/cds-services/{service}"
    headers = {**_auth(key, kid, path), "Content-Type": "application/json"}
    return client.post(path, content=content, headers=headers)


def _rows(env) -> dict[str, int]:
    engine = env[3]
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {n: conn.execute(select(func.count()).select_from(t)).scalar_one() for n, t in meta.tables.items()}


def _assert_cds_answer(r) -> None:
    # 412: "the CDS Service was unable to retrieve the necessary FHIR data" (CDS Hooks 2.0, prefetch missing and
    # no fhirServer to query), as an OperationOutcome.
    assert r.status_code in (200, 400, 412), (r.status_code, r.text[:300])
    if r.status_code == 412:
        assert r.json()["resourceType"] == "OperationOutcome"
    if r.status_code != 200:
        return
    body = r.json()
    assert isinstance(body.get("cards"), list)
    for card in body["cards"]:
        assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
    for action in body.get("systemActions", []):
        assert action["type"] in ("create", "update", "delete")


# ------------------------------------------------------------------ strategies

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_ODD_STRINGS = st.sampled_from(
    ["", " ", "x" * 70_000, "\u0000", "\ud7ff\ue000", "🙂" * 50, "Patient/../../etc/passwd", "urn:uuid:", "null",
     "http://www.ama-assn.org/go/cpt|70450", "' OR 1=1 --", "{{context.patientId}}", "1e309"]
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(body: dict[str, Any], path: tuple[Any, ...], op: str, new: Any) -> Any:
    if not path:
        return new if op == "replace" else body
    parent: Any = body
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif op == "nest":
        parent[last] = [[[[[[[[parent[last]]]]]]]]]
    else:
        parent[last] = new
    return body


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any] | Any]:
    body = draw(st.sampled_from(SCENARIOS))(hook_instance=draw(st.uuids()).hex)
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(body, dict):
            break
        paths = _paths(body)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "nest"]))
        body = _mutate(body, path, op, draw(st.one_of(_JSON, _ODD_STRINGS)))
    return draw(st.sampled_from(SERVICES)), body


# ------------------------------------------------------------------ properties


@FUNCTION_SCOPED
@given(service=st.sampled_from(SERVICES), content=st.binary(max_size=200))
@example(service=SERVICES[0], content=b"")
@example(service=SERVICES[0], content=b"\xff\xfe{")
@example(service=SERVICES[0], content=b"[" * 5000 + b"]" * 5000)
@example(service=SERVICES[0], content=b'{"hook": "order-sign", "hookInstance": 1e999}')
def test_any_bytes_as_the_body_are_answered_200_or_400_and_a_400_adds_no_row(env, service, content):
    before = _rows(env)
    r = _post(env, service, content)
    _assert_cds_answer(r)
    if r.status_code != 200:
        assert _rows(env) == before


@FUNCTION_SCOPED
@given(service=st.sampled_from(SERVICES), value=_JSON)
def test_any_json_value_as_the_body_is_answered_200_or_400_and_a_400_adds_no_row(env, service, value):
    before = _rows(env)
    r = _post(env, service, json.dumps(value).encode())
    _assert_cds_answer(r)
    if r.status_code != 200:
        assert _rows(env) == before


@FUNCTION_SCOPED
@given(request=mutated_requests())
def test_a_real_request_mutated_anywhere_is_answered_200_with_well_formed_cards_or_400(env, request):
    service, body = request
    before = _rows(env)
    r = _post(env, service, json.dumps(body, allow_nan=True).encode())
    _assert_cds_answer(r)
    if r.status_code != 200:
        assert _rows(env) == before


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20)
@given(request=mutated_requests())
def test_the_same_hook_instance_sent_three_times_records_its_consultations_once(env, request):
    service, body = request
    first = _post(env, service, json.dumps(body, allow_nan=True).encode())
    _assert_cds_answer(first)
    after_first = _rows(env)
    for _ in range(2):
        again = _post(env, service, json.dumps(body, allow_nan=True).encode())
        assert again.status_code == first.status_code
    assert _rows(env).get("cds_consultations") == after_first.get("cds_consultations")


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_nested_too_deeply_to_decode_is_a_400_not_a_500(env, service):
    before = _rows(env)
    r = _post(env, service, b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400
    assert _rows(env) == before


def test_feedback_nested_too_deeply_to_decode_is_a_400_not_a_500(env):
    r = _post(env, f"{SERVICES[0]}/feedback", b'{"feedback": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert r.status_code == 400
