"""The worklist as an OpenID Connect relying party: authorization code flow with PKCE.

- OpenID Connect Discovery 1.0 §4: the provider's metadata is read from ``{issuer}/.well-known/openid-configuration``
  and kept for ``discovery_ttl_s``; its ``issuer`` must equal the configured one exactly (§4.3).
- OpenID Connect Core 1.0 §3.1.2.1: the authentication request carries ``response_type=code``, the scopes,
  ``state`` (CSRF protection of the redirect, RFC 6749 §10.12) and ``nonce`` (replay protection, §15.5.2).
- RFC 7636 (PKCE): a fresh ``code_verifier`` of 64 characters per request; ``code_challenge`` is
  BASE64URL(SHA-256(verifier)) (``S256``, §4.2); the verifier goes with the code in the token request (§4.5).
- Core §3.1.3.1: the token request is ``grant_type=authorization_code`` with ``code``, ``redirect_uri`` and
  ``code_verifier``; a confidential client authenticates with HTTP Basic (``client_secret_basic``, RFC 6749
  §2.3.1), a public client sends its ``client_id``.
- Core §3.1.3.7: the ID token is verified with pyjwt against the provider's JWKS (``jwks_uri``, refetched once
  on an unknown ``kid``, at most every ``jwks_refetch_interval_s``): asymmetric algorithms only (never ``none``
  nor HMAC), ``iss`` equal to the issuer, ``aud`` containing the client id (and ``azp`` equal to it when there
  are several audiences), ``exp`` and ``iat`` present and in time (with a small leeway), ``sub`` present and the
  ``nonce`` equal to the one sent.
- The claims become a :class:`~radcds_worklist.domain.access.User`: ``id`` is ``iss|sub`` (stable and unique,
  Core §5.7), ``name`` for display, the roles from the configured claim (unknown role names are dropped), the
  Practitioner from ``fhirUser`` (SMART App Launch 2.x §"fhirUser": a relative ``Practitioner/x`` or an absolute
  URL ending in it).

Nothing here logs a token or a claim; errors name what failed, never the token.

The development users (:data:`DEVELOPMENT_USERS`) are defined here once: the development login lists them,
and the local OpenID Provider (deploy/local/oidcprovider) declares the same accounts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from radcds_worklist.domain.access import Role, User

#: Asymmetric JWS algorithms (RFC 7518 §3.1); ``none`` and the HMAC family are never accepted for ID tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: RFC 7636 §4.1: the verifier is 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PRACTITIONER = re.compile(r"(?:^|/)(Practitioner/[A-Za-z0-9\-.]{1,64})$")
_MAX_TOKEN_CHARS = 16 * 1024
#: The issuer of the development users (development mode: no provider).
DEVELOPMENT_ISSUER = "development"


@dataclass(frozen=True, slots=True)
class DevelopmentAccount:
    """A development user: the login name and the claims the local provider gives it."""

    login: str
    name: str
    roles: tuple[Role, ...]
    practitioner: str

    def user(self, issuer: str = DEVELOPMENT_ISSUER) -> User:
        """The signed-in user this account becomes under ``issuer``."""
        return User(f"{issuer}|{self.login}", self.name, frozenset(self.roles), self.practitioner)


#: The development accounts (development login and the local OpenID Provider): two radiologists, a viewer, an admin.
DEVELOPMENT_USERS: tuple[DevelopmentAccount, ...] = (
    DevelopmentAccount("dr-ada", "Dr Ada Lovelace", (Role.RADIOLOGIST,), "Practitioner/dr-ada"),
    DevelopmentAccount("dr-ben", "Dr Ben Carson", (Role.RADIOLOGIST,), "Practitioner/dr-ben"),
    DevelopmentAccount("vic", "Vic Viewer", (Role.VIEWER,), "Practitioner/vic"),
    DevelopmentAccount("ann", "Ann Admin", (Role.ADMIN,), "Practitioner/ann"),
)


def development_account(login: str) -> DevelopmentAccount | None:
    """The development account named ``login``, or None."""
    return next((a for a in DEVELOPMENT_USERS if a.login == login), None)


class OidcError(Exception):
    """Sign-in failed (discovery, token request or ID token check); the message says what, never the token."""


# ---- PKCE (RFC 7636) ----------------------------------------------------------------------


def new_code_verifier() -> str:
    """A fresh high-entropy ``code_verifier`` (RFC 7636 §4.1: 48 random octets, base64url: 64 characters)."""
    return secrets.token_urlsafe(48)


def code_challenge_s256(verifier: str) -> str:
    """``code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2, ``S256``)."""
    if not _VERIFIER.match(verifier):
        raise ValueError("a code_verifier is 43 to 128 unreserved characters (RFC 7636 §4.1)")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# ---- provider metadata (OpenID Connect Discovery 1.0) -------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the relying party reads from the provider's configuration (Discovery 1.0 §3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_signing_alg_values_supported: tuple[str, ...]
    code_challenge_methods_supported: tuple[str, ...] = ()
    end_session_endpoint: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any], *, issuer: str) -> ProviderMetadata:
        """Validate a discovery document for ``issuer`` (§4.3: its ``issuer`` must be identical)."""
        if document.get("issuer") != issuer:
            raise OidcError("the provider's configuration names another issuer")

        def url(name: str) -> str:
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise OidcError(f"the provider's configuration has no {name}")
            return value

        algs = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        methods = document.get("code_challenge_methods_supported") or []
        end_session = document.get("end_session_endpoint")
        return cls(
            issuer=issuer,
            authorization_endpoint=url("authorization_endpoint"),
            token_endpoint=url("token_endpoint"),
            jwks_uri=url("jwks_uri"),
            id_token_signing_alg_values_supported=tuple(str(a) for a in algs),
            code_challenge_methods_supported=tuple(str(m) for m in methods),
            end_session_endpoint=end_session if isinstance(end_session, str) else None,
        )


# ---- ID token verification (Core §3.1.3.7) ------------------------------------------------


def verify_id_token(
    token: str,
    *,
    keys: jwt.PyJWKSet,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: tuple[str, ...],
    now: float,
    leeway_s: float = 60.0,
) -> dict[str, Any]:
    """Verify an ID token's signature and claims (OpenID Connect Core 1.0 §3.1.3.7); return its claims.

    Raises :class:`OidcError` (with a reason, without the token) when anything is wrong, and
    :class:`UnknownKey` when the token's ``kid`` is not in ``keys`` (the caller refetches the JWKS once).
    """
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise OidcError("no ID token, or one too long")
    allowed = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    if not allowed:
        raise OidcError("the provider offers no asymmetric ID token algorithm")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise OidcError("the ID token is not a JWS") from None
    alg = header.get("alg")
    if alg not in allowed:
        raise OidcError(f"ID token algorithm {str(alg)[:16]!r} is not accepted")
    key = _key_for(keys, header.get("kid"), alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            leeway=leeway_s,
            # Times are checked below against our clock (one clock for every check, and testable).
            options={
                "require": ["iss", "sub", "aud", "exp", "iat"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise OidcError("the ID token is not for this client") from None
    except jwt.InvalidIssuerError:
        raise OidcError("the ID token is from another issuer") from None
    except jwt.PyJWTError as exc:
        raise OidcError(f"the ID token is not valid ({type(exc).__name__})") from None
    try:
        exp, iat, nbf = float(claims["exp"]), float(claims["iat"]), float(claims.get("nbf", claims["iat"]))
    except (TypeError, ValueError):
        raise OidcError("the ID token's times are not numbers") from None
    if exp + leeway_s <= now:
        raise OidcError("the ID token has expired")
    if iat - leeway_s > now or nbf - leeway_s > now:
        raise OidcError("the ID token was issued in the future")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("the ID token has several audiences and another authorized party")
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not secrets.compare_digest(presented.encode(), nonce.encode()):
        raise OidcError("the ID token's nonce is not the one sent")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise OidcError("the ID token has no subject")
    return claims


class UnknownKey(OidcError):
    """The ID token names a key (``kid``) that the JWKS held does not have."""


def _key_for(keys: jwt.PyJWKSet, kid: object, alg: str) -> jwt.PyJWK:
    candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
    if kid is None and len(candidates) != 1:
        raise OidcError("the ID token names no key and the provider has several")
    if not candidates:
        raise UnknownKey("the ID token is signed with a key the provider does not publish")
    key = candidates[0]
    declared = key._jwk_data.get("alg")
    if declared is not None and declared != alg:
        # A key published for one algorithm (its "alg", RFC 7517 §4.4) is not used with another.
        raise OidcError("the ID token's algorithm does not match its key")
    return key


# ---- claims -> User --------------------------------------------------------------------------


def user_from_claims(claims: Mapping[str, Any], *, roles_claim: str) -> User:
    """The worklist user of verified ID token claims (``iss|sub``, ``name``, roles, ``fhirUser``)."""
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    name = claims.get("name") or claims.get("preferred_username") or subject
    raw_roles = claims.get(roles_claim, [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and r in Role._value2member_map_)
    return User(f"{issuer}|{subject}", str(name)[:200], roles, practitioner_reference(claims.get("fhirUser")))


def practitioner_reference(fhir_user: object) -> str:
    """``Practitioner/x`` from a ``fhirUser`` claim (relative, or an absolute URL ending in it); "" otherwise."""
    if not isinstance(fhir_user, str):
        return ""
    match = _PRACTITIONER.search(fhir_user.split("?")[0].split("#")[0])
    return match.group(1) if match else ""


# ---- the relying party ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A prepared authentication request: the URL to send the browser to and what to keep until the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a code exchange: the user, and the access token to forward to reporting (never logged)."""

    user: User
    access_token: str | None
    access_token_expires_at: float | None


