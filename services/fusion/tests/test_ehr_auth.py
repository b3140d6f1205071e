"""SMART Backend Services authorization (adapters/ehr_auth.py): client assertion claims, discovery, token caching
and refresh, against a real loopback HTTP token endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from radcds_fusion.adapters.ehr_auth import (
    CLIENT_ASSERTION_TYPE,
    DevelopmentNoAuth,
    EhrAuthError,
    SmartBackendServicesAuth,
    client_assertion,
)

TOKEN_URL = "https://auth.example.org/token"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_client_assertion_has_the_smart_backend_services_claims_and_kid(rsa_key: rsa.RSAPrivateKey) -> None:
    token = client_assertion(
        client_id="radcds-fusion",
        token_url=TOKEN_URL,
        private_key_pem=_pem(rsa_key),
        key_id="k1",
        algorithm="RS384",
        now=1_800_000_000,
    )
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"], header["typ"]) == ("RS384", "k1", "JWT")
    claims = jwt.decode(
        token,
        rsa_key.public_key(),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "radcds-fusion"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - 1_800_000_000 <= 300
    assert len(claims["jti"]) >= 16


def test_each_client_assertion_has_a_new_jti(rsa_key: rsa.RSAPrivateKey) -> None:
    kw: dict[str, Any] = {
        "client_id": "c",
        "token_url": TOKEN_URL,
        "private_key_pem": _pem(rsa_key),
        "key_id": "k1",
        "algorithm": "RS384",
        "now": 0,
    }
    first, second = (jwt.decode(client_assertion(**kw), options={"verify_signature": False}) for _ in range(2))
    assert first["jti"] != second["jti"]


def test_es384_client_assertion_verifies_with_the_ec_public_key() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    token = client_assertion(
        client_id="c", token_url=TOKEN_URL, private_key_pem=_pem(key), key_id="e1", algorithm="ES384", now=0
    )
    assert (
        jwt.decode(token, key.public_key(), algorithms=["ES384"], audience=TOKEN_URL, options={"verify_exp": False})[
            "sub"
        ]
        == "c"
    )


def test_algorithm_other_than_rs384_or_es384_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="RS384 or ES384"):
        client_assertion(
            client_id="c", token_url=TOKEN_URL, private_key_pem=_pem(rsa_key), key_id="k", algorithm="RS256", now=0
        )
    with pytest.raises(ValueError, match="RS384 or ES384"):
        SmartBackendServicesAuth(
            client_id="c", private_key_pem=_pem(rsa_key), key_id="k", fhir_base_url="http://x", algorithm="HS256"
        )


def test_assertion_living_more_than_five_minutes_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="300 s"):
        client_assertion(
            client_id="c",
            token_url=TOKEN_URL,
            private_key_pem=_pem(rsa_key),
            key_id="k",
            algorithm="RS384",
            now=0,
            lifetime_s=301,
        )


def test_development_no_auth_sends_no_header() -> None:
    async def run() -> dict[str, str]:
        async with httpx.AsyncClient() as client:
            return await DevelopmentNoAuth().headers(client)

    assert asyncio.run(run()) == {}


# ------------------------------------------------------------------------------------------- a real token endpoint


class TokenEndpoint:
    """A loopback authorization server: SMART configuration and a token endpoint that verifies the assertion."""

    def __init__(self, public_key: Any, *, answer: tuple[int, dict[str, Any]] | None = None) -> None:
        self.assertions: list[dict[str, Any]] = []
        self.forms: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/fhir/.well-known/smart-configuration":
                    self._send(
                        200,
                        {
                            "token_endpoint": outer.token_url,
                            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        },
                    )
                else:
                    self._send(404, {})

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                outer.forms.append(form)
                if answer is not None:
                    self._send(*answer)
                    return
                # leeway: the client's injected clock runs up to 5 min ahead of this server's
                claims = jwt.decode(
                    form["client_assertion"][0], public_key, algorithms=["RS384"], audience=outer.token_url, leeway=600
                )
                outer.assertions.append(claims)
                self._send(
                    200,
                    {
                        "access_token": f"at-{len(outer.assertions)}",
                        "token_type": "bearer",
                        "expires_in": 300,
                        "scope": form["scope"][0],
                    },
                )

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.fhir_base = f"http://127.0.0.1:{port}/fhir"
        self.token_url = f"http://127.0.0.1:{port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(rsa_key: rsa.RSAPrivateKey) -> Iterator[TokenEndpoint]:
    e = TokenEndpoint(rsa_key.public_key())
    yield e
    e.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_token_endpoint_is_discovered_and_the_token_is_reused_until_shortly_before_expiry(
    rsa_key: rsa.RSAPrivateKey, endpoint: TokenEndpoint
) -> None:
    clock = Clock()
    auth = SmartBackendServicesAuth(
        client_id="radcds-fusion",
        private_key_pem=_pem(rsa_key),
        key_id="k1",
        fhir_base_url=endpoint.fhir_base,
        clock=clock,
    )

    async def run() -> list[dict[str, str]]:
        async with httpx.AsyncClient() as client:
            first = await auth.headers(client)
            clock.now += 269  # 300 s token, 30 s margin: still valid
            second = await auth.headers(client)
            clock.now += 1
            third = await auth.headers(client)
            return [first, second, third]

    first, second, third = asyncio.run(run())
    assert auth.token_url == endpoint.token_url
    assert first == second == {"Authorization": "Bearer at-1"}
    assert third == {"Authorization": "Bearer at-2"}
    form = endpoint.forms[0]
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion_type"] == [CLIENT_ASSERTION_TYPE]
    assert "system/Condition.rs" in form["scope"][0].split()
    assert endpoint.assertions[0]["jti"] != endpoint.assertions[1]["jti"]


def test_invalidated_token_is_replaced_on_the_next_call(rsa_key: rsa.RSAPrivateKey, endpoint: TokenEndpoint) -> None:
    auth = SmartBackendServicesAuth(
        client_id="c",
        private_key_pem=_pem(rsa_key),
        key_id="k1",
        fhir_base_url=endpoint.fhir_base,
        token_url=endpoint.token_url,
    )

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        async with httpx.AsyncClient() as client:
            first = await auth.headers(client)
            auth.invalidate()
            return first, await auth.headers(client)

    assert asyncio.run(run()) == ({"Authorization": "Bearer at-1"}, {"Authorization": "Bearer at-2"})


def test_refused_client_raises_an_auth_error_naming_the_status_but_not_the_assertion(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    e = TokenEndpoint(rsa_key.public_key(), answer=(401, {"error": "invalid_client"}))
    try:
        auth = SmartBackendServicesAuth(
            client_id="c", private_key_pem=_pem(rsa_key), key_id="k1", fhir_base_url=e.fhir_base, token_url=e.token_url
        )

        async def run() -> None:
            async with httpx.AsyncClient() as client:
                await auth.headers(client)

        with pytest.raises(EhrAuthError) as raised:
            asyncio.run(run())
        assert str(raised.value) == "token endpoint answered HTTP 401 invalid_client"
        assert e.forms[0]["client_assertion"][0] not in str(raised.value)
    finally:
        e.close()


def test_token_response_without_a_bearer_token_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    e = TokenEndpoint(rsa_key.public_key(), answer=(200, {"access_token": "x", "token_type": "mac"}))
    try:
        auth = SmartBackendServicesAuth(
            client_id="c", private_key_pem=_pem(rsa_key), key_id="k1", fhir_base_url=e.fhir_base, token_url=e.token_url
        )

        async def run() -> None:
            async with httpx.AsyncClient() as client:
                await auth.headers(client)

        with pytest.raises(EhrAuthError, match="no bearer access_token"):
            asyncio.run(run())
    finally:
        e.close()


def test_refused_token_request_is_not_repeated_by_concurrent_calls_until_the_retry_delay(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    e = TokenEndpoint(rsa_key.public_key(), answer=(401, {"error": "invalid_client"}))
    clock = Clock()
    try:
        auth = SmartBackendServicesAuth(
            client_id="c",
            private_key_pem=_pem(rsa_key),
            key_id="k1",
            fhir_base_url=e.fhir_base,
            token_url=e.token_url,
            clock=clock,
        )

        async def attempt(client: httpx.AsyncClient) -> str:
            try:
                await auth.headers(client)
            except EhrAuthError as exc:
                return str(exc)
            return "no error"

        async def run() -> None:
            async with httpx.AsyncClient() as client:
                errors = await asyncio.gather(*(attempt(client) for _ in range(9)))
                assert set(errors) == {"token endpoint answered HTTP 401 invalid_client"}
                assert len(e.forms) == 1
                clock.now += 10
                await asyncio.gather(*(attempt(client) for _ in range(9)))
                assert len(e.forms) == 2

        asyncio.run(run())
    finally:
        e.close()
