"""The worklist's sign-in against a real OpenID Provider: npm oidc-provider 9.x (deploy/local/oidcprovider), which
the stack runs for the worklist.

The whole authorization code flow with PKCE (OpenID Connect Core 1.0 §3.1; RFC 7636) is driven by hand with httpx,
as a browser would: the worklist's ``/login`` redirects to the provider; the provider's login form (devInteractions:
the login name) and consent form are submitted; the provider redirects to the worklist's ``/auth/callback``, which
redeems the code with its verifier, verifies the ID token against the provider's JWKS and issues the session.
The worklist side is the auth router (``radcds_worklist.api.auth``) in an app in this process, addressed as the
stack's worklist (the redirect URI the provider knows); the provider and every HTTP call to it are real.

Also: an unknown account is refused, an authorization code is good once, an altered or forged ID token is
refused against the provider's real keys, and an altered session cookie is no session.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from radcds_devstack.stack import LocalStack
from radcds_worklist.adapters.oidc import DEVELOPMENT_USERS, OidcClient, OidcError, code_challenge_s256
from radcds_worklist.api.auth import CurrentUser, build_authenticator, install_auth
from radcds_worklist.settings import WorklistSettings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


@pytest.fixture
def worklist(stack: LocalStack) -> Iterator[TestClient]:
    """The worklist's auth routes, at the stack worklist's address, signing in against the stack's provider."""
    base = f"http://{stack.host}:{stack.ports.worklist}"
    settings = WorklistSettings(
        environment="test", auth_mode="oidc", oidc_issuer=stack.oidc_provider.issuer, public_base_url=base
    )
    app = FastAPI()
    install_auth(app, build_authenticator(settings, http=httpx.AsyncClient()))

    @app.get("/whoami")
    def whoami(user: CurrentUser) -> dict[str, Any]:
        return {"id": user.id, "name": user.name, "roles": sorted(user.roles), "practitioner": user.practitioner}

    with TestClient(app, base_url=base, follow_redirects=False) as client:
        yield client


def through_provider(browser: httpx.Client, url: str, login: str) -> httpx.URL:
    """Follow the provider's redirects and submit its login and consent forms; the redirect back to the client."""
    response = browser.get(url)
    for _ in range(10):
        if response.status_code in (302, 303):
            target = response.url.join(response.headers["location"])
            if target.path.endswith("/auth/callback"):
                return target
            response = browser.get(target)
            continue
        assert response.status_code == 200, response.text[:500]
        action = _ACTION.search(response.text)
        assert action is not None, response.text[:500]
        fields = dict(_HIDDEN.findall(response.text))
        if fields.get("prompt") == "login":
            fields |= {"login": login, "password": "any"}  # devInteractions: the password is not checked
        response = browser.post(response.url.join(action.group(1)), data=fields)
    raise AssertionError("the provider never redirected back")


def sign_in(worklist: TestClient, login: str, *, next_page: str = "/studies/1") -> httpx.Response:
    """The whole code flow for ``login``; the worklist's answer to the callback."""
    start = worklist.get("/login", params={"next": next_page})
    assert start.status_code == 302
    authorization = httpx.URL(start.headers["location"])
    query = dict(authorization.params)
    assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
    assert "code_verifier" not in query
    with httpx.Client(timeout=10) as browser:
        callback = through_provider(browser, str(authorization), login)
    assert callback.host == "127.0.0.1"
    return worklist.get(f"{callback.path}?{callback.query.decode()}")


@pytest.mark.parametrize("account", DEVELOPMENT_USERS, ids=lambda a: a.login)
def test_the_code_flow_against_the_real_provider_signs_in_each_development_user_with_their_roles(
    stack, worklist, account
):
    landed = sign_in(worklist, account.login)
    assert landed.status_code == 303 and landed.headers["location"] == "/studies/1"
    me = worklist.get("/whoami")
    assert me.status_code == 200
    assert me.json() == {
        "id": f"{stack.oidc_provider.issuer}|{account.login}",
        "name": account.name,
        "roles": sorted(r.value for r in account.roles),
        "practitioner": account.practitioner,
    }


