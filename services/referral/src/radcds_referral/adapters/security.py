"""Authentication of CDS Clients by their signed JWT (CDS Hooks 2.0, "Trusting CDS Clients").

Every call from a CDS Client (the EHR), discovery included, carries ``Authorization: Bearer <JWT>``.
:class:`CdsClientAuthenticator` checks it:

* header: ``alg`` is ES384 or RS384 (never ``none``, HMAC or anything else), ``kid`` names the key,
  ``typ`` if present is ``JWT``, ``jku`` if present is on the issuer's allowlist; no ``crit``;
* the unverified ``iss`` is a configured :class:`TrustedIssuer`; its keys come from a static JWKS or
  from its JWKS URL, cached for ``jwks_ttl_s`` and refetched once on an unknown ``kid`` (key rotation),
  at most every :data:`JWKS_REFETCH_MIN_INTERVAL_S` seconds per key source;
* the signature, with PyJWT and only the key type that the ``alg`` calls for;
* claims: ``iss``, ``aud`` (the exact endpoint URL called), ``exp``, ``iat`` (not in the future, not older
  than ``max_token_age_s``), ``nbf`` if present, and ``jti`` not seen before for that issuer (replay cache).

Failures raise :class:`Unauthorized`, whose message is for our logs; the HTTP layer answers a bare 401.
The token itself never appears in a message or a log record.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

__all__ = [
    "ALLOWED_ALGORITHMS",
    "JWKS_REFETCH_MIN_INTERVAL_S",
    "CdsClientAuthenticator",
    "TrustedIssuer",
    "Unauthorized",
    "VerifiedClient",
    "load_trusted_issuers",
]

logger = logging.getLogger(__name__)

#: The signing algorithms CDS Hooks 2.0 requires services to support; every other ``alg`` is refused.
ALLOWED_ALGORITHMS: frozenset[str] = frozenset({"ES384", "RS384"})
#: Least time between two fetches of one JWKS, so tokens with random ``kid`` values cannot cause a fetch storm.
JWKS_REFETCH_MIN_INTERVAL_S = 10.0

_MAX_AUTHORIZATION_CHARS = 16 * 1024
_MAX_JWKS_BYTES = 512 * 1024
_MAX_KID_CHARS = 256
_MAX_JTI_CHARS = 256
_DEV_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost"})
# The key type, and curve, each allowed alg needs (RFC 7518 §3.3, §3.4).
_KEY_TYPE_FOR_ALG: Mapping[str, tuple[str, str | None]] = {"ES384": ("EC", "P-384"), "RS384": ("RSA", None)}
_ISSUER_FIELDS = frozenset({"iss", "jwks_url", "jwks", "jku_allowlist"})


class Unauthorized(Exception):
    """The request does not carry a valid CDS Client JWT; the message says why (for logs, never for the client)."""


def _check_key_set_url(url: object, what: str) -> str:
    """Return ``url`` if it is https, or http on 127.0.0.1/localhost (development); raise ValueError otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _DEV_HTTP_HOSTS:
        return url
    raise ValueError(f"{what} {url!r} must be an https URL (http only on 127.0.0.1 or localhost, for development)")


def _key_from_jwk(jwk: object) -> tuple[str, jwt.PyJWK]:
    """Build a verification key from one JWK of a JWK Set; raise ValueError if it cannot verify ES384/RS384."""
    if not isinstance(jwk, dict):
        raise ValueError("is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("has no kid")
    kty = jwk.get("kty")
    algs = [alg for alg, (alg_kty, crv) in _KEY_TYPE_FOR_ALG.items() if alg_kty == kty and crv == jwk.get("crv", crv)]
    if not algs:
        raise ValueError(f"(kid {kid!r}) is not an RSA or P-384 EC key")
    alg = algs[0]
    if jwk.get("alg", alg) != alg:
        raise ValueError(f"(kid {kid!r}) is declared for alg {jwk.get('alg')!r}, not {alg}")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"(kid {kid!r}) is not a signature key (use {jwk.get('use')!r})")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError(f"(kid {kid!r}) does not allow 'verify' in key_ops")
    if "d" in jwk:
        raise ValueError(f"(kid {kid!r}) contains private key material")
    try:
        return kid, jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWTError as exc:
        raise ValueError(f"(kid {kid!r}) is not a valid {alg} key: {exc}") from None


