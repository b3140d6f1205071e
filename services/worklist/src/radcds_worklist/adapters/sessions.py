"""The signed session cookie, its CSRF token, and the short-lived login state.

**Session** (cookie ``radcds_session``; ``__Host-radcds_session`` with ``Secure`` when ``secure_cookies``): a
JSON payload (user id, name, roles, Practitioner, CSRF token, issued and expiry times) in base64url, followed by
its HMAC-SHA256 (RFC 2104, stdlib :mod:`hmac`) under a key derived from ``session_secret``; compared in constant
time, refused when tampered with, malformed or past its expiry (``session_max_age_s``, checked from the signed
payload, not from the cookie's ``Max-Age``). ``HttpOnly`` (scripts never read it) and ``SameSite=Lax`` (RFC 6265bis
§5.4.7: not sent on cross-site sub-requests and form POSTs, yet sent on the top-level redirect back from the
provider).

**Access token** (to forward to reporting, RFC 6750): kept in the same cookie, *encrypted* with AES-256-GCM
(NIST SP 800-38D; a key of its own derived from ``session_secret``, a random 96-bit nonce per cookie, the user id
as associated data), so that the token is readable neither by the browser nor by anything that sees the cookie,
and no server-side store is needed: the worklist stays stateless across replicas and restarts, and a session
ends with its cookie. Its expiry travels with it.

**CSRF** (OWASP CSRF Prevention Cheat Sheet, "Synchronizer Token Pattern"): each session carries a random
256-bit token, inside the signed cookie (so it is bound to that session and unforgeable); pages embed it and every
POST/PUT/PATCH/DELETE must present it as the form field ``csrf_token`` or the header ``X-CSRF-Token``, compared in
constant time.

**Login state** (cookie ``radcds_login``, 10 minutes): the ``state``, ``nonce``, PKCE ``code_verifier``, the
local path to return to and a pre-session CSRF token for the development login form, signed the same way under
another derived key: one kind of cookie can never pass for the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from radcds_worklist.domain.access import Role, User

SESSION_COOKIE = "radcds_session"
LOGIN_COOKIE = "radcds_login"
#: The transient login state lives this long (a sign-in at the provider takes less).
LOGIN_STATE_MAX_AGE_S = 600
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change state and so need the CSRF token (RFC 9110 §9.2.1: the others are safe).
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_COOKIE_CHARS = 4096
_VERSION = "v1"
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~/%]*$")


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session: who, its CSRF token, when it ends, and the access token for reporting."""

    user: User
    csrf_token: str
    issued_at: float
    expires_at: float
    access_token: str | None = None
    access_token_expires_at: float | None = None

    def access_token_valid(self, now: float) -> str | None:
        """The access token while it is valid, else None."""
        if self.access_token is None:
            return None
        if self.access_token_expires_at is not None and now >= self.access_token_expires_at:
            return None
        return self.access_token


@dataclass(frozen=True, slots=True)
class LoginState:
    """What the relying party keeps between the redirect to the provider and the callback (and the dev form)."""

    state: str
    nonce: str
    code_verifier: str
    return_to: str
    csrf_token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """The attributes of a cookie this module makes (for ``Response.set_cookie``)."""

    key: str
    max_age: int
    httponly: bool
    secure: bool
    samesite: str
    path: str = "/"


def safe_return_path(value: str | None) -> str:
    """A local path to return to after sign-in (never another site: no scheme, no ``//``); "/" otherwise.

    The query string is dropped: what the page needs is in its path, and no PHI rides in a URL.
    """
    if not value:
        return "/"
    path = value.split("?", 1)[0].split("#", 1)[0]
    return path if len(path) <= 512 and _LOCAL_PATH.match(path) else "/"


