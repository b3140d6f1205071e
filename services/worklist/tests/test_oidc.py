"""The OpenID Connect relying party: PKCE (RFC 7636), ID token checks (Core §3.1.3.7), claims -> User, and the
flow against a fake provider of our own (an httpx transport answering discovery, JWKS and token requests) with
keys made in the test."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from radcds_worklist.adapters.oidc import (
    DEVELOPMENT_USERS,
    OidcClient,
    OidcError,
    UnknownKey,
    code_challenge_s256,
    new_code_verifier,
    practitioner_reference,
    user_from_claims,
    verify_id_token,
)
from radcds_worklist.domain.access import Role

ISSUER = "https://idp.example.org/realms/radiology"
CLIENT = "radcds-worklist"
NOW = 1_800_000_000.0


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key: rsa.RSAPrivateKey, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "f81d4fae",
        "aud": CLIENT,
        "exp": int(NOW) + 300,
        "iat": int(NOW),
        "nonce": "n-0S6_WzA2Mj",
        "name": "Dr Ada Lovelace",
        "roles": ["radiologist"],
        "fhirUser": "https://ehr.example.org/fhir/Practitioner/dr-ada",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def keys(key) -> jwt.PyJWKSet:
    return jwt.PyJWKSet.from_dict({"keys": [jwk_of(key, "k1")]})


def sign(key: Any, payload: dict[str, Any], *, kid: str = "k1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def check(token: str, keys: jwt.PyJWKSet, *, nonce: str = "n-0S6_WzA2Mj", now: float = NOW) -> dict[str, Any]:
    return verify_id_token(
        token, keys=keys, issuer=ISSUER, client_id=CLIENT, nonce=nonce, algorithms=("RS256",), now=now
    )


# ---- PKCE -------------------------------------------------------------------------------------


def test_s256_challenge_of_the_rfc7636_appendix_b_verifier_is_the_rfc_value():
    # RFC 7636 Appendix B: the 32 random octets of the example.
    octets = bytes(
        [
            *(116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186),
            *(22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121),
        ]
    )
    verifier = base64.urlsafe_b64encode(octets).rstrip(b"=").decode()
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_verifiers_are_long_unreserved_and_distinct():
    verifiers = {new_code_verifier() for _ in range(20)}
    assert len(verifiers) == 20
    assert all(43 <= len(v) <= 128 and code_challenge_s256(v) for v in verifiers)


def test_a_verifier_shorter_than_43_characters_is_refused():
    with pytest.raises(ValueError, match="43 to 128"):
        code_challenge_s256("too-short")


# ---- ID token checks -------------------------------------------------------------------------


def test_a_valid_id_token_gives_its_claims(key, keys):
    assert check(sign(key, claims()), keys)["sub"] == "f81d4fae"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.org"}, "another issuer"),
        ({"aud": "another-client"}, "not for this client"),
        ({"nonce": "replayed"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": int(NOW) - 3600, "iat": int(NOW) - 7200}, "expired"),
        ({"iat": int(NOW) + 3600, "exp": int(NOW) + 7200}, "future"),
        ({"sub": None}, "not valid"),
        ({"iat": None}, "not valid"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "authorized party"),
    ],
)
def test_an_id_token_with_a_wrong_claim_is_refused(key, keys, overrides, reason):
    with pytest.raises(OidcError, match=reason):
        check(sign(key, claims(**overrides)), keys, now=NOW)


def test_an_expired_id_token_is_refused_by_our_clock_too(key, keys):
    token = sign(key, claims(exp=int(time.time()) + 300, iat=int(time.time())))
    with pytest.raises(OidcError, match="expired"):
        check(token, keys, now=time.time() + 3600)


def test_an_unsigned_id_token_alg_none_is_refused(keys):
    token = jwt.encode(claims(), key=None, algorithm="none")
    with pytest.raises(OidcError, match="not accepted"):
        check(token, keys)


def test_an_hmac_id_token_keyed_with_the_public_key_is_refused(key, keys):
    # The classic algorithm confusion: HS256 with the provider's public key as the shared secret.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"k1","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    token = f"{header}.{body}.c2lnbmF0dXJl"
    with pytest.raises(OidcError, match="not accepted"):
        check(token, keys)


def test_an_id_token_signed_by_another_key_under_the_providers_kid_is_refused(keys):
    with pytest.raises(OidcError, match="not valid"):
        check(sign(rsa_key(), claims()), keys)


def test_an_id_token_with_an_unknown_kid_asks_for_the_jwks_again(key, keys):
    with pytest.raises(UnknownKey):
        check(sign(key, claims(), kid="rotated"), keys)


def test_an_id_token_whose_alg_differs_from_its_keys_declared_alg_is_refused(key):
    keys = jwt.PyJWKSet.from_dict({"keys": [jwk_of(key, "k1", alg="RS256")]})
    token = sign(key, claims(), alg="RS384")
    with pytest.raises(OidcError, match="does not match its key"):
        verify_id_token(
            token, keys=keys, issuer=ISSUER, client_id=CLIENT, nonce="n-0S6_WzA2Mj", algorithms=("RS384",), now=NOW
        )


def test_an_es256_id_token_verifies_against_an_ec_key():
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key())) | {"kid": "e1", "alg": "ES256"}
    keys = jwt.PyJWKSet.from_dict({"keys": [jwk]})
    token = sign(private, claims(), kid="e1", alg="ES256")
    result = verify_id_token(
        token, keys=keys, issuer=ISSUER, client_id=CLIENT, nonce="n-0S6_WzA2Mj", algorithms=("ES256",), now=NOW
    )
    assert result["name"] == "Dr Ada Lovelace"


# ---- claims -> User ----------------------------------------------------------------------------


def test_claims_become_a_user_with_issuer_and_subject_roles_and_practitioner():
    user = user_from_claims(claims(roles=["radiologist", "admin", "janitor"]), roles_claim="roles")
    assert user.id == f"{ISSUER}|f81d4fae"
    assert user.name == "Dr Ada Lovelace"
    assert user.roles == {Role.RADIOLOGIST, Role.ADMIN}  # unknown role names are dropped
    assert user.practitioner == "Practitioner/dr-ada"
    assert user.can_sign


def test_roles_come_from_the_configured_claim_as_a_list_or_a_space_separated_string():
    user = user_from_claims(claims(groups="viewer admin"), roles_claim="groups")
    assert user.roles == {Role.VIEWER, Role.ADMIN}


@pytest.mark.parametrize(
    ("fhir_user", "expected"),
    [
        ("Practitioner/dr-ada", "Practitioner/dr-ada"),
        ("https://ehr.example.org/fhir/Practitioner/dr-ben", "Practitioner/dr-ben"),
        ("https://ehr.example.org/fhir/Patient/123", ""),
        ("Practitioner/", ""),
        (None, ""),
    ],
)
def test_fhir_user_gives_a_practitioner_reference_only_for_a_practitioner(fhir_user, expected):
    assert practitioner_reference(fhir_user) == expected


def test_the_development_users_are_two_radiologists_a_viewer_and_an_admin():
    users = {a.login: a.user() for a in DEVELOPMENT_USERS}
    assert set(users) == {"dr-ada", "dr-ben", "vic", "ann"}
    assert users["dr-ada"].can_sign and users["dr-ben"].can_sign
    assert users["dr-ada"].practitioner == "Practitioner/dr-ada"
    assert not users["vic"].can_sign and users["vic"].can_read
    assert users["ann"].can_administer and not users["ann"].can_sign


# ---- the flow against a fake provider -------------------------------------------------------------


class FakeProvider:
    """A provider of our own behind an httpx transport: discovery, JWKS, token endpoint."""

    def __init__(self, key: rsa.RSAPrivateKey, *, secret: str | None = None) -> None:
        self.key = key
        self.kid = "k1"
        self.secret = secret
        self.requests: list[httpx.Request] = []
        self.nonce = ""
        self.issuer = ISSUER

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
                    "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
                    "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                },
            )
        if path.endswith("/certs"):
            return httpx.Response(200, json={"keys": [jwk_of(self.key, self.kid)]})
        if path.endswith("/token"):
            form = parse_qs(request.content.decode())
            if form.get("code") != ["the-code"] or not form.get("code_verifier"):
                return httpx.Response(400, json={"error": "invalid_grant"})
            now = int(time.time())
            token = sign(self.key, claims(iat=now, exp=now + 300, nonce=self.nonce), kid=self.kid)
            return httpx.Response(
                200,
                json={"access_token": "opaque-at", "token_type": "Bearer", "expires_in": 300, "id_token": token},
            )
        return httpx.Response(404)

    def client(self, http: httpx.AsyncClient, *, secret: str | None = None) -> OidcClient:
        return OidcClient(
            issuer=ISSUER,
            client_id=CLIENT,
            client_secret=secret,
            redirect_uri="https://worklist.example.org/auth/callback",
            http=http,
            scopes="openid profile fhirUser",
            jwks_refetch_interval_s=0.0,
        )


def run(provider: FakeProvider, flow: Any) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(provider.handler)) as http:
            return await flow(http)

    return asyncio.run(main())


def test_the_authorization_url_carries_state_nonce_and_an_s256_challenge_of_the_kept_verifier(key):
    provider = FakeProvider(key)

    async def flow(http):
        return await provider.client(http).authorization_request()

    request = run(provider, flow)
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path.endswith("/auth")
    assert query["response_type"] == "code" and query["client_id"] == CLIENT
    assert query["scope"] == "openid profile fhirUser"
    assert query["state"] == request.state and query["nonce"] == request.nonce
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == code_challenge_s256(request.code_verifier)
    assert "code_verifier" not in query


def test_a_public_client_redeems_the_code_with_its_verifier_and_gets_the_user_and_access_token(key):
    provider = FakeProvider(key)

    async def flow(http):
        client = provider.client(http)
        request = await client.authorization_request()
        provider.nonce = request.nonce
        signed = await client.exchange_code(code="the-code", code_verifier=request.code_verifier, nonce=request.nonce)
        return request, signed

    request, signed = run(provider, flow)
    token_request = next(r for r in provider.requests if r.url.path.endswith("/token"))
    form = parse_qs(token_request.content.decode())
    assert form["code_verifier"] == [request.code_verifier]
    assert form["client_id"] == [CLIENT] and "authorization" not in token_request.headers
    assert signed.user.id == f"{ISSUER}|f81d4fae" and signed.user.can_sign
    assert signed.access_token == "opaque-at" and signed.access_token_expires_at is not None
    # Discovery was read once for both calls (cached).
    assert sum(r.url.path.endswith("openid-configuration") for r in provider.requests) == 1


def test_a_confidential_client_authenticates_with_client_secret_basic(key):
    provider = FakeProvider(key)

    async def flow(http):
        client = provider.client(http, secret="s3cret")
        provider.nonce = "n1"
        return await client.exchange_code(code="the-code", code_verifier=new_code_verifier(), nonce="n1")

    run(provider, flow)
    token_request = next(r for r in provider.requests if r.url.path.endswith("/token"))
    expected = "Basic " + base64.b64encode(f"{CLIENT}:s3cret".encode()).decode()
    assert token_request.headers["authorization"] == expected
    assert "client_id" not in parse_qs(token_request.content.decode())


def test_a_rotated_provider_key_is_fetched_again_once(key):
    provider = FakeProvider(key)

    async def flow(http):
        client = provider.client(http)
        provider.nonce = "n1"
        await client.exchange_code(code="the-code", code_verifier=new_code_verifier(), nonce="n1")
        provider.key, provider.kid = rsa_key(), "k2"  # the provider rotates its signing key
        return await client.exchange_code(code="the-code", code_verifier=new_code_verifier(), nonce="n1")

    signed = run(provider, flow)
    assert signed.user.name == "Dr Ada Lovelace"
    assert sum(r.url.path.endswith("/certs") for r in provider.requests) == 2


def test_a_refused_code_is_an_error_naming_the_oauth_error_only(key):
    provider = FakeProvider(key)

    async def flow(http):
        return await provider.client(http).exchange_code(code="stolen", code_verifier=new_code_verifier(), nonce="n")

    with pytest.raises(OidcError, match="HTTP 400 invalid_grant"):
        run(provider, flow)


def test_a_discovery_document_naming_another_issuer_is_refused(key):
    provider = FakeProvider(key)
    provider.issuer = "https://evil.example.org"

    async def flow(http):
        return await provider.client(http).authorization_request()

    with pytest.raises(OidcError, match="another issuer"):
        run(provider, flow)
