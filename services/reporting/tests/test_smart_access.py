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


# ------------------------------------------------------------------ the JWT attack list (issue #15)
# The list referral's CDS Hooks verifier is tested against (services/referral/tests/test_security.py), aimed at
# the SMART-protected FHIR API: each forged or out-of-date token is a 401 invalid_token OperationOutcome.


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims(**overrides) -> dict:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now + 300, "iat": now, "scope": "system/*.read"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _unsigned(claims: dict) -> str:
    import json

    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def _attack(name: str, key) -> str:
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    if name == "alg-none":
        return _unsigned(_claims())
    if name == "alg-none-with-signature":
        return _unsigned(_claims()) + _b64(b"x" * 32)
    if name == "hs256-keyed-with-the-public-key":
        import hashlib
        import hmac
        import json

        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(_claims()).encode())
        sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}"
    if name == "rs512-not-configured":
        return jwt.encode(_claims(), key, algorithm="RS512")
    if name == "ps256-not-configured":
        return jwt.encode(_claims(), key, algorithm="PS256")
    if name == "crit-header":
        return jwt.encode(_claims(), key, algorithm="RS256", headers={"crit": ["exp"], "b64": False})
    if name == "signature-stripped":
        return jwt.encode(_claims(), key, algorithm="RS256").rsplit(".", 1)[0] + "."
    if name == "payload-swapped":
        good = jwt.encode(_claims(), key, algorithm="RS256").split(".")
        import json

        good[1] = _b64(json.dumps(_claims(scope="system/*.cruds", sub="admin")).encode())
        return ".".join(good)
    if name == "audience-prefix":
        return jwt.encode(_claims(aud=AUDIENCE + ".evil.example"), key, algorithm="RS256")
    if name == "audience-list-without-us":
        return jwt.encode(_claims(aud=["http://elsewhere/fhir"]), key, algorithm="RS256")
    if name == "no-exp":
        return jwt.encode(_claims(exp=None), key, algorithm="RS256")
    if name == "exp-as-string":
        return jwt.encode(_claims(exp=str(now + 300)), key, algorithm="RS256")
    if name == "expired-past-leeway":
        return jwt.encode(_claims(exp=now - 31), key, algorithm="RS256")
    if name == "nbf-in-the-future":
        return jwt.encode(_claims(nbf=now + 3600), key, algorithm="RS256")
    if name == "nbf-not-a-number":
        return jwt.encode(_claims(nbf="tomorrow"), key, algorithm="RS256")
    if name == "iat-in-the-future":
        return jwt.encode(_claims(iat=now + 3600), key, algorithm="RS256")
    if name == "iat-not-a-number":
        return jwt.encode(_claims(iat="now"), key, algorithm="RS256")
    if name == "no-issuer":
        return jwt.encode(_claims(iss=None), key, algorithm="RS256")
    if name == "not-a-jwt":
        return "not.a.jwt"
    raise AssertionError(name)


ATTACKS = [
    "alg-none", "alg-none-with-signature", "hs256-keyed-with-the-public-key", "rs512-not-configured",
    "ps256-not-configured", "crit-header", "signature-stripped", "payload-swapped", "audience-prefix",
    "audience-list-without-us", "no-exp", "exp-as-string", "expired-past-leeway", "nbf-in-the-future",
    "nbf-not-a-number", "iat-in-the-future", "iat-not-a-number", "no-issuer", "not-a-jwt",
]  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_forged_or_out_of_date_token_is_401_invalid_token_for_read_and_search(client, rsa_key, attack):
    headers = {"Authorization": f"Bearer {_attack(attack, rsa_key)}"}
    everyone = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "system/*.read")).json()
    dr = everyone["entry"][0]["resource"]["id"]
    for path in ("/fhir/DiagnosticReport", f"/fhir/DiagnosticReport/{dr}", "/fhir/Patient"):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (attack, path, r.status_code)
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert r.json()["resourceType"] == "OperationOutcome"


def test_the_attack_list_control_a_well_formed_token_is_accepted(client, rsa_key):
    assert client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "system/*.read")).status_code == 200


def test_a_patient_scoped_token_cannot_reach_another_patient_by_include_id_or_reference(client, rsa_key):
    everyone = client.get("/fhir/DiagnosticReport", headers=bearer(rsa_key, "system/*.read")).json()
    mine, theirs = sorted((e["resource"] for e in everyone["entry"]), key=lambda r: r["identifier"][0]["value"])
    patient = mine["subject"]["reference"].split("/")[1]
    other = theirs["subject"]["reference"].split("/")[1]
    assert patient != other
    headers = bearer(rsa_key, "patient/*.read", patient=patient)

    def ids(bundle: dict) -> set[str]:
        return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}

    included = client.get(
        "/fhir/DiagnosticReport",
        params=[("_include", "DiagnosticReport:subject"), ("_include", "DiagnosticReport:result")],
        headers=headers,
    )
    assert included.status_code == 200
    assert f"Patient/{patient}" in ids(included.json()) and f"Patient/{other}" not in ids(included.json())
    assert f"DiagnosticReport/{theirs['id']}" not in ids(included.json())
    for params in (
        {"_id": theirs["id"]},
        {"subject": f"Patient/{other}"},
        {"patient": other},
        {"_id": f"{mine['id']},{theirs['id']}"},
    ):
        bundle = client.get("/fhir/DiagnosticReport", params=params, headers=headers).json()
        assert f"DiagnosticReport/{theirs['id']}" not in ids(bundle), params
    observations = client.get("/fhir/Observation", params={"_include": "Observation:subject"}, headers=headers).json()
    assert all(
        e["resource"].get("subject", {}).get("reference", f"Patient/{patient}") == f"Patient/{patient}"
        for e in observations.get("entry", []) if e["resource"]["resourceType"] == "Observation"
    )  # fmt: skip
    assert f"Patient/{other}" not in ids(observations)
    assert client.get(f"/fhir/Patient/{other}", headers=headers).status_code == 404
    assert client.get(f"/fhir/DiagnosticReport/{theirs['id']}/_history/1", headers=headers).status_code == 404
    assert client.get(f"/fhir/DiagnosticReport/{theirs['id']}/_history", headers=headers).status_code in (403, 404)
