"""Sign-in, sign-out and the FastAPI dependencies that guard every page and action of the worklist.

Routes (:func:`auth_router`):

- ``GET /login``: with ``auth_mode=oidc`` a redirect to the provider's authorization endpoint (OpenID Connect Core
  1.0 §3.1.2.1, PKCE S256), the request's ``state``/``nonce``/``code_verifier`` kept in the signed login-state
  cookie; with ``auth_mode=development`` a small sign-in form listing the development users (refused in production
  by the settings). ``?next=/path`` names the local page to return to.
- ``POST /login`` (development only, CSRF-checked against the login state: no login CSRF): signs in as a
  development user.
- ``GET /auth/callback``: the redirect back from the provider (Core §3.1.2.5): ``state`` must equal the kept one,
  then the code is redeemed and the ID token verified (:class:`~radcds_worklist.adapters.oidc.OidcClient`); a new
  session cookie is issued (a new CSRF token: no session fixation).
- ``POST /logout`` (CSRF-checked): the session cookie is cleared.

Dependencies (module functions that find the installed :class:`Authenticator` in ``app.state.authenticator``; see
:func:`install_auth`): :func:`current_user` (pages: a 303 to ``/login?next=...``; API, htmx and other XHR
requests: 401 JSON), :func:`current_session`, :func:`require_csrf` (403 unless a POST/PUT/PATCH/DELETE carries
the session's token in the form field ``csrf_token`` or the header ``X-CSRF-Token``, and, when the browser sends
an ``Origin``, it is the worklist's own: OWASP CSRF Prevention Cheat Sheet) and :func:`csrf_token` (for
templates). The user comes from the session only: no form or query can name another signer.

Nothing here logs a token, a claim or a patient detail; sign-ins are logged by the user's stable id.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from radcds_worklist.adapters.oidc import DEVELOPMENT_USERS, OidcClient, OidcError, development_account
from radcds_worklist.adapters.sessions import (
    CSRF_FORM_FIELD,
    CSRF_HEADER,
    STATE_CHANGING_METHODS,
    CookieOptions,
    Session,
    SessionCodec,
    csrf_matches,
    safe_return_path,
)
from radcds_worklist.domain.access import User
from radcds_worklist.settings import WorklistSettings

log = logging.getLogger(__name__)

_MAX_FORM_BYTES = 64 * 1024


@dataclass
class Authenticator:
    """The worklist's sign-in: the session codec, and the OpenID relying party (None in development mode)."""

    settings: WorklistSettings
    sessions: SessionCodec
    oidc: OidcClient | None
    clock: Callable[[], float] = time.time

    @property
    def development(self) -> bool:
        """True in development mode (the development users' form instead of a provider)."""
        return self.oidc is None

    def session_of(self, request: Request) -> Session | None:
        """The request's valid session, or None."""
        return self.sessions.decode(request.cookies.get(self.sessions.session_cookie.key))

    def require_session(self, request: Request) -> Session:
        """The request's session; otherwise a redirect to sign-in (pages) or a 401 (API and XHR requests)."""
        session = self.session_of(request)
        if session is not None:
            return session
        if _wants_json(request):
            raise HTTPException(
                status_code=401,
                detail="sign-in required",
                headers={"WWW-Authenticate": 'Cookie realm="radcds-worklist"', "HX-Redirect": "/login"},
            )
        target = "/login"
        if request.method == "GET" and request.url.path not in ("/", "/login"):
            target += "?" + urlencode({"next": safe_return_path(request.url.path)})
        raise HTTPException(status_code=303, detail="sign-in required", headers={"Location": target})

    async def check_csrf(self, request: Request, expected: str) -> None:
        """403 unless a state-changing request carries ``expected`` and comes from our own origin."""
        if request.method.upper() not in STATE_CHANGING_METHODS:
            return
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin(self.settings.public_base_url):
            raise HTTPException(status_code=403, detail="cross-origin request refused")
        presented = request.headers.get(CSRF_HEADER)
        if presented is None:
            presented = await _form_field(request, CSRF_FORM_FIELD)
        if not csrf_matches(expected, presented):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token")

    def set_session(self, response: Response, session: Session) -> None:
        """Put ``session`` in its cookie."""
        _set_cookie(response, self.sessions.session_cookie, self.sessions.encode(session))

    def clear_cookie(self, response: Response, options: CookieOptions) -> None:
        """Remove a cookie this module set."""
        response.delete_cookie(
            options.key, path=options.path, secure=options.secure, httponly=options.httponly, samesite="lax"
        )