def test_a_name_that_is_no_development_account_is_refused_and_gives_no_session(worklist):
    landed = sign_in(worklist, "mallory")
    assert landed.status_code == 403
    assert worklist.get("/whoami", headers={"Accept": "application/json"}).status_code == 401


def test_an_authorization_code_is_good_only_once(worklist):
    start = worklist.get("/login")
    with httpx.Client(timeout=10) as browser:
        callback = through_provider(browser, start.headers["location"], "dr-ada")
    login_cookie = dict(worklist.cookies)
    assert worklist.get(f"{callback.path}?{callback.query.decode()}").status_code == 303
    # Replayed with the same login state (an attacker who kept the cookie): the provider refuses the used code.
    worklist.cookies.clear()
    worklist.cookies.update(login_cookie)
    assert worklist.get(f"{callback.path}?{callback.query.decode()}").status_code == 403


def test_an_altered_session_cookie_is_no_session(worklist):
    sign_in(worklist, "vic")
    cookie = worklist.cookies["radcds_session"]
    version, body, mac = cookie.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["roles"] = ["radiologist"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    worklist.cookies.set("radcds_session", f"{version}.{forged}.{mac}")
    assert worklist.get("/whoami", headers={"Accept": "application/json"}).status_code == 401


def _real_id_token(stack: LocalStack, login: str) -> tuple[str, str]:
    """An ID token the provider issued (the test as the client, redirect URI the stack's worklist)."""
    issuer = stack.oidc_provider.issuer
    redirect = f"http://{stack.host}:{stack.ports.worklist}/auth/callback"
    verifier, nonce = "v" * 20 + "erifier-of-the-forgery-test-43", "nonce-of-the-forgery-test"
    params = {
        "response_type": "code",
        "client_id": "radcds-worklist",
        "redirect_uri": redirect,
        "scope": "openid profile fhirUser",
        "state": "state-of-the-forgery-test",
        "nonce": nonce,
        "code_challenge": code_challenge_s256(verifier),
        "code_challenge_method": "S256",
    }
    with httpx.Client(timeout=10) as browser:
        callback = through_provider(browser, str(httpx.URL(f"{issuer}/auth", params=params)), login)
        code = parse_qs(urlsplit(str(callback)).query)["code"][0]
        token = browser.post(
            f"{issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": "radcds-worklist",
                "code_verifier": verifier,
            },
        )
    assert token.status_code == 200, token.text
    return str(token.json()["id_token"]), nonce


def _verify(stack: LocalStack, token: str, nonce: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            client = OidcClient(
                issuer=stack.oidc_provider.issuer,
                client_id="radcds-worklist",
                redirect_uri=f"http://{stack.host}:{stack.ports.worklist}/auth/callback",
                http=http,
            )
            return await client.verify(token, nonce=nonce)

    return asyncio.run(main())


def test_an_id_token_of_the_real_provider_verifies_and_an_altered_or_forged_one_is_refused(stack):
    token, nonce = _real_id_token(stack, "vic")
    assert _verify(stack, token, nonce)["roles"] == ["viewer"]

    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    promoted = base64.urlsafe_b64encode(json.dumps(claims | {"roles": ["radiologist"]}).encode()).rstrip(b"=")
    with pytest.raises(OidcError, match="not valid"):
        _verify(stack, f"{header}.{promoted.decode()}.{signature}", nonce)

    kid = jwt.get_unverified_header(token)["kid"]
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims | {"roles": ["radiologist"]}, own_key, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(OidcError, match="not valid"):
        _verify(stack, forged, nonce)

    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(OidcError, match="not accepted"):
        _verify(stack, unsigned, nonce)

    with pytest.raises(OidcError, match="nonce"):
        _verify(stack, token, "another-nonce")
