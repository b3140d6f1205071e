"""Schemathesis against referral's OpenAPI document (issue #15 "hostile input"; kit: radcds_devstack.openapi_testing).

Every operation of the CDS Hooks 2.0 service, called with generated valid and invalid data (bodies after the CDS
Hooks request and feedback schemas the document declares), over ASGI to the app ``create_app`` builds with
trusted issuers from ``write_dev_issuer`` and a recording publisher port:

* with a fresh CDS Client JWT for the call's own endpoint (``aud`` = base URL + path, CDS Hooks 2.0 "Trusting CDS
  Clients"): never a 5xx, bodies and media types as documented, and no call that fails inside and is answered
  ``{"cards": []}`` by the degrade path (a hostile body must be refused with 400, not crash the rules);
* without a token: 401 on every CDS Hooks route.

About half of the calls go to one of the three real service ids. No OpenAPI links: a card's uuid (for feedback)
comes only from a rated order, which generated data seldom is, so there is no stateful run here.
Profiles (root ``conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz`` for a long run.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import pytest

from radcds.adapters.db.engine import make_engine
from radcds_devstack.devkeys import sign_client_jwt, write_dev_issuer
from radcds_devstack.openapi_testing import CHECKS, assert_refused, openapi_schema, per_operation, steer_path_parameters
from radcds_devstack.testing import RecordingPublisher
from radcds_referral.app import build_components, create_app
from radcds_referral.domain import catalog
from radcds_referral.settings import ReferralSettings

pytestmark = pytest.mark.properties

ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"
#: The log line of the degrade path of a hook call (radcds_referral.api.cds_hooks).
DEGRADED = "CDS call failed: answering with no cards"


def _document() -> dict:
    """The OpenAPI document of an app built for it alone (in-memory database; nothing started)."""
    settings = ReferralSettings(public_base_url=BASE)
    components = build_components(settings, engine=make_engine("sqlite://"), publisher=RecordingPublisher())
    return create_app(settings, components=components).openapi()


schema, app_under_test = openapi_schema(_document(), base_url=BASE)
steer_path_parameters(schema, [{"service_id": s.id} for s in catalog.SERVICES])
cds_routes = schema.include(path_regex="^/cds-services")


@pytest.fixture
def issuer(tmp_path):
    key_path, issuers = write_dev_issuer(tmp_path / "issuer", ISS)
    kid = json.loads(issuers.read_text())[0]["jwks"]["keys"][0]["kid"]
    return key_path.read_bytes(), kid, issuers


@pytest.fixture
def referral(tmp_path, issuer):
    # A short FHIR budget: a generated fhirServer is never reachable, and each call would wait for it.
    settings = ReferralSettings(
        trusted_issuers_file=issuer[2],
        data_dir=tmp_path / "data",
        public_base_url=BASE,
        fhir_timeout_s=0.05,
        latency_budget_s=0.1,
    )
    app = create_app(settings, components=build_components(settings, publisher=RecordingPublisher()))
    with app_under_test.serving(app):
        yield app


@schema.parametrize()
@per_operation(share=5)
def test_any_call_with_a_valid_token_is_answered_as_documented_and_never_degraded(case, issuer, referral, caplog):
    key, kid, _ = issuer
    token = sign_client_jwt(key, kid=kid, iss=ISS, aud=BASE + unquote(case.formatted_path))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="radcds_referral.api.cds_hooks"):
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=list(CHECKS))
    assert DEGRADED not in caplog.messages


@cds_routes.parametrize()
@per_operation(share=15)
def test_any_call_without_a_token_is_refused_with_401(case, referral):
    response = case.call_and_validate(checks=list(CHECKS))
    assert_refused(case, response, expected=(401,))