class OidcClient:
    """An OpenID Connect relying party for one issuer (authorization code flow with PKCE S256)."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        http: httpx.AsyncClient,
        client_secret: str | None = None,
        scopes: str = "openid profile",
        roles_claim: str = "roles",
        timeout_s: float = 10.0,
        discovery_ttl_s: float = 3600.0,
        jwks_refetch_interval_s: float = 30.0,
        leeway_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer.startswith(("https://", "http://")):
            raise ValueError("the issuer is an http(s) URL")
        if "openid" not in scopes.split():
            raise ValueError("the scopes must include openid (Core §3.1.2.1)")
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._http = http
        self._secret = client_secret
        self._scopes = scopes
        self._roles_claim = roles_claim
        self._timeout = timeout_s
        self._discovery_ttl = discovery_ttl_s
        self._refetch_interval = jwks_refetch_interval_s
        self._leeway = leeway_s
        self._clock = clock
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: jwt.PyJWKSet | None = None
        self._keys_fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def metadata(self) -> ProviderMetadata:
        """The provider's metadata, from discovery (cached for ``discovery_ttl_s``)."""
        async with self._lock:
            if self._metadata is not None and self._clock() - self._metadata[0] < self._discovery_ttl:
                return self._metadata[1]
            document = await self._get_json(f"{self.issuer}/.well-known/openid-configuration", "configuration")
            metadata = ProviderMetadata.from_document(document, issuer=self.issuer)
            if metadata.code_challenge_methods_supported and "S256" not in metadata.code_challenge_methods_supported:
                raise OidcError("the provider does not support PKCE S256")
            self._metadata = (self._clock(), metadata)
            return metadata

    async def authorization_request(self) -> AuthorizationRequest:
        """A fresh authentication request (Core §3.1.2.1) with ``state``, ``nonce`` and an S256 code challenge."""
        metadata = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), new_code_verifier()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self._scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge_s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return AuthorizationRequest(f"{metadata.authorization_endpoint}{separator}{query}", state, nonce, verifier)

    async def exchange_code(self, *, code: str, code_verifier: str, nonce: str) -> SignIn:
        """Redeem an authorization code (Core §3.1.3.1, RFC 7636 §4.5), verify the ID token, map the user."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        auth: httpx.BasicAuth | None = None
        if self._secret:
            auth = httpx.BasicAuth(self.client_id, self._secret)  # client_secret_basic (RFC 6749 §2.3.1)
        else:
            form["client_id"] = self.client_id  # a public client (RFC 6749 §4.1.3)
        try:
            response = await self._http.post(
                metadata.token_endpoint,
                data=form,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise OidcError(f"the token endpoint is unreachable ({type(exc).__name__})") from None
        body = _json_object(response)
        if response.status_code != 200:
            error = body.get("error") if body else None
            detail = f" {error[:64]}" if isinstance(error, str) else ""
            raise OidcError(f"the token endpoint answered HTTP {response.status_code}{detail}")
        if body is None:
            raise OidcError("the token response is not a JSON object")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise OidcError("the token response is not a bearer token response")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token response has no ID token")
        claims = await self.verify(id_token, nonce=nonce)
        access_token = body.get("access_token")
        expires_in = body.get("expires_in")
        expires_at = self._clock() + float(expires_in) if isinstance(expires_in, int | float) else None
        return SignIn(
            user=user_from_claims(claims, roles_claim=self._roles_claim),
            access_token=access_token if isinstance(access_token, str) and access_token else None,
            access_token_expires_at=expires_at,
        )

    async def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Verify an ID token against the provider's JWKS, refetching it once for an unknown ``kid``."""
        metadata = await self.metadata()
        keys = await self._jwks(metadata, refresh=False)
        check = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "nonce": nonce,
            "algorithms": metadata.id_token_signing_alg_values_supported,
            "leeway_s": self._leeway,
        }
        try:
            return verify_id_token(id_token, keys=keys, now=self._clock(), **check)  # type: ignore[arg-type]
        except UnknownKey:
            keys = await self._jwks(metadata, refresh=True)
            return verify_id_token(id_token, keys=keys, now=self._clock(), **check)  # type: ignore[arg-type]

    async def _jwks(self, metadata: ProviderMetadata, *, refresh: bool) -> jwt.PyJWKSet:
        async with self._lock:
            stale = self._keys is None or (refresh and self._clock() - self._keys_fetched_at >= self._refetch_interval)
            if stale:
                document = await self._get_json(metadata.jwks_uri, "JWKS")
                try:
                    self._keys = jwt.PyJWKSet.from_dict(document)
                except jwt.PyJWTError:
                    raise OidcError("the provider's JWKS holds no usable key") from None
                self._keys_fetched_at = self._clock()
            assert self._keys is not None
            return self._keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"}, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise OidcError(f"the provider's {what} is unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise OidcError(f"the provider's {what} answered HTTP {response.status_code}")
        body = _json_object(response)
        if body is None:
            raise OidcError(f"the provider's {what} is not a JSON object")
        return body


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
