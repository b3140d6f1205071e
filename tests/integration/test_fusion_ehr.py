"""fusion's EHR context against a real HAPI FHIR JPA 8.8.0 server (deploy/local/hapi-fhir-jpa), loaded with the
test patients of tests/integration/fhir/ehr_patients.py by one transaction Bundle.

Also real: a slow EHR (a loopback proxy of ours that delays every answer), an EHR that is down (a port where
nothing listens), and SMART Backend Services against a real HTTP authorization server this module runs
(uvicorn + Starlette): it verifies the client assertion's RS384 signature against the client's registered JWKS,
its claims (iss = sub = client id, aud = token URL, exp at most 5 min ahead) and jti replay, issues a bearer
token, and forwards FHIR calls to HAPI only with that token.

Run: flock /tmp/radcds-it.lock .venv/bin/python -m pytest -m fhir_server tests/integration/test_fusion_ehr.py
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radcds_devstack.testing import free_port
from radcds_fusion.adapters.ehr import EhrContextReader, HttpFhirReader
from radcds_fusion.adapters.ehr_auth import (
    CLIENT_ASSERTION_TYPE,
    DevelopmentNoAuth,
    EhrAuth,
    SmartBackendServicesAuth,
)
from radcds_fusion.domain.context import ClinicalContext, SmokingStatus

from .peers import Hapi, Proxy, forward, patients, serve

pytestmark = [pytest.mark.integration, pytest.mark.validators, pytest.mark.fhir_server]


def _context(base: str, patient: str, *, auth: EhrAuth | None = None, **kw: Any) -> tuple[ClinicalContext, int]:
    """The patient's context read through a fresh reader; and how many search pages it fetched.

    Unless a test sets them, the timeouts are generous: HAPI on 2 busy cores can take seconds for its first answer
    of a kind, and what these tests check is the context, not the production timeouts (tested with explicit
    values below and in the unit tests)."""
    reader_kw = {k: kw.pop(k) for k in ("page_size", "read_timeout_s", "connect_timeout_s") if k in kw}
    reader_kw.setdefault("read_timeout_s", 30.0)
    kw.setdefault("budget_s", 60.0)

    async def run() -> tuple[ClinicalContext, int]:
        http = HttpFhirReader(base_url=base, auth=auth or DevelopmentNoAuth(), **reader_kw)
        try:
            ctx = await EhrContextReader(reader=http, **kw).context(patient)
            return ctx, http.pages_fetched
        finally:
            await http.aclose()

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------- the patients


def test_smoker_with_copd_context_has_30_pack_years_current_smoking_and_the_prior_ct_nodule(hapi: Hapi) -> None:
    ctx, _ = _context(hapi.base, patients.SMOKER)
    assert ctx.missing == ()
    assert (ctx.birth_date, ctx.sex) == (date(1962, 3, 14), "male")
    assert (ctx.copd, ctx.known_cancer, ctx.immunosuppressed) == (True, False, False)
    assert (ctx.smoking_status, ctx.pack_years) == (SmokingStatus.CURRENT, 30.0)
    assert (ctx.egfr_ml_min_173m2, ctx.creatinine_mg_dl) == (78.0, 1.0)
    (prior,) = ctx.prior_studies
    assert prior.study_uid == patients.PRIOR_CT_UID
    assert (date.today() - prior.started).days == patients.PRIOR_CT_DAYS_BEFORE if prior.started else False
    assert (prior.modalities, prior.body_site) == (("CT",), "51185008")
    assert prior.report_reference == f"DiagnosticReport/{patients.SMOKER}-prior-ct-report"
    (nodule,) = prior.findings
    assert (nodule.code, nodule.body_site, nodule.value) == ("786838002", "Upper lobe of right lung", 6.0)
    assert nodule.nodule is not None and nodule.nodule.composition.value == "solid"
    risk = ctx.for_guidelines(study_date=date.today(), screening=False).risk
    assert risk is not None and risk.value == "high"


def test_pacemaker_patient_context_lists_the_pacemaker_and_its_implant_procedure(hapi: Hapi) -> None:
    ctx, _ = _context(hapi.base, patients.PACEMAKER)
    assert ctx.missing == ()
    assert [(d.code, d.display) for d in ctx.devices] == [("14106009", "Cardiac pacemaker")]
    assert ctx.procedures == ("Insertion of intracardiac pacemaker (SCT 25267002)",)
    assert ctx.smoking_status is SmokingStatus.NEVER
    assert ctx.prior_studies == ()


def test_patient_under_35_context_gives_an_age_under_35_and_years_since_quitting(hapi: Hapi) -> None:
    ctx, _ = _context(hapi.base, patients.YOUNG)
    assert ctx.missing == ()
    age = ctx.age_on(date.today())
    assert age is not None and age < 35
    assert ctx.smoking_status is SmokingStatus.FORMER
    assert ctx.years_since_quit is not None and ctx.years_since_quit > 4
    assert (ctx.known_cancer, ctx.copd) == (False, False)


def test_known_cancer_patient_context_flags_known_cancer_and_converts_creatinine(hapi: Hapi) -> None:
    ctx, _ = _context(hapi.base, patients.CANCER)
    assert ctx.missing == ()
    assert ctx.known_cancer is True
    assert ctx.creatinine_mg_dl == 1.1
    assert ctx.smoking_status is None  # nothing documented: unknown, not "never"


def test_paging_with_count_1_follows_every_next_link_and_reads_the_same_context(hapi: Hapi) -> None:
    default, default_pages = _context(hapi.base, patients.SMOKER)
    paged, pages = _context(hapi.base, patients.SMOKER, page_size=1)
    assert paged == default
    # 8 searches holding 8 resources, two of them (smoking, laboratory) with 2 each: with _count=1 at least one
    # page per resource, so at least 10 pages, where one page per search sufficed before
    assert default_pages == 8
    assert pages >= 10


def test_unknown_patient_context_names_the_patient_as_missing_http_404(hapi: Hapi) -> None:
    ctx, _ = _context(hapi.base, "no-such-patient")
    assert ctx.missing == ("Patient (HTTP 404)",)
    assert ctx.birth_date is None and ctx.copd is False


# ------------------------------------------------------------------------------------------- EHR down or slow


def test_ehr_down_returns_a_context_with_every_source_missing_as_unreachable() -> None:
    ctx, _ = _context(f"http://127.0.0.1:{free_port()}/fhir", patients.SMOKER)
    assert len(ctx.missing) == 9
    assert all(m.endswith("(EHR unreachable)") for m in ctx.missing)
    assert ctx == ClinicalContext(missing=ctx.missing)


@pytest.fixture(scope="module")
def slow_ehr(hapi: Hapi) -> Iterator[Proxy]:
    state: dict[str, Any] = {"delay_s": 2.0}

    async def fhir(request: Request) -> Response:
        await asyncio.sleep(state["delay_s"])
        return await forward(request, hapi.base)

    app = Starlette(routes=[Route("/fhir/{path:path}", fhir)])
    for origin in serve(app):
        yield Proxy(base=f"{origin}/fhir", origin=origin, state=state)


def test_ehr_slower_than_the_read_timeout_returns_a_context_with_every_source_timed_out(slow_ehr: Proxy) -> None:
    ctx, _ = _context(slow_ehr.base, patients.SMOKER, read_timeout_s=0.3, budget_s=20)
    assert len(ctx.missing) == 9
    assert all(m.endswith("(timed out)") for m in ctx.missing), ctx.missing
    assert ctx.birth_date is None and ctx.prior_studies == ()


def test_ehr_slower_than_the_overall_budget_returns_within_it_naming_every_source(slow_ehr: Proxy) -> None:
    ctx, _ = _context(slow_ehr.base, patients.SMOKER, read_timeout_s=30, budget_s=0.5)
    assert len(ctx.missing) == 9
    assert all(m.endswith("(over the 0.5 s budget)") for m in ctx.missing), ctx.missing


# ------------------------------------------------------------------------------------------- SMART Backend Services


CLIENT_ID = "radcds-fusion-test"
KEY_ID = "fusion-test-key-1"


@dataclass
class AuthServer:
    base: str
    token_url: str
    key_pem: str
    issued: list[str]
    fhir_calls: list[str | None]
    assertions: list[dict[str, Any]]
    refusals: list[str]


@pytest.fixture(scope="module")
def auth_server(hapi: Hapi) -> Iterator[AuthServer]:
    """A SMART Backend Services authorization server + resource server in front of HAPI."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # The client's registered JWKS (SMART Backend Services: registered at client registration time).
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**jwk, "kid": KEY_ID, "alg": "RS384", "use": "sig"}]}
    registered = {CLIENT_ID: jwks}
    seen_jti: set[str] = set()
    tokens: dict[str, float] = {}
    record = AuthServer(base="", token_url="", key_pem=pem, issued=[], fhir_calls=[], assertions=[], refusals=[])

    def refuse(why: str, status: int = 401) -> JSONResponse:
        record.refusals.append(why)
        return JSONResponse({"error": "invalid_client", "error_description": why}, status_code=status)

    async def smart_configuration(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "token_endpoint": record.token_url,
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "grant_types_supported": ["client_credentials"],
                "capabilities": ["client-confidential-asymmetric"],
            }
        )

    async def token(request: Request) -> JSONResponse:
        # application/x-www-form-urlencoded, parsed by the standard library (no python-multipart here)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return refuse("client_assertion_type")
        assertion = str(form.get("client_assertion") or "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return refuse("unreadable assertion")
        client = unverified.get("iss")
        if client not in registered or unverified.get("sub") != client:
            return refuse("unknown client")
        keys = [k for k in registered[client]["keys"] if k["kid"] == header.get("kid")]
        if not keys or header.get("alg") not in ("RS384", "ES384"):
            return refuse("unknown kid or algorithm")
        try:
            claims = jwt.decode(
                assertion,
                jwt.PyJWK(keys[0]).key,
                algorithms=[header["alg"]],
                audience=record.token_url,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return refuse(f"assertion: {type(exc).__name__}")
        if claims["exp"] > time.time() + 300 + 5:
            return refuse("exp more than 5 minutes ahead")
        if claims["jti"] in seen_jti:
            return refuse("jti replayed")
        seen_jti.add(claims["jti"])
        record.assertions.append(claims)
        scopes = str(form.get("scope") or "").split()
        if not scopes or not all(s.startswith("system/") for s in scopes):
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        access = secrets.token_urlsafe(32)
        tokens[access] = time.time() + 300
        record.issued.append(access)
        return JSONResponse(
            {"access_token": access, "token_type": "bearer", "expires_in": 300, "scope": " ".join(scopes)}
        )

    async def fhir(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        record.fhir_calls.append(authorization)
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or tokens.get(value, 0) < time.time():
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
        return await forward(request, hapi.base)

    app = Starlette(
        routes=[
            Route("/fhir/.well-known/smart-configuration", smart_configuration),
            Route("/auth/token", token, methods=["POST"]),
            Route("/fhir/{path:path}", fhir),
        ]
    )
    for origin in serve(app):
        record.base = f"{origin}/fhir"
        record.token_url = f"{origin}/auth/token"
        yield record


def test_smart_backend_services_token_from_a_real_endpoint_authorizes_every_fhir_call(auth_server: AuthServer) -> None:
    before_calls, before_issued = len(auth_server.fhir_calls), len(auth_server.issued)
    auth = SmartBackendServicesAuth(
        client_id=CLIENT_ID, private_key_pem=auth_server.key_pem, key_id=KEY_ID, fhir_base_url=auth_server.base
    )
    ctx, _ = _context(auth_server.base, patients.SMOKER, auth=auth)
    assert ctx.missing == ()
    assert ctx.pack_years == 30.0 and len(ctx.prior_studies) == 1
    assert auth.token_url == auth_server.token_url  # discovered from .well-known/smart-configuration
    issued = auth_server.issued[before_issued:]
    assert len(issued) == 1  # one token, reused by all nine sources
    calls = auth_server.fhir_calls[before_calls:]
    assert len(calls) >= 9 and all(c == f"Bearer {issued[0]}" for c in calls)
    claims = auth_server.assertions[-1]
    assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["aud"] == auth_server.token_url
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert "jti replayed" not in auth_server.refusals


def test_fhir_call_without_a_token_is_refused_by_the_resource_server(auth_server: AuthServer) -> None:
    ctx, _ = _context(auth_server.base, patients.SMOKER)
    assert len(ctx.missing) == 9 and all(m.endswith("(HTTP 401)") for m in ctx.missing)


def test_unregistered_client_gets_a_context_with_every_source_missing_for_authorization(
    auth_server: AuthServer,
) -> None:
    auth = SmartBackendServicesAuth(
        client_id="someone-else",
        private_key_pem=auth_server.key_pem,
        key_id=KEY_ID,
        fhir_base_url=auth_server.base,
        token_url=auth_server.token_url,
    )
    refusals_before = len(auth_server.refusals)
    ctx, _ = _context(auth_server.base, patients.SMOKER, auth=auth)
    assert len(ctx.missing) == 9
    assert auth_server.refusals[refusals_before:] == ["unknown client"]  # one token request for nine sources
    assert all(
        m.endswith("(authorization failed: token endpoint answered HTTP 401 invalid_client)") for m in ctx.missing
    ), ctx.missing
    assert auth_server.refusals[-1] == "unknown client"
