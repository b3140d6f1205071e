"""Authorization of fusion's EHR calls: SMART Backend Services (SMART App Launch 2.x, "Backend Services").

fusion is a confidential backend client with an asymmetric key (``private_key_jwt``, RFC 7523 client
assertions as profiled by SMART Backend Services):

1. the token endpoint is configured, or discovered from ``{fhir base}/.well-known/smart-configuration``
   (``token_endpoint``; SMART App Launch 2.x §"Conformance" / discovery);
2. a client assertion is a JWT signed with RS384 or ES384, header ``kid`` (and ``typ: JWT``), claims
   ``iss = sub = client_id``, ``aud = token URL``, ``exp`` at most 5 minutes ahead, a unique ``jti``;
3. ``POST`` form ``grant_type=client_credentials``, ``scope`` (e.g. ``system/Patient.rs system/Condition.rs``),
   ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, ``client_assertion``;
4. the access token is sent as ``Authorization: Bearer`` (RFC 6750) and kept until shortly before its
   ``expires_in``; a 401 from the EHR drops it so that the next call gets a new one; a refused token request
   is not repeated for ``retry_after_failure_s`` (10 s): concurrent calls get the same error.

Without authorization (:class:`DevelopmentNoAuth`) only when configured so, for a development EHR.
Errors never carry the token or the assertion.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import httpx
import jwt

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART Backend Services: the authorization server must support RS384 and ES384 client assertions.
ALGORITHMS = frozenset({"RS384", "ES384"})
#: SMART Backend Services: the assertion's exp no more than five minutes in the future.
MAX_ASSERTION_LIFETIME_S = 300
DEFAULT_SCOPES = (
    "system/Patient.rs",
    "system/Condition.rs",
    "system/Observation.rs",
    "system/Device.rs",
    "system/Procedure.rs",
    "system/ImagingStudy.rs",
    "system/DiagnosticReport.rs",
)


class EhrAuthError(Exception):
    """No access token could be obtained (discovery or token endpoint failed); the message names why."""


class EhrAuth(Protocol):
    """Gives the headers that authorize a call to the EHR's FHIR API."""

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        """Headers for the next call (may fetch a token)."""
        ...

    def invalidate(self) -> None:
        """Forget a token the EHR refused (HTTP 401)."""
        ...


class DevelopmentNoAuth:
    """No authorization: only for a development EHR, and only when configured explicitly."""

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        """No headers."""
        return {}

    def invalidate(self) -> None:
        """Nothing to forget."""


def client_assertion(
    *,
    client_id: str,
    token_url: str,
    private_key_pem: str,
    key_id: str,
    algorithm: str,
    now: float,
    lifetime_s: int = MAX_ASSERTION_LIFETIME_S,
) -> str:
    """A signed client assertion (SMART Backend Services, "Protocol details": iss, sub, aud, exp, jti; kid)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"SMART Backend Services client assertions use RS384 or ES384, not {algorithm}")
    if not 0 < lifetime_s <= MAX_ASSERTION_LIFETIME_S:
        raise ValueError("a client assertion lives at most 300 s")
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": int(now) + lifetime_s,
        "iat": int(now),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private_key_pem, algorithm=algorithm, headers={"kid": key_id, "typ": "JWT"})


class SmartBackendServicesAuth:
    """Access tokens by the client-credentials grant with a ``private_key_jwt`` client assertion."""

    def __init__(
        self,
        *,
        client_id: str,
        private_key_pem: str,
        key_id: str,
        fhir_base_url: str,
        token_url: str | None = None,
        algorithm: str = "RS384",
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        refresh_margin_s: float = 30.0,
        retry_after_failure_s: float = 10.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"SMART Backend Services client assertions use RS384 or ES384, not {algorithm}")
        if not client_id or not key_id:
            raise ValueError("a client id and the key id (kid) of the registered key are required")
        self._client_id = client_id
        self._key = private_key_pem
        self._kid = key_id
        self._base = fhir_base_url.rstrip("/")
        self._token_url = token_url
        self._alg = algorithm
        self._scopes = " ".join(scopes)
        self._margin = refresh_margin_s
        self._retry_after = retry_after_failure_s
        self._failure: tuple[float, str] | None = None  # (when, why) of the last refused token request
        self._timeout = timeout_s
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        #: How many tokens were obtained (for tests and metrics; never the token itself).
        self.tokens_obtained = 0

    @property
    def token_url(self) -> str | None:
        """The token endpoint, once configured or discovered."""
        return self._token_url

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        """``Authorization: Bearer`` with a valid token, fetching one when none is held or it is about to expire."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                # A refused or failed token request is not repeated for every concurrent call: the same error
                # is given until retry_after_failure_s has passed.
                if self._failure is not None and self._clock() - self._failure[0] < self._retry_after:
                    raise EhrAuthError(self._failure[1])
                try:
                    await self._fetch_token(client)
                except EhrAuthError as exc:
                    self._failure = (self._clock(), str(exc))
                    raise
                self._failure = None
            assert self._token is not None
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """Drop the held token (the EHR answered 401)."""
        self._token = None
        self._expires_at = 0.0

    async def _discover(self, client: httpx.AsyncClient) -> str:
        url = f"{self._base}/.well-known/smart-configuration"
        try:
            response = await client.get(url, headers={"Accept": "application/json"}, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise EhrAuthError(f"SMART configuration unreadable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise EhrAuthError(f"SMART configuration answered HTTP {response.status_code}")
        try:
            config = response.json()
        except ValueError:
            raise EhrAuthError("SMART configuration is not JSON") from None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise EhrAuthError("SMART configuration names no token_endpoint")
        methods = config.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and "private_key_jwt" not in methods:
            raise EhrAuthError("the authorization server does not accept private_key_jwt")
        return endpoint

    async def _fetch_token(self, client: httpx.AsyncClient) -> None:
        if self._token_url is None:
            self._token_url = await self._discover(client)
        now = self._clock()
        assertion = client_assertion(
            client_id=self._client_id,
            token_url=self._token_url,
            private_key_pem=self._key,
            key_id=self._kid,
            algorithm=self._alg,
            now=now,
        )
        form = {
            "grant_type": "client_credentials",
            "scope": self._scopes,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        try:
            response = await client.post(
                self._token_url, data=form, headers={"Accept": "application/json"}, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise EhrAuthError(f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            error = ""
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    error = f" {body['error'][:64]}"
            except ValueError:
                pass
            raise EhrAuthError(f"token endpoint answered HTTP {response.status_code}{error}")
        try:
            body = response.json()
        except ValueError:
            raise EhrAuthError("token response is not JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        token_type = body.get("token_type") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise EhrAuthError("token response has no bearer access_token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 300.0
        self._token = token
        self._expires_at = now + lifetime
        self.tokens_obtained += 1