def _parse_jwks(jwks: object) -> dict[str, tuple[jwt.PyJWK, ...]]:
    """Parse a JWK Set (RFC 7517 §5) into verification keys by ``kid``, skipping keys we cannot use."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError('JWK Set must be a JSON object with a "keys" array')
    keys: dict[str, tuple[jwt.PyJWK, ...]] = {}
    for index, jwk in enumerate(jwks["keys"]):
        try:
            kid, key = _key_from_jwk(jwk)
        except ValueError as exc:
            logger.debug("skipping JWK %d: %s", index, exc)
            continue
        keys[kid] = (*keys.get(kid, ()), key)
    return keys


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS Client we trust: its ``iss`` and where its public keys are (exactly one of a JWKS URL or a JWKS).

    ``jku_allowlist`` lists the exact JWK Set URLs a token header's ``jku`` may name for this issuer.
    """

    iss: str
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    jku_allowlist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.iss, str) or not self.iss:
            raise ValueError("iss must be a non-empty string")
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_url or jwks")
        if self.jwks_url is not None:
            _check_key_set_url(self.jwks_url, "jwks_url")
        if self.jwks is not None and not _parse_jwks(self.jwks):
            raise ValueError("jwks has no usable key (each needs a kid; P-384 EC or RSA; use 'sig')")
        if isinstance(self.jku_allowlist, str) or not isinstance(self.jku_allowlist, list | tuple):
            raise ValueError("jku_allowlist must be a list of URLs")
        for url in self.jku_allowlist:
            _check_key_set_url(url, "jku_allowlist entry")
        object.__setattr__(self, "jku_allowlist", tuple(self.jku_allowlist))


def load_trusted_issuers(path: Path) -> list[TrustedIssuer]:
    """Read trusted issuers from a JSON list of ``{"iss", "jwks_url" | "jwks", "jku_allowlist"?}`` objects."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, list) or not document:
        raise ValueError(f"{path}: must be a non-empty JSON list of trusted issuers")
    issuers: list[TrustedIssuer] = []
    seen: set[str] = set()
    for index, entry in enumerate(document):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a JSON object")
        if isinstance(entry.get("iss"), str):
            where += f" (iss {entry['iss']!r})"
        unknown = sorted(set(entry) - _ISSUER_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(_ISSUER_FIELDS))
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
        if "iss" not in entry:
            raise ValueError(f"{where}: missing iss")
        try:
            issuer = TrustedIssuer(
                iss=entry["iss"],
                jwks_url=entry.get("jwks_url"),
                jwks=entry.get("jwks"),
                jku_allowlist=entry.get("jku_allowlist", ()),
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if issuer.iss in seen:
            raise ValueError(f"{where}: iss is listed twice")
        seen.add(issuer.iss)
        issuers.append(issuer)
    return issuers


@dataclass(frozen=True)
class VerifiedClient:
    """The CDS Client a request came from, after its JWT was verified."""

    iss: str
    sub: str | None
    jti: str
    tenant: str | None
    expires_at: datetime


@dataclass
class _KeySource:
    """The keys of one issuer from one place (its static JWKS, its JWKS URL, or an allowlisted jku)."""

    url: str | None
    keys: dict[str, tuple[jwt.PyJWK, ...]] = field(default_factory=dict)
    fetched_at: float | None = None
    last_attempt: float | None = None
    fetch_lock: threading.Lock = field(default_factory=threading.Lock)


class _ReplayCache:
    """``(iss, jti)`` pairs seen, each kept until its token could no longer be accepted; bounded in size."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def add(self, iss: str, jti: str, *, keep_until: float, now: float) -> None:
        """Record a first use; raise Unauthorized on a replay or when the cache is full of live entries."""
        with self._lock:
            # An entry kept until exactly `now` still guards a token that is acceptable at `now`.
            while self._heap and self._heap[0][0] < now:
                until, old_iss, old_jti = heapq.heappop(self._heap)
                if self._until.get((old_iss, old_jti)) == until:
                    del self._until[(old_iss, old_jti)]
            if (iss, jti) in self._until:
                raise Unauthorized(f"jti {jti[:64]!r} of {iss!r} was already used (replay)")
            if len(self._until) >= self._max_size:
                logger.warning("CDS client replay cache is full (%d live entries); refusing new tokens", self._max_size)
                raise Unauthorized("replay cache full")
            self._until[(iss, jti)] = keep_until
            heapq.heappush(self._heap, (keep_until, iss, jti))


def _optional_number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthorized(f"claim {name} is not a number")
    return float(value)


def _number_claim(claims: Mapping[str, Any], name: str) -> float:
    value = _optional_number_claim(claims, name)
    if value is None:
        raise Unauthorized(f"claim {name} is missing")
    return value


def _optional_string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise Unauthorized(f"claim {name} is not a string")
    return value


