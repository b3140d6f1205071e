"""CDS Client JWT verification (CDS Hooks 2.0, "Trusting CDS Clients").

Keys are generated per test module with radcds_devstack.devkeys; remote JWK Sets are served by a real
http.server on 127.0.0.1 (an ephemeral port), not by a mock of httpx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from radcds_devstack.devkeys import (
    generate_es384_key,
    generate_rs384_key,
    jwk_thumbprint,
    sign_client_jwt,
    write_dev_issuer,
)
from radcds_referral.adapters.security import (
    CdsClientAuthenticator,
    TrustedIssuer,
    Unauthorized,
    VerifiedClient,
    load_trusted_issuers,
)

ISS = "https://ehr.example.org/cds-client"
OTHER_ISS = "https://other-ehr.example.org"
AUD = "https://radcds.example.org/cds-services/imaging-appropriateness"
T0 = 1_760_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Key:
    def __init__(self, pem: bytes, jwk: dict[str, Any]) -> None:
        self.pem = pem
        self.jwk = jwk
        self.kid: str = jwk["kid"]
        self.alg: str = jwk["alg"]

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving a JWK Set that a test can swap; counts requests."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests += 1
                    status, body = outer.status, json.dumps(outer.jwks).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def serve(self, *keys: Key) -> None:
        with self._lock:
            self.jwks = {"keys": [key.jwk for key in keys]}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
def es_key() -> Key:
    return Key(*generate_es384_key())


@pytest.fixture(scope="module")
def es_key_b() -> Key:
    return Key(*generate_es384_key())


@pytest.fixture(scope="module")
def rs_key() -> Key:
    return Key(*generate_rs384_key())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
def authenticator(es_key: Key, rs_key: Key, http: httpx.Client, clock: FakeClock) -> CdsClientAuthenticator:
    issuer = TrustedIssuer(iss=ISS, jwks={"keys": [es_key.jwk, rs_key.jwk]})
    return CdsClientAuthenticator([issuer], http=http, clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def sign(key: Key, clock: FakeClock, **kwargs: Any) -> str:
    kwargs.setdefault("iss", ISS)
    kwargs.setdefault("aud", AUD)
    kwargs.setdefault("kid", key.kid)
    kwargs.setdefault("alg", key.alg)
    kwargs.setdefault("issued_at", clock.now)
    return sign_client_jwt(key.pem, **kwargs)


def claims(clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    base = {"iss": ISS, "aud": AUD, "iat": int(clock.now), "exp": int(clock.now) + 300, "jti": str(uuid.uuid4())}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], payload: dict[str, Any], *, hs256_secret: bytes | None = None) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = b""
    if hs256_secret is not None:
        signature = hmac.new(hs256_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def rejection(auth: CdsClientAuthenticator, authorization: str | None, audience: str = AUD) -> str:
    with pytest.raises(Unauthorized) as excinfo:
        auth.authenticate(authorization, audience=audience)
    return str(excinfo.value)


# --- accepted tokens ---------------------------------------------------------------------------------------------


def test_valid_es384_token_is_accepted_and_returns_its_claims(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, jti="jti-1", extra={"sub": "client-42", "tenant": "hospital-a"})

    client = authenticator.authenticate(bearer(token), audience=AUD)

    assert client == VerifiedClient(
        iss=ISS,
        sub="client-42",
        jti="jti-1",
        tenant="hospital-a",
        expires_at=datetime.fromtimestamp(T0 + 300, tz=UTC),
    )


def test_valid_rs384_token_is_accepted(authenticator: CdsClientAuthenticator, rs_key: Key, clock: FakeClock) -> None:
    client = authenticator.authenticate(bearer(sign(rs_key, clock, alg="RS384")), audience=AUD)

    assert client.iss == ISS
    assert client.sub is None
    assert client.tenant is None


def test_lowercase_bearer_scheme_is_accepted(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    assert authenticator.authenticate(f"bearer {sign(es_key, clock)}", audience=AUD).iss == ISS


def test_audience_list_containing_the_endpoint_is_accepted(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, aud=[AUD, "https://elsewhere.example.org"])

    assert authenticator.authenticate(bearer(token), audience=AUD).iss == ISS


def test_extra_claims_sub_nbf_tenant_and_unknown_ones_are_accepted(
    authenticator: CdsClientAuthenticator, rs_key: Key, clock: FakeClock
) -> None:
    extra = {"sub": "epic-client", "nbf": int(T0) - 5, "tenant": "t-1", "epic.eci": "xyz", "scope": ["a", "b"]}
    token = sign(rs_key, clock, alg="RS384", extra=extra)

    client = authenticator.authenticate(bearer(token), audience=AUD)

    assert (client.sub, client.tenant) == ("epic-client", "t-1")


def test_token_expired_within_the_leeway_is_accepted(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, lifetime_s=60)
    clock.now = T0 + 60 + 29

    assert authenticator.authenticate(bearer(token), audience=AUD).iss == ISS


# --- the Authorization header --------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_missing_authorization_header_is_rejected(
    authenticator: CdsClientAuthenticator, authorization: str | None
) -> None:
    assert rejection(authenticator, authorization)


@pytest.mark.parametrize("scheme", ["Basic", "Token", "", "Bearer extra"])
def test_authorization_header_that_is_not_bearer_jwt_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock, scheme: str
) -> None:
    assert "Bearer" in rejection(authenticator, f"{scheme} {sign(es_key, clock)}".strip())


def test_garbage_bearer_token_is_rejected(authenticator: CdsClientAuthenticator) -> None:
    assert "malformed" in rejection(authenticator, "Bearer not-a-jwt")


# --- header: alg, typ, kid ---------------------------------------------------------------------------------------


def test_token_with_alg_none_is_rejected(authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock) -> None:
    token = hand_made_token({"alg": "none", "typ": "JWT", "kid": es_key.kid}, claims(clock))

    assert "alg 'none' is not allowed" in rejection(authenticator, bearer(token))


def test_hs256_token_signed_with_the_public_key_pem_as_secret_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    public_pem = (
        serialization.load_pem_private_key(es_key.pem, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = hand_made_token({"alg": "HS256", "typ": "JWT", "kid": es_key.kid}, claims(clock), hs256_secret=public_pem)

    assert "alg 'HS256' is not allowed" in rejection(authenticator, bearer(token))


def test_es256_token_is_rejected_even_when_its_key_is_in_the_jwks(http: httpx.Client, clock: FakeClock) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(p256.public_key(), as_dict=True), "kid": "p256"}
    es384 = Key(*generate_es384_key())
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks={"keys": [jwk, es384.jwk]})], http=http, clock=clock)
    token = sign_client_jwt(pem, kid="p256", iss=ISS, aud=AUD, alg="ES256", issued_at=clock.now)

    assert "alg 'ES256' is not allowed" in rejection(auth, bearer(token))


@pytest.mark.parametrize("alg", ["HS384", "HS512", "PS384", "RS256", "ES512", "EdDSA"])
def test_token_with_an_alg_other_than_es384_or_rs384_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock, alg: str
) -> None:
    token = hand_made_token({"alg": alg, "typ": "JWT", "kid": es_key.kid}, claims(clock))

    assert "is not allowed" in rejection(authenticator, bearer(token))


@pytest.mark.parametrize("header", [{"alg": ["ES384"]}, {"alg": None}, {}, {"alg": "ES384", "kid": {"k": 1}}])
def test_token_with_a_malformed_header_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock, header: dict[str, Any]
) -> None:
    token = hand_made_token({"typ": "JWT", "kid": es_key.kid, **header}, claims(clock))

    assert rejection(authenticator, bearer(token))


def test_token_with_crit_or_b64_header_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, headers={"crit": ["exp"], "exp": 1})

    assert "crit" in rejection(authenticator, bearer(token))


def test_token_whose_alg_does_not_match_its_key_type_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, rs_key: Key, clock: FakeClock
) -> None:
    # RS384 in the header, but kid names the EC key: no RSA key with that kid exists.
    token = sign(rs_key, clock, kid=es_key.kid, alg="RS384")

    assert "no RS384 key" in rejection(authenticator, bearer(token))


def test_token_with_typ_other_than_jwt_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, headers={"typ": "at+jwt"})

    assert "typ" in rejection(authenticator, bearer(token))


def test_token_without_kid_is_rejected(authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock) -> None:
    token = jwt.encode(claims(clock), es_key.pem, algorithm="ES384", headers={"typ": "JWT"})

    assert "kid" in rejection(authenticator, bearer(token))


def test_token_signed_by_an_untrusted_key_under_a_trusted_kid_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, es_key_b: Key, clock: FakeClock
) -> None:
    token = sign(es_key_b, clock, kid=es_key.kid)

    assert "signature does not verify" in rejection(authenticator, bearer(token))


# --- claims ------------------------------------------------------------------------------------------------------


def test_token_for_another_audience_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, aud="https://radcds.example.org/cds-services/other-service")

    assert "aud" in rejection(authenticator, bearer(token))


def test_token_whose_aud_only_prefixes_the_endpoint_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, aud="https://radcds.example.org/cds-services")

    assert "aud" in rejection(authenticator, bearer(token))


def test_expired_token_is_rejected(authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock) -> None:
    token = sign(es_key, clock, lifetime_s=60)
    clock.now = T0 + 60 + 31

    assert "expired" in rejection(authenticator, bearer(token))


def test_token_with_iat_in_the_future_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, issued_at=T0 + 120)

    assert "in the future" in rejection(authenticator, bearer(token))


def test_token_older_than_the_max_age_is_rejected_even_before_it_expires(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, lifetime_s=3600)
    clock.now = T0 + 300 + 31

    assert "older than 300s" in rejection(authenticator, bearer(token))


def test_token_before_its_nbf_is_rejected(authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock) -> None:
    token = sign(es_key, clock, extra={"nbf": int(T0) + 120})

    assert "not valid before" in rejection(authenticator, bearer(token))


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_token_missing_a_required_claim_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock, claim: str
) -> None:
    payload = claims(clock, **{claim: None})
    token = jwt.encode(payload, es_key.pem, algorithm="ES384", headers={"typ": "JWT", "kid": es_key.kid})

    assert claim in rejection(authenticator, bearer(token))


def test_token_with_a_non_numeric_exp_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, extra={"exp": "soon"})

    assert "exp is not a number" in rejection(authenticator, bearer(token))


def test_replayed_jti_is_rejected(authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock) -> None:
    token = sign(es_key, clock, jti="once")
    authenticator.authenticate(bearer(token), audience=AUD)
    clock.now += 5

    assert "replay" in rejection(authenticator, bearer(token))
    # A new token that reuses the jti is a replay too.
    assert "replay" in rejection(authenticator, bearer(sign(es_key, clock, jti="once")))


def test_replay_at_the_last_acceptable_instant_is_still_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, lifetime_s=3600)
    clock.now = T0 + 300 + 30  # iat + max age + leeway: the token itself is still acceptable
    authenticator.authenticate(bearer(token), audience=AUD)

    assert "replay" in rejection(authenticator, bearer(token))


def test_same_jti_from_another_trusted_issuer_is_accepted(
    es_key: Key, es_key_b: Key, http: httpx.Client, clock: FakeClock
) -> None:
    auth = CdsClientAuthenticator(
        [TrustedIssuer(iss=ISS, jwks=es_key.jwks), TrustedIssuer(iss=OTHER_ISS, jwks=es_key_b.jwks)],
        http=http,
        clock=clock,
    )
    auth.authenticate(bearer(sign(es_key, clock, jti="shared")), audience=AUD)

    assert auth.authenticate(bearer(sign(es_key_b, clock, iss=OTHER_ISS, jti="shared")), audience=AUD).jti == "shared"


def test_concurrent_uses_of_one_token_accept_exactly_one(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock)
    outcomes: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            authenticator.authenticate(bearer(token), audience=AUD)
            outcomes.append(True)
        except Unauthorized:
            outcomes.append(False)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [False] * 7 + [True]


def test_full_replay_cache_refuses_new_tokens_until_entries_expire(
    es_key: Key, http: httpx.Client, clock: FakeClock
) -> None:
    auth = CdsClientAuthenticator(
        [TrustedIssuer(iss=ISS, jwks=es_key.jwks)], http=http, clock=clock, replay_cache_size=2
    )
    for _ in range(2):
        auth.authenticate(bearer(sign(es_key, clock, lifetime_s=60)), audience=AUD)

    assert "replay cache full" in rejection(auth, bearer(sign(es_key, clock)))

    clock.now = T0 + 60 + 31  # the first two can no longer be accepted, so they are evicted
    assert auth.authenticate(bearer(sign(es_key, clock)), audience=AUD).iss == ISS


# --- issuers, JWKS and jku ---------------------------------------------------------------------------------------


def test_token_from_an_unknown_issuer_is_rejected(
    authenticator: CdsClientAuthenticator, es_key: Key, clock: FakeClock
) -> None:
    token = sign(es_key, clock, iss="https://evil.example.org")

    assert "not a trusted issuer" in rejection(authenticator, bearer(token))


def test_jku_not_on_the_allowlist_is_rejected_without_being_fetched(
    es_key: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks=es_key.jwks)], http=http, clock=clock)
    token = sign(es_key, clock, headers={"jku": jwks_server.url})

    assert "not allowlisted" in rejection(auth, bearer(token))
    assert jwks_server.requests == 0


def test_jku_on_the_allowlist_is_used(
    es_key: Key, es_key_b: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key_b)
    issuer = TrustedIssuer(iss=ISS, jwks=es_key.jwks, jku_allowlist=(jwks_server.url,))
    auth = CdsClientAuthenticator([issuer], http=http, clock=clock)

    client = auth.authenticate(bearer(sign(es_key_b, clock, headers={"jku": jwks_server.url})), audience=AUD)

    assert client.iss == ISS
    assert jwks_server.requests == 1
    # Without the jku header the issuer's own (static) keys apply, and key B is not among them.
    assert "no ES384 key" in rejection(auth, bearer(sign(es_key_b, clock)))


def test_jku_equal_to_the_issuers_own_jwks_url_is_accepted(
    es_key: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock)

    assert auth.authenticate(bearer(sign(es_key, clock, headers={"jku": jwks_server.url})), audience=AUD).iss == ISS
    assert auth.authenticate(bearer(sign(es_key, clock)), audience=AUD).iss == ISS
    assert jwks_server.requests == 1  # one cache for both


def test_rotated_key_is_accepted_after_one_refetch(
    es_key: Key, es_key_b: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock)
    auth.authenticate(bearer(sign(es_key, clock)), audience=AUD)
    assert jwks_server.requests == 1

    jwks_server.serve(es_key_b)  # the EHR rotates its key
    clock.now += 11
    client = auth.authenticate(bearer(sign(es_key_b, clock)), audience=AUD)

    assert client.iss == ISS
    assert jwks_server.requests == 2
    # Key A is gone from the refreshed set, and asking again so soon does not refetch.
    assert "throttled" in rejection(auth, bearer(sign(es_key, clock)))
    assert jwks_server.requests == 2


def test_unknown_kids_trigger_at_most_one_refetch_per_10_seconds(
    es_key: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock)
    auth.authenticate(bearer(sign(es_key, clock)), audience=AUD)
    assert jwks_server.requests == 1

    def random_kid_rejected_after(seconds: float) -> None:
        clock.now = T0 + seconds
        rejection(auth, bearer(sign(es_key, clock, kid=str(uuid.uuid4()))))

    for seconds in (1, 5, 9.9):
        random_kid_rejected_after(seconds)
    assert jwks_server.requests == 1

    random_kid_rejected_after(10)
    assert jwks_server.requests == 2
    for seconds in (10.5, 12, 15, 19.9):
        random_kid_rejected_after(seconds)
    assert jwks_server.requests == 2
    # Known keys keep working meanwhile, from the cache.
    assert auth.authenticate(bearer(sign(es_key, clock)), audience=AUD).iss == ISS
    assert jwks_server.requests == 2

    random_kid_rejected_after(20)
    assert jwks_server.requests == 3


def test_jwks_is_refetched_once_its_ttl_has_passed(
    es_key: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator(
        [TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock, jwks_ttl_s=60
    )
    auth.authenticate(bearer(sign(es_key, clock)), audience=AUD)
    clock.now += 59
    auth.authenticate(bearer(sign(es_key, clock)), audience=AUD)
    assert jwks_server.requests == 1

    clock.now += 1
    auth.authenticate(bearer(sign(es_key, clock)), audience=AUD)
    assert jwks_server.requests == 2


def test_jwks_endpoint_failure_rejects_and_is_not_retried_within_10_seconds(
    es_key: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock
) -> None:
    jwks_server.serve(es_key)
    jwks_server.status = 503
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock)

    assert "HTTP 503" in rejection(auth, bearer(sign(es_key, clock)))
    clock.now += 5
    assert "throttled" in rejection(auth, bearer(sign(es_key, clock)))
    assert jwks_server.requests == 1

    jwks_server.status = 200
    clock.now += 5
    assert auth.authenticate(bearer(sign(es_key, clock)), audience=AUD).iss == ISS
    assert jwks_server.requests == 2


# --- the token never leaks --------------------------------------------------------------------------------------


def test_token_is_not_in_exception_messages_or_logs(
    es_key: Key, es_key_b: Key, jwks_server: JwksServer, http: httpx.Client, clock: FakeClock, caplog: Any
) -> None:
    jwks_server.serve(es_key)
    auth = CdsClientAuthenticator([TrustedIssuer(iss=ISS, jwks_url=jwks_server.url)], http=http, clock=clock)
    caplog.set_level(logging.DEBUG)
    tokens = [
        sign(es_key, clock, aud="https://wrong.example.org"),
        sign(es_key, clock, lifetime_s=-100),
        sign(es_key_b, clock, kid=es_key.kid),
        sign(es_key, clock, iss="https://evil.example.org"),
        sign(es_key, clock, kid="unknown-kid"),
        sign(es_key, clock, headers={"jku": "https://evil.example.org/jwks"}),
        hand_made_token({"alg": "HS256", "kid": es_key.kid}, claims(clock), hs256_secret=b"secret"),
        sign(es_key, clock)[:-10],
    ]
    for token in tokens:
        with pytest.raises(Unauthorized) as excinfo:
            auth.authenticate(bearer(token), audience=AUD)
        signature = token.rsplit(".", 1)[1]
        for text in (str(excinfo.value), repr(excinfo.value)):
            assert token not in text
            assert signature[:16] not in text
    accepted = sign(es_key, clock)
    auth.authenticate(bearer(accepted), audience=AUD)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    for token in [*tokens, accepted]:
        assert token.rsplit(".", 1)[1][:16] not in logged


# --- trusted-issuers file and dev keys ---------------------------------------------------------------------------


def write_issuers(tmp_path: Path, entries: Any) -> Path:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_trusted_issuers_file_is_loaded(tmp_path: Path, es_key: Key) -> None:
    path = write_issuers(
        tmp_path,
        [
            {"iss": ISS, "jwks_url": "https://ehr.example.org/jwks", "jku_allowlist": ["https://ehr.example.org/k"]},
            {"iss": OTHER_ISS, "jwks": es_key.jwks},
            {"iss": "dev", "jwks_url": "http://localhost:8080/jwks"},
        ],
    )

    issuers = load_trusted_issuers(path)

    assert issuers[0] == TrustedIssuer(
        iss=ISS, jwks_url="https://ehr.example.org/jwks", jku_allowlist=("https://ehr.example.org/k",)
    )
    assert issuers[1].jwks == es_key.jwks
    assert issuers[2].jwks_url == "http://localhost:8080/jwks"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"jwks_url": "https://ehr.example.org/jwks"}, "missing iss"),
        ({"iss": ISS}, "exactly one of jwks_url or jwks"),
        ({"iss": ISS, "jwks_url": "https://ehr.example.org/jwks", "jwks": {"keys": []}}, "exactly one"),
        ({"iss": ISS, "jwks_url": "http://ehr.example.org/jwks"}, "must be an https URL"),
        ({"iss": ISS, "jwks_url": "https://e.example.org/j", "jku_allowlist": ["http://x.example.org"]}, "https"),
        ({"iss": ISS, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}, "no usable key"),
        ({"iss": ISS, "jwks_uri": "https://ehr.example.org/jwks"}, "unknown field(s) jwks_uri"),
    ],
)
def test_bad_trusted_issuers_entry_raises_value_error_naming_file_and_entry(
    tmp_path: Path, es_key: Key, entry: dict[str, Any], message: str
) -> None:
    path = write_issuers(tmp_path, [{"iss": OTHER_ISS, "jwks": es_key.jwks}, entry])

    with pytest.raises(ValueError, match="entry 1") as excinfo:
        load_trusted_issuers(path)

    assert str(path) in str(excinfo.value)
    assert message in str(excinfo.value)


def test_trusted_issuers_file_with_a_duplicate_iss_is_rejected(tmp_path: Path, es_key: Key) -> None:
    path = write_issuers(tmp_path, [{"iss": ISS, "jwks": es_key.jwks}, {"iss": ISS, "jwks": es_key.jwks}])

    with pytest.raises(ValueError, match="listed twice"):
        load_trusted_issuers(path)


def test_dev_issuer_files_let_a_signed_token_through(tmp_path: Path, http: httpx.Client, clock: FakeClock) -> None:
    key_path, issuers_path = write_dev_issuer(tmp_path / "dev", "radcds-dev-ehr")

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    issuers = load_trusted_issuers(issuers_path)
    kid = issuers[0].jwks["keys"][0]["kid"]  # type: ignore[index]
    token = sign_client_jwt(key_path.read_bytes(), kid=kid, iss="radcds-dev-ehr", aud=AUD, issued_at=clock.now)
    auth = CdsClientAuthenticator(issuers, http=http, clock=clock)

    assert auth.authenticate(bearer(token), audience=AUD).iss == "radcds-dev-ehr"


def test_jwk_thumbprint_matches_the_rfc_7638_example() -> None:
    # RFC 7638 §3.1: this RSA key's SHA-256 thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
            "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgd"
            "AZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCu"
            "r-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }

    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_generated_es384_key_id_is_its_thumbprint(es_key: Key) -> None:
    assert es_key.kid == jwk_thumbprint(es_key.jwk)
    assert (es_key.jwk["kty"], es_key.jwk["crv"], es_key.jwk["alg"]) == ("EC", "P-384", "ES384")
    assert "d" not in es_key.jwk