def build_authenticator(
    settings: WorklistSettings, *, http: httpx.AsyncClient, clock: Callable[[], float] = time.time
) -> Authenticator:
    """The authenticator ``settings`` describe (OpenID Connect against ``oidc_issuer``, or development)."""
    sessions = SessionCodec(
        secret=settings.session_secret.get_secret_value(),
        max_age_s=settings.session_max_age_s,
        secure=settings.secure_cookies,
        clock=clock,
    )
    oidc = None
    if settings.auth_mode == "oidc":
        secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
        oidc = OidcClient(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret,
            redirect_uri=f"{settings.public_base_url.rstrip('/')}/auth/callback",
            http=http,
            scopes=settings.oidc_scopes,
            roles_claim=settings.oidc_roles_claim,
            timeout_s=settings.request_timeout_s,
            clock=clock,
        )
    return Authenticator(settings=settings, sessions=sessions, oidc=oidc, clock=clock)


def install_auth(app: FastAPI, authenticator: Authenticator) -> None:
    """Make ``authenticator`` the one the dependencies use, and add the sign-in routes."""
    app.state.authenticator = authenticator
    app.include_router(auth_router(authenticator))


# ---- dependencies (the lead's pages use these) -----------------------------------------------


def _authenticator(request: Request) -> Authenticator:
    auth = getattr(request.app.state, "authenticator", None)
    if not isinstance(auth, Authenticator):
        raise RuntimeError("no Authenticator installed: call install_auth(app, authenticator)")
    return auth


def current_session(request: Request) -> Session:
    """The signed-in session (redirect to /login for pages, 401 for API/XHR requests)."""
    return _authenticator(request).require_session(request)


def current_user(session: Annotated[Session, Depends(current_session)]) -> User:
    """The signed-in user: the only identity any action may be attributed to."""
    return session.user


async def require_csrf(request: Request, session: Annotated[Session, Depends(current_session)]) -> None:
    """403 unless a POST/PUT/PATCH/DELETE carries the session's CSRF token (form ``csrf_token`` or ``X-CSRF-Token``)."""
    await _authenticator(request).check_csrf(request, session.csrf_token)


def csrf_token(session: Annotated[Session, Depends(current_session)]) -> str:
    """The session's CSRF token, for templates (a hidden ``csrf_token`` field, or htmx's ``hx-headers``)."""
    return session.csrf_token


CurrentSession = Annotated[Session, Depends(current_session)]
CurrentUser = Annotated[User, Depends(current_user)]
CsrfToken = Annotated[str, Depends(csrf_token)]
#: Put in a route's ``dependencies=[CsrfChecked]`` (or a router's) to check the CSRF token.
CsrfChecked = Depends(require_csrf)


# ---- routes ---------------------------------------------------------------------------------


