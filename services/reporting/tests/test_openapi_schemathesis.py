"""Schemathesis against reporting's OpenAPI document (issue #15 "hostile input"; kit: radcds_devstack.openapi_testing).

Every operation of the FHIR R4 API (read, vread, history, search, update, JSON Patch, ``$acknowledge``), called with
generated valid and invalid data (bodies after the FHIR resource, JSON Patch and Parameters schemas the document
declares) over ASGI to the app ``create_app`` builds in SMART mode (an RSA issuer key of the test's own), on SQLite
holding two reports, one of them critical (so a Communication exists), and an order (a ServiceRequest):

* with a SMART token allowing everything (``user/*.cruds``, ``fhirUser`` a Practitioner): never a 5xx, bodies and
  media types as documented (OperationOutcome errors, ``application/fhir+json``);
* without a token: 401 with an OperationOutcome on every ``/fhir`` route but the capability statement and the SMART
  configuration, which are public.

About half of the calls name a resource that exists (type, id and version). No OpenAPI links and no stateful run:
every resource the API serves is created by events (findings, HL7 orders), none by a call.
Profiles (root ``conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz`` for a long run.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from radcds.adapters.db.engine import make_engine
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.resources import SUPPORTED_TYPES
from radcds_devstack.openapi_testing import CHECKS, assert_refused, openapi_schema, per_operation, steer_path_parameters
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.app import build_components, create_app
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings
from radcds_reporting.use_cases.orders import store_order

from .conftest import STUDY, findings_event

pytestmark = pytest.mark.properties

ISSUER = "https://auth.example.org"
FHIR_BASE = "http://testserver/fhir"
STUDY2 = "1.2.826.0.1.3680043.2.1125.9"
#: The public documents of a SMART server (SMART App Launch 2.2 "Conformance"; FHIR R4 3.1.0.1 capabilities).
PUBLIC = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")


def _document() -> dict:
    """The OpenAPI document of an app built for it alone (in-memory database; nothing started)."""
    settings = ReportingSettings(fhir_base_url=FHIR_BASE, mllp_enabled=False)
    components = build_components(
        settings, engine=make_engine("sqlite://"), publisher=RecordingPublisher(), consume=False
    )
    return create_app(settings, components=components).openapi()


schema, app_under_test = openapi_schema(_document(), base_url="http://testserver")
#: The resources of the running test's database (type, id, version), filled by the ``reporting`` fixture.
known: list[dict[str, str]] = []
steer_path_parameters(schema, known)
guarded = schema.include(path_regex="^/fhir/").exclude(path=list(PUBLIC))


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def reporting(engine, tmp_path, rsa_key):
    relay = OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox")
    service = ReportingService(engine=engine, relay=relay, consumer_group="g")
    service.handle(findings_event("e1", STUDY + ".1.1", critical=True))
    service.handle(findings_event("e2", STUDY2 + ".1.1", study=STUDY2))
    store_order(
        engine=engine,
        order=OrderDetails(
            patient_id="PID-1", placer_order_number="P-1", accession_number="ACC-1", requester="Practitioner/dr-1"
        ),
    )
    with engine.connect() as conn:
        repo = FhirRepository(conn)
        resources = [r for t in sorted(SUPPORTED_TYPES) for r in repo.search(t, count=100)[1]]
    known[:] = [
        {"resource_type": r["resourceType"], "resource_id": r["id"], "version_id": r["meta"]["versionId"]}
        for r in resources
    ]
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    settings = ReportingSettings(
        data_dir=tmp_path,
        fhir_base_url=FHIR_BASE,
        auth_mode="smart",
        smart_issuer=ISSUER,
        smart_public_key_file=key_file,
        mllp_enabled=False,
    )
    parts = build_components(settings, engine=engine, publisher=RecordingPublisher(), consume=False)
    with app_under_test.serving(create_app(settings, components=parts)) as app:
        yield app
    known.clear()


def _token(key) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": FHIR_BASE, "sub": "rad-1", "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    claims |= {"scope": "openid fhirUser user/*.cruds", "fhirUser": "Practitioner/rad-1"}
    return jwt.encode(claims, key, algorithm="RS256")


def test_the_fixture_knows_the_reports_the_critical_communication_and_the_order(reporting):
    assert {r["resource_type"] for r in known} >= {"DiagnosticReport", "Communication", "ServiceRequest"}


@schema.parametrize()
@per_operation(share=5)
def test_any_call_with_a_token_allowing_everything_is_answered_as_documented(case, reporting, rsa_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {_token(rsa_key)}"}, checks=list(CHECKS))


@guarded.parametrize()
@per_operation(share=15)
def test_any_fhir_call_without_a_token_is_refused_with_401(case, reporting):
    response = case.call_and_validate(checks=list(CHECKS))
    # A type this server does not have is 404 before any token is looked at: nothing of a resource is served.
    unsupported = (case.path_parameters or {}).get("resource_type", "Communication") not in SUPPORTED_TYPES
    assert_refused(case, response, expected=(401, 404) if unsupported else (401,))