class CdsClientAuthenticator:
    """Verify the ``Authorization: Bearer`` JWT of CDS Clients (CDS Hooks 2.0, "Trusting CDS Clients").

    Thread-safe: the JWKS and replay caches are locked. JWKS are fetched with ``http`` (its timeout applies),
    without following redirects.
    """

    def __init__(
        self,
        issuers: list[TrustedIssuer],
        *,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
        leeway_s: int = 30,
        max_token_age_s: int = 300,
        jwks_ttl_s: int = 300,
        replay_cache_size: int = 100_000,
    ) -> None:
        if leeway_s < 0 or max_token_age_s <= 0 or jwks_ttl_s < 0 or replay_cache_size <= 0:
            raise ValueError("leeway_s and jwks_ttl_s must be >= 0; max_token_age_s and replay_cache_size > 0")
        self._issuers: dict[str, TrustedIssuer] = {}
        self._sources: dict[tuple[str, str | None], _KeySource] = {}
        for issuer in issuers:
            if issuer.iss in self._issuers:
                raise ValueError(f"trusted issuer {issuer.iss!r} is listed twice")
            self._issuers[issuer.iss] = issuer
            if issuer.jwks is not None:
                self._sources[(issuer.iss, None)] = _KeySource(url=None, keys=_parse_jwks(issuer.jwks))
            for url in (issuer.jwks_url, *issuer.jku_allowlist):
                if url is not None:
                    self._sources.setdefault((issuer.iss, url), _KeySource(url=url))
        self._http = http
        self._clock = clock
        self._leeway_s = leeway_s
        self._max_token_age_s = max_token_age_s
        self._jwks_ttl_s = jwks_ttl_s
        self._state_lock = threading.Lock()
        self._replay = _ReplayCache(replay_cache_size)

    def authenticate(self, authorization: str | None, *, audience: str) -> VerifiedClient:
        """Verify an ``Authorization`` header value for a call to ``audience``, the endpoint URL; raise Unauthorized."""
        if not audience:
            raise ValueError("audience must be the endpoint URL that was called")
        token = self._bearer_token(authorization)
        header = self._checked_header(token)
        alg: str = header["alg"]
        kid: str = header["kid"]
        issuer = self._unverified_issuer(token)
        source = self._key_source(issuer, header.get("jku"))
        key = self._key(source, issuer=issuer.iss, kid=kid, alg=alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "enforce_minimum_key_length": True,
                    # Claims are checked below, against our injected clock.
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_jti": False,
                    "verify_sub": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthorized(f"signature does not verify with key {kid!r} of {issuer.iss!r}") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token rejected by the JWT library: {type(exc).__name__}: {exc}") from None
        return self._checked_claims(claims, issuer=issuer.iss, audience=audience)

    @staticmethod
    def _bearer_token(authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized("no Authorization header")
        if len(authorization) > _MAX_AUTHORIZATION_CHARS:
            raise Unauthorized("Authorization header too long")
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthorized("Authorization header is not 'Bearer <JWT>'")
        return parts[1]

    @staticmethod
    def _checked_header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed JWT: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            shown = repr(alg[:32]) if isinstance(alg, str) else type(alg).__name__
            raise Unauthorized(f"alg {shown} is not allowed (only {', '.join(sorted(ALLOWED_ALGORITHMS))})")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise Unauthorized("typ is not JWT")
        if "crit" in header or "b64" in header:
            raise Unauthorized("crit/b64 header parameters are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_CHARS:
            raise Unauthorized("kid is missing or invalid")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise Unauthorized("jku is not a string")
        return header

    def _unverified_issuer(self, token: str) -> TrustedIssuer:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed JWT payload: {exc}") from None
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            shown = repr(iss[:128]) if isinstance(iss, str) else "(none)"
            raise Unauthorized(f"iss {shown} is not a trusted issuer")
        return issuer

    def _key_source(self, issuer: TrustedIssuer, jku: str | None) -> _KeySource:
        if jku is not None:
            # The issuer's own jwks_url is allowlisted implicitly: naming it adds no trust.
            if jku not in issuer.jku_allowlist and jku != issuer.jwks_url:
                raise Unauthorized(f"jku {jku[:256]!r} is not allowlisted for {issuer.iss!r}")
            return self._sources[(issuer.iss, jku)]
        return self._sources[(issuer.iss, issuer.jwks_url)]

    def _key(self, source: _KeySource, *, issuer: str, kid: str, alg: str) -> jwt.PyJWK:
        """The key ``kid`` for ``alg`` from ``source``, fetching its JWKS when stale or (throttled) on a miss."""
        now = self._clock()
        with self._state_lock:
            keys, fresh = source.keys, self._is_fresh(source, now)
        key = _select_key(keys, kid, alg) if fresh else None
        if key is not None:
            return key
        if source.url is None:
            raise Unauthorized(f"no {alg} key {kid!r} in the static JWKS of {issuer!r}")
        with source.fetch_lock:  # one fetch per source at a time; waiters then see its result
            now = self._clock()
            with self._state_lock:
                keys, fresh, last_attempt = source.keys, self._is_fresh(source, now), source.last_attempt
                failed_last = last_attempt is not None and last_attempt != source.fetched_at
            if fresh:
                key = _select_key(keys, kid, alg)
                if key is not None:
                    return key
            throttled = last_attempt is not None and now - last_attempt < JWKS_REFETCH_MIN_INTERVAL_S
            if throttled and (fresh or failed_last):
                raise Unauthorized(f"no {alg} key {kid!r} for {issuer!r}; JWKS refetch throttled")
            with self._state_lock:
                source.last_attempt = now
            keys = self._fetch_jwks(source.url, issuer=issuer)
            with self._state_lock:
                source.keys, source.fetched_at = keys, now
        key = _select_key(keys, kid, alg)
        if key is None:
            raise Unauthorized(f"no {alg} key {kid!r} in the JWKS of {issuer!r}")
        return key

    def _is_fresh(self, source: _KeySource, now: float) -> bool:
        if source.url is None:
            return True
        return source.fetched_at is not None and now - source.fetched_at < self._jwks_ttl_s

    def _fetch_jwks(self, url: str, *, issuer: str) -> dict[str, tuple[jwt.PyJWK, ...]]:
        try:
            with self._http.stream(
                "GET", url, headers={"Accept": "application/jwk-set+json, application/json"}, follow_redirects=False
            ) as response:
                if response.status_code != httpx.codes.OK:
                    raise ValueError(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        raise ValueError(f"larger than {_MAX_JWKS_BYTES} bytes")
            keys = _parse_jwks(json.loads(body))
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            logger.warning("could not fetch the JWKS of CDS client %r from %s: %s", issuer, url, exc)
            raise Unauthorized(f"could not fetch the JWKS of {issuer!r} from {url}: {exc}") from None
        logger.info("fetched the JWKS of CDS client %r from %s: %d key id(s)", issuer, url, len(keys))
        return keys

    def _checked_claims(self, claims: dict[str, Any], *, issuer: str, audience: str) -> VerifiedClient:
        now = self._clock()
        leeway = self._leeway_s
        if claims.get("iss") != issuer:
            raise Unauthorized("iss changed between reading and verifying")
        aud = claims.get("aud")
        if isinstance(aud, str):
            aud_ok = aud == audience
        elif isinstance(aud, list):
            aud_ok = audience in [item for item in aud if isinstance(item, str)]
        else:
            aud_ok = False
        if not aud_ok:
            raise Unauthorized(f"aud does not name this endpoint {audience!r}")
        exp = _number_claim(claims, "exp")
        iat = _number_claim(claims, "iat")
        nbf = _optional_number_claim(claims, "nbf")
        if now >= exp + leeway:
            raise Unauthorized(f"token expired at {exp:.0f} (now {now:.0f}, leeway {leeway}s)")
        if iat > now + leeway:
            raise Unauthorized(f"iat {iat:.0f} is in the future (now {now:.0f}, leeway {leeway}s)")
        if now - iat > self._max_token_age_s + leeway:
            raise Unauthorized(f"token issued at {iat:.0f} is older than {self._max_token_age_s}s (now {now:.0f})")
        if nbf is not None and nbf > now + leeway:
            raise Unauthorized(f"token not valid before {nbf:.0f} (now {now:.0f}, leeway {leeway}s)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Unauthorized("claim jti is missing")
        if len(jti) > _MAX_JTI_CHARS:
            raise Unauthorized("claim jti is too long")
        sub = _optional_string_claim(claims, "sub")
        tenant = _optional_string_claim(claims, "tenant")
        try:
            expires_at = datetime.fromtimestamp(exp, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise Unauthorized("claim exp is out of range") from None
        # After now + the age limit the token is refused anyway, so the entry need not outlive that.
        keep_until = min(exp, iat + self._max_token_age_s) + leeway
        self._replay.add(issuer, jti, keep_until=keep_until, now=now)
        return VerifiedClient(iss=issuer, sub=sub, jti=jti, tenant=tenant, expires_at=expires_at)


def _select_key(keys: Mapping[str, tuple[jwt.PyJWK, ...]], kid: str, alg: str) -> jwt.PyJWK | None:
    for key in keys.get(kid, ()):
        if key.algorithm_name == alg:
            return key
    return None
