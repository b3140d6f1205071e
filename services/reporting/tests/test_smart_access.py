"""SMART on FHIR access to /fhir: bearer JWTs from the configured issuer, v1 and v2 scopes,
401 with WWW-Authenticate, 403 OperationOutcome, patient compartment, open mode refused in production."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from radcds.adapters.db.outbox import OutboxRelay
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.app import build_components, create_app
from radcds_reporting.domain.smart_scopes import Context, Interaction, grant, parse_scopes
from radcds_reporting.handlers import ReportingService
from radcds_reporting.settings import ReportingSettings

from .conftest import STUDY, findings_event

ISSUER = "https://auth.example.org"
AUDIENCE = "http://testserver/fhir"
STUDY2 = "1.2.826.0.1.3680043.2.1125.9"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def client(engine, tmp_path, rsa_key):
    from radcds.domain.findings import StudyContext

    service = ReportingService(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), consumer_group="g"
    )
    service.handle(findings_event("e1", STUDY + ".1.1"))
    other = StudyContext(patient_id="PID-OTHER", accession_number="ACC-9", modality="CT", study_date="20260105")
    service.handle(findings_event("e2", STUDY2 + ".1.1", context=other, study=STUDY2))
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(pem)
    settings = ReportingSettings(
        data_dir=tmp_path,
        fhir_base_url=AUDIENCE,
        auth_mode="smart",
        smart_issuer=ISSUER,
        smart_public_key_file=key_file,
        mllp_enabled=False,
    )
    app = create_app(
        settings, components=build_components(settings, engine=engine, publisher=RecordingPublisher(), consume=False)
    )
    with TestClient(app) as c:
        yield c


def token(key, scope: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    body.update(scope=scope, **claims)
    return jwt.encode(body, key, algorithm="RS256")


def bearer(key, scope: str, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(key, scope, **claims)}"}


def test_metadata_needs_no_token_and_declares_smart(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_missing_token_returns_401_with_www_authenticate(client):
    r = client.get("/fhir/DiagnosticReport")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example.org"},
        {"aud": "http://elsewhere/fhir"},
        {"exp": 1_000_000},
    ],
)
def test_token_from_wrong_issuer_audience_or_expired_returns_401_invalid_token(client, rsa_key, claims):
    r = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "system/*.read", **claims))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_token_signed_by_another_key_or_hmac_returns_401(client, rsa_key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert client.get("/fhir/Patient", headers=bearer(other, "system/*.read")).status_code == 401
    hs = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, "scope": "system/*.read"}, "k" * 32)
    assert client.get("/fhir/Patient", headers={"Authorization": f"Bearer {hs}"}).status_code == 401
    es = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60}, ec.generate_private_key(ec.SECP256R1()),
                    algorithm="ES256")  # fmt: skip
    assert client.get("/fhir/Patient", headers={"Authorization": f"Bearer {es}"}).status_code == 401


@pytest.mark.parametrize(
    "scope", ["system/*.read", "user/DiagnosticReport.read", "user/DiagnosticReport.rs", "system/*.cruds"]
)
def test_v1_and_v2_read_scopes_allow_search(client, rsa_key, scope):
    r = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, f"openid fhirUser {scope}"))
    assert r.status_code == 200 and r.json()["total"] == 2


@pytest.mark.parametrize("scope", ["user/Observation.read", "user/DiagnosticReport.r", "user/DiagnosticReport.write"])
def test_insufficient_scope_returns_403_operation_outcome(client, rsa_key, scope):
    r = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, scope))
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_read_scope_cannot_finalise_but_write_scope_with_fhir_user_can(client, rsa_key):
    dr = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "user/*.read")).json()["entry"][0]["resource"]
    ops = [{"op": "replace", "path": "/status", "value": "final"}]
    headers = {"Content-Type": "application/json-patch+json"}
    r = client.patch(f"/fhir/DiagnosticReport/{dr['id']}", json=ops, headers=headers | bearer(rsa_key, "user/*.read"))
    assert r.status_code == 403
    writer = bearer(rsa_key, "user/DiagnosticReport.cruds", fhirUser="Practitioner/rad-7")
    r = client.patch(f"/fhir/DiagnosticReport/{dr['id']}", json=ops, headers=headers | writer)
    assert r.status_code == 200 and r.json()["resultsInterpreter"] == [{"reference": "Practitioner/rad-7"}]


def test_patient_scope_limits_search_and_read_to_the_launch_patient(client, rsa_key):
    everyone = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "system/*.read")).json()
    mine, theirs = sorted((e["resource"] for e in everyone["entry"]), key=lambda r: r["identifier"][0]["value"])
    patient = mine["subject"]["reference"].split("/")[1]
    headers = bearer(rsa_key, "patient/*.read", patient=patient)
    bundle = client.get("/fhir/DiagnosticReport", headers=headers).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [mine["id"]]
    assert client.get(f"/fhir/DiagnosticReport/{theirs['id']}", headers=headers).status_code == 404
    assert client.get(f"/fhir/Patient/{patient}", headers=headers).status_code == 200
    assert client.get("/fhir/Provenance", headers=headers).status_code == 403


def test_patient_scope_without_patient_claim_returns_403(client, rsa_key):
    assert client.get("/fhir/Observation", headers=bearer(rsa_key, "patient/Observation.rs")).status_code == 403


def test_open_access_is_refused_in_production(tmp_path):
    with pytest.raises(ValidationError, match="auth_mode=open"):
        ReportingSettings(data_dir=tmp_path, environment="production")


def test_smart_mode_needs_issuer_and_exactly_one_key_source(tmp_path):
    with pytest.raises(ValidationError, match="smart_issuer"):
        ReportingSettings(data_dir=tmp_path, auth_mode="smart")
    with pytest.raises(ValidationError, match="exactly one"):
        ReportingSettings(data_dir=tmp_path, auth_mode="smart", smart_issuer=ISSUER)


def test_scope_grammar_v1_v2_and_query_restricted_scopes():
    scopes = parse_scopes("openid launch patient/Observation.rs user/*.write system/DiagnosticReport.read "
                          "patient/Condition.rs?category=problem-list-item")  # fmt: skip
    assert grant(scopes, "Observation", Interaction.SEARCH).contexts == {Context.PATIENT}
    assert grant(scopes, "Observation", Interaction.UPDATE).contexts == {Context.USER}
    assert grant(scopes, "DiagnosticReport", Interaction.READ).contexts == {Context.SYSTEM}
    assert grant(scopes, "DiagnosticReport", Interaction.UPDATE).contexts == {Context.USER}
    assert not grant(scopes, "Condition", Interaction.READ).allowed


def test_verifier_fetches_keys_from_a_jwks_url_and_refuses_unknown_kid(rsa_key):
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from radcds_reporting.adapters.auth.smart import InvalidToken, SmartTokenVerifier

    jwk = _json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    body = _json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verifier = SmartTokenVerifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=["RS256"],
            jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json",
        )
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60, "scope": "user/*.rs", "fhirUser": "Practitioner/9"}
        good = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "k1"})
        access = verifier.verify(f"Bearer {good}")
        assert access.fhir_user == "Practitioner/9" and access.scopes
        unknown = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "k2"})
        with pytest.raises(InvalidToken):
            verifier.verify(f"Bearer {unknown}")
    finally:
        server.shutdown()


def test_smart_configuration_is_public_and_names_the_issuer_and_scopes(client):
    r = client.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    config = r.json()
    assert config["issuer"] == ISSUER
    assert {"permission-v1", "permission-v2"} <= set(config["capabilities"])
    assert "patient/*.rs" in config["scopes_supported"] and "user/DiagnosticReport.u" in config["scopes_supported"]
    assert "jwks_uri" not in config  # a static key file is configured, not a JWKS URL


def test_smart_configuration_in_open_mode_is_a_404_operation_outcome(engine, tmp_path):
    settings = ReportingSettings(data_dir=tmp_path, fhir_base_url=AUDIENCE, mllp_enabled=False)
    app = create_app(
        settings, components=build_components(settings, engine=engine, publisher=RecordingPublisher(), consume=False)
    )
    with TestClient(app) as c:
        r = c.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