def auth_router(authenticator: Authenticator) -> APIRouter:
    """``/login``, ``/auth/callback`` and ``/logout``."""
    router = APIRouter(tags=["auth"])
    sessions = authenticator.sessions

    @router.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request, next: str | None = None) -> Response:
        oidc = authenticator.oidc
        if oidc is None:
            state = sessions.new_login_state(return_to=next or "/")
            response: Response = _development_page(state.csrf_token)
        else:
            try:
                auth_request = await oidc.authorization_request()
            except OidcError as exc:
                log.warning("sign-in unavailable: %s", exc)
                return _failure_page("The identity provider cannot be reached.", 503)
            state = sessions.new_login_state(
                return_to=next or "/",
                state=auth_request.state,
                nonce=auth_request.nonce,
                code_verifier=auth_request.code_verifier,
            )
            response = RedirectResponse(auth_request.url, status_code=302, headers=_NO_STORE)
        _set_cookie(response, sessions.login_cookie, sessions.encode_login_state(state))
        return response

    @router.post("/login", include_in_schema=False)
    async def development_login(request: Request) -> Response:
        if authenticator.oidc is not None:
            raise HTTPException(status_code=404, detail="development login is off")
        state = sessions.decode_login_state(request.cookies.get(sessions.login_cookie.key))
        if state is None:
            return RedirectResponse("/login", status_code=303)
        if not csrf_matches(state.csrf_token, await _form_field(request, CSRF_FORM_FIELD)):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
        account = development_account(await _form_field(request, "login") or "")
        if account is None:
            return _failure_page("No such development user.", 403)
        return _signed_in(authenticator, account.user(), None, None, state.return_to)

    @router.get("/auth/callback", include_in_schema=False)
    async def callback(
        request: Request, code: str | None = None, state: str | None = None, error: str | None = None
    ) -> Response:
        oidc = authenticator.oidc
        if oidc is None:
            raise HTTPException(status_code=404, detail="no identity provider configured")
        kept = sessions.decode_login_state(request.cookies.get(sessions.login_cookie.key))
        if kept is None or not kept.state or not csrf_matches(kept.state, state):
            log.warning("sign-in refused: the callback's state is missing, expired or not ours")
            return _failure_page("The sign-in expired or was not started here. Please sign in again.", 400)
        if error is not None or not code:
            log.info("sign-in refused by the provider: %s", (error or "no code")[:64])
            return _failure_page("The identity provider did not sign you in.", 403)
        try:
            signed = await oidc.exchange_code(code=code, code_verifier=kept.code_verifier, nonce=kept.nonce)
        except OidcError as exc:
            log.warning("sign-in refused: %s", exc)
            return _failure_page("The sign-in could not be verified.", 403)
        if not signed.user.roles:
            log.warning("sign-in refused: user %s has no worklist role", signed.user.id)
            return _failure_page("Your account has no worklist role (radiologist, viewer or admin).", 403)
        return _signed_in(
            authenticator, signed.user, signed.access_token, signed.access_token_expires_at, kept.return_to
        )

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = authenticator.session_of(request)
        if session is not None:
            await authenticator.check_csrf(request, session.csrf_token)
            log.info("signed out: %s", session.user.id)
        response = RedirectResponse("/login", status_code=303)
        authenticator.clear_cookie(response, sessions.session_cookie)
        return response

    return router


# ---- helpers ----------------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store"}


def _signed_in(
    authenticator: Authenticator,
    user: User,
    access_token: str | None,
    access_token_expires_at: float | None,
    return_to: str,
) -> Response:
    session = authenticator.sessions.issue(
        user, access_token=access_token, access_token_expires_at=access_token_expires_at
    )
    log.info("signed in: %s (%s)", user.id, ", ".join(sorted(r.value for r in user.roles)))
    response = RedirectResponse(return_to, status_code=303, headers=_NO_STORE)
    authenticator.set_session(response, session)
    authenticator.clear_cookie(response, authenticator.sessions.login_cookie)
    return response


def _set_cookie(response: Response, options: CookieOptions, value: str) -> None:
    response.set_cookie(
        options.key,
        value,
        max_age=options.max_age,
        path=options.path,
        secure=options.secure,
        httponly=options.httponly,
        samesite="lax",
    )


def _wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.headers.get("hx-request") == "true":
        return True
    if request.headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return True
    accept = request.headers.get("accept", "")
    return ("application/json" in accept or "text/event-stream" in accept) and "text/html" not in accept


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _form_field(request: Request, name: str) -> str | None:
    """One field of a form body (``application/x-www-form-urlencoded`` or ``multipart/form-data``). Starlette parses
    the form once per request and keeps it, so the route reads the same form after this check."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > _MAX_FORM_BYTES:
        return None
    value = (await request.form()).get(name)
    return value if isinstance(value, str) else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · radcds worklist</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_NO_STORE)


def _failure_page(message: str, status: int) -> HTMLResponse:
    body = f'<p role="alert">{html.escape(message)}</p><p><a href="/login">Sign in</a></p>'
    return _page("Sign-in failed", body, status)


def _development_page(csrf: str) -> HTMLResponse:
    rows = "".join(
        '<li><form method="post" action="/login">'
        f'<input type="hidden" name="{CSRF_FORM_FIELD}" value="{html.escape(csrf)}">'
        f'<input type="hidden" name="login" value="{html.escape(a.login)}">'
        f'<button type="submit">{html.escape(a.name)}</button> '
        f"<span>{html.escape(', '.join(r.value for r in a.roles))} · {html.escape(a.login)}</span>"
        "</form></li>"
        for a in DEVELOPMENT_USERS
    )
    return _page(
        "Sign in (development)",
        "<p>Development login: choose a user. This form is refused in production.</p>"
        f'<ul class="development-users">{rows}</ul>',
    )