def csrf_matches(expected: str, presented: str | None) -> bool:
    """True when ``presented`` is the session's CSRF token (constant-time comparison)."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "replace"))


class SessionCodec:
    """Make and read the session and login-state cookies (signed with keys derived from ``secret``)."""

    def __init__(
        self,
        *,
        secret: str,
        max_age_s: int,
        secure: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret needs at least 16 characters")
        master = secret.encode("utf-8")
        self._session_key = _derive(master, b"radcds-worklist session cookie v1")
        self._login_key = _derive(master, b"radcds-worklist login state v1")
        self._aead = AESGCM(_derive(master, b"radcds-worklist access token v1"))
        self._max_age = max_age_s
        self._secure = secure
        self._clock = clock

    # ---- cookie attributes --------------------------------------------------------------
    @property
    def session_cookie(self) -> CookieOptions:
        """Attributes of the session cookie (``__Host-`` prefixed when Secure: RFC 6265bis §4.1.3.2)."""
        key = f"__Host-{SESSION_COOKIE}" if self._secure else SESSION_COOKIE
        return CookieOptions(key, self._max_age, True, self._secure, "lax")

    @property
    def login_cookie(self) -> CookieOptions:
        """Attributes of the login-state cookie."""
        key = f"__Host-{LOGIN_COOKIE}" if self._secure else LOGIN_COOKIE
        return CookieOptions(key, LOGIN_STATE_MAX_AGE_S, True, self._secure, "lax")

    # ---- sessions -----------------------------------------------------------------------
    def issue(
        self, user: User, *, access_token: str | None = None, access_token_expires_at: float | None = None
    ) -> Session:
        """A new session for ``user`` with a fresh CSRF token (a new one at every sign-in: no fixation)."""
        now = self._clock()
        return Session(
            user=user,
            csrf_token=secrets.token_urlsafe(32),
            issued_at=now,
            expires_at=now + self._max_age,
            access_token=access_token,
            access_token_expires_at=access_token_expires_at,
        )

    def encode(self, session: Session) -> str:
        """The cookie value of ``session``."""
        payload: dict[str, Any] = {
            "uid": session.user.id,
            "name": session.user.name,
            "roles": sorted(r.value for r in session.user.roles),
            "prac": session.user.practitioner,
            "csrf": session.csrf_token,
            "iat": int(session.issued_at),
            "exp": int(session.expires_at),
        }
        if session.access_token is not None:
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, session.access_token.encode("utf-8"), session.user.id.encode())
            payload["at"] = _b64(nonce + sealed)
            if session.access_token_expires_at is not None:
                payload["atexp"] = int(session.access_token_expires_at)
        value = _sign(self._session_key, payload)
        if len(value) > _MAX_COOKIE_CHARS:
            raise ValueError("the session does not fit in a cookie")
        return value

    def decode(self, value: str | None) -> Session | None:
        """The session of a cookie value; None when absent, tampered with, malformed or expired."""
        payload = _verify(self._session_key, value)
        if payload is None:
            return None
        try:
            expires_at = float(payload["exp"])
            if self._clock() >= expires_at:
                return None
            user = User(
                id=str(payload["uid"]),
                name=str(payload["name"]),
                roles=frozenset(Role(r) for r in payload["roles"]),
                practitioner=str(payload["prac"]),
            )
            access_token = None
            if "at" in payload:
                sealed = base64.urlsafe_b64decode(_pad(str(payload["at"])))
                access_token = self._aead.decrypt(sealed[:12], sealed[12:], user.id.encode()).decode("utf-8")
            return Session(
                user=user,
                csrf_token=str(payload["csrf"]),
                issued_at=float(payload["iat"]),
                expires_at=expires_at,
                access_token=access_token,
                access_token_expires_at=float(payload["atexp"]) if "atexp" in payload else None,
            )
        except (KeyError, TypeError, ValueError, InvalidTag, binascii.Error):
            return None

    # ---- login state --------------------------------------------------------------------
    def new_login_state(
        self, *, return_to: str, state: str = "", nonce: str = "", code_verifier: str = ""
    ) -> LoginState:
        """A login state (the OpenID request's values, or none for the development form) with a CSRF token."""
        return LoginState(
            state=state,
            nonce=nonce,
            code_verifier=code_verifier,
            return_to=safe_return_path(return_to),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self._clock() + LOGIN_STATE_MAX_AGE_S,
        )

    def encode_login_state(self, login: LoginState) -> str:
        """The cookie value of a login state."""
        payload = {
            "state": login.state,
            "nonce": login.nonce,
            "cv": login.code_verifier,
            "ret": login.return_to,
            "csrf": login.csrf_token,
            "exp": int(login.expires_at),
        }
        return _sign(self._login_key, payload)

    def decode_login_state(self, value: str | None) -> LoginState | None:
        """The login state of a cookie value; None when absent, tampered with or expired."""
        payload = _verify(self._login_key, value)
        if payload is None:
            return None
        try:
            login = LoginState(
                state=str(payload["state"]),
                nonce=str(payload["nonce"]),
                code_verifier=str(payload["cv"]),
                return_to=safe_return_path(str(payload["ret"])),
                csrf_token=str(payload["csrf"]),
                expires_at=float(payload["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return login if self._clock() < login.expires_at else None


def _derive(master: bytes, label: bytes) -> bytes:
    # One key per purpose from the one configured secret (HMAC-SHA256 as a PRF, as in HKDF-Expand, RFC 5869 §2.3).
    return hmac.new(master, label, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pad(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    mac = hmac.new(key, f"{_VERSION}.{body}".encode("ascii"), hashlib.sha256).digest()
    return f"{_VERSION}.{body}.{_b64(mac)}"


def _verify(key: bytes, value: str | None) -> dict[str, Any] | None:
    if not value or len(value) > _MAX_COOKIE_CHARS:
        return None
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        return None
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), hashlib.sha256).digest()
    # The MAC is compared as the exact text we issue: base64 decoding is lenient (it skips characters outside the
    # alphabet and ignores the unused bits of the last one), which would let altered cookies pass as the same.
    if not hmac.compare_digest(_b64(expected).encode("ascii"), parts[2].encode("utf-8", "replace")):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(_pad(parts[1])))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None
