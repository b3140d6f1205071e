"""Verification of SMART on FHIR access tokens (SMART App Launch 2.x; RFC 6750 bearer tokens; RFC 7519 JWT).

The resource server accepts JWT access tokens signed by one configured authorization server:
``iss`` must be that issuer, ``aud`` must name this FHIR server, ``exp`` (and ``nbf``) are checked
with a small leeway, and the signature must verify with one of the issuer's keys (a JWKS URL,
cached and refetched on an unknown ``kid``, or one static PEM public key). Only asymmetric
algorithms are accepted (never ``none`` or HMAC). The ``scope`` claim (or ``scp`` list) holds SMART
v1/v2 scopes; ``patient`` the launch patient; ``fhirUser`` the user's FHIR reference.

Failures raise :class:`InvalidToken`; its message is for logs and the ``WWW-Authenticate``
error description, and never contains the token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from radcds_reporting.domain.smart_scopes import ClinicalScope, parse_scopes

_MAX_TOKEN_CHARS = 16 * 1024
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})


class InvalidToken(Exception):
    """The bearer token is missing or not acceptable (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What a verified access token grants."""

    subject: str
    scopes: tuple[ClinicalScope, ...]
    patient: str | None
    fhir_user: str | None
    client_id: str | None


class SmartTokenVerifier:
    """Verify ``Authorization: Bearer <JWT>`` against one issuer; thread-safe."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: list[str],
        jwks_url: str | None = None,
        public_key_pem: str | None = None,
        leeway_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (jwks_url is None) == (public_key_pem is None):
            raise ValueError("give exactly one of jwks_url or public_key_pem")
        if not set(algorithms) <= ASYMMETRIC:
            raise ValueError(f"only asymmetric algorithms are accepted, not {sorted(set(algorithms) - ASYMMETRIC)}")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(algorithms)
        self._leeway = leeway_s
        self._clock = clock
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None
        self._static_key = public_key_pem

    @classmethod
    def from_key_file(cls, path: Path, **kwargs: Any) -> SmartTokenVerifier:
        """A verifier with one PEM public key read from ``path``."""
        return cls(public_key_pem=path.read_text(encoding="ascii"), **kwargs)

    def verify(self, authorization: str | None) -> AccessToken:
        """Verify an ``Authorization`` header value; raise :class:`InvalidToken`."""
        if not authorization:
            raise InvalidToken("no bearer token")
        if len(authorization) > _MAX_TOKEN_CHARS:
            raise InvalidToken("Authorization header too long")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token.strip():
            raise InvalidToken("Authorization is not 'Bearer <token>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidToken(f"alg {alg!r} is not accepted")
        key: Any
        if self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise InvalidToken(f"no signing key for the token: {exc}") from None
        else:
            key = self._static_key
        now = self._clock()
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_iat": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from None
        times: dict[str, float] = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            # RFC 7519 4.1.4-4.1.6: NumericDate. A string, a boolean or NaN is refused, never skipped.
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidToken(f"claim {name} is not a NumericDate")
            times[name] = float(value)
        if now >= times["exp"] + self._leeway:
            raise InvalidToken("token expired")
        if "nbf" in times and times["nbf"] > now + self._leeway:
            raise InvalidToken("token not yet valid")
        if "iat" in times and times["iat"] > now + self._leeway:
            raise InvalidToken("token issued in the future")
        scope = claims.get("scope", "")
        if isinstance(claims.get("scp"), list):
            scope = " ".join(str(s) for s in claims["scp"])
        if not isinstance(scope, str):
            raise InvalidToken("scope claim is not a string")
        patient = claims.get("patient")
        fhir_user = claims.get("fhirUser")
        return AccessToken(
            subject=str(claims.get("sub", "")),
            scopes=parse_scopes(scope),
            patient=patient if isinstance(patient, str) and patient else None,
            fhir_user=fhir_user if isinstance(fhir_user, str) and fhir_user else None,
            client_id=claims.get("client_id") if isinstance(claims.get("client_id"), str) else None,
        )
