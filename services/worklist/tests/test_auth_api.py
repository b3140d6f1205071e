"""Sign-in routes and the guards of pages and actions: development login, redirect or 401 without a session,
CSRF on every state-changing request, logout, the callback's state check."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from radcds_worklist.api.auth import (
    CsrfChecked,
    CsrfToken,
    CurrentUser,
    build_authenticator,
    install_auth,
)
from radcds_worklist.settings import WorklistSettings


def make_app(**settings) -> FastAPI:
    config = WorklistSettings(environment="test", **settings)
    app = FastAPI()
    http = httpx.AsyncClient()
    install_auth(app, build_authenticator(config, http=http))
    pages = APIRouter()

    @pages.get("/studies/{study_id}")
    def study(study_id: str, user: CurrentUser, csrf: CsrfToken) -> dict[str, str]:
        return {"user": user.id, "practitioner": user.practitioner, "csrf": csrf}

    @pages.get("/api/worklist")
    def worklist(user: CurrentUser) -> dict[str, str]:
        return {"user": user.id}

    @pages.post("/studies/{study_id}/accept", dependencies=[CsrfChecked])
    def accept(study_id: str, user: CurrentUser) -> dict[str, str]:
        return {"signed_by": user.practitioner}

    @pages.post("/studies/{study_id}/reject", dependencies=[CsrfChecked])
    async def reject(study_id: str, user: CurrentUser, request: Request) -> dict[str, str]:
        form = await request.form()  # the form the CSRF check read is still the route's
        return {"rejected_by": user.practitioner, "reason": str(form["reason"])}

    app.include_router(pages)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), follow_redirects=False, base_url="http://127.0.0.1:8086")


def sign_in(client: TestClient, login: str) -> str:
    form = client.get("/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    response = client.post("/login", data={"login": login, "csrf_token": csrf.group(1)})
    assert response.status_code == 303
    return str(client.get("/studies/1").json()["csrf"])


def test_the_development_form_lists_the_four_development_users(client):
    page = client.get("/login").text
    for login in ("dr-ada", "dr-ben", "vic", "ann"):
        assert f'name="login" value="{login}"' in page


def test_a_development_sign_in_gives_a_session_attributed_to_that_user(client):
    sign_in(client, "dr-ada")
    body = client.get("/studies/1").json()
    assert body["user"] == "development|dr-ada" and body["practitioner"] == "Practitioner/dr-ada"


def test_the_session_cookie_is_httponly_and_samesite_lax(client):
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    response = client.post("/login", data={"login": "vic", "csrf_token": csrf})
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "radcds_session=" in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_a_development_sign_in_without_the_forms_csrf_token_is_refused(client):
    client.get("/login")
    assert client.post("/login", data={"login": "dr-ada", "csrf_token": "forged"}).status_code == 403
    assert client.get("/studies/1").status_code == 303


def test_an_unknown_development_user_is_refused(client):
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"login": "mallory", "csrf_token": csrf}).status_code == 403


def test_a_page_without_a_session_redirects_to_sign_in_and_back(client):
    response = client.get("/studies/1.2.3")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fstudies%2F1.2.3"


def test_after_sign_in_the_user_returns_to_the_page_asked_for(client):
    form = client.get("/login", params={"next": "/studies/7"})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    response = client.post("/login", data={"login": "dr-ben", "csrf_token": csrf})
    assert response.headers["location"] == "/studies/7"


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/api/worklist", {}), ("/studies/1", {"HX-Request": "true"}), ("/studies/1", {"Accept": "application/json"})],
)
def test_an_api_or_xhr_request_without_a_session_gets_401_json(client, path, headers):
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "sign-in required"}


def test_a_post_without_a_csrf_token_is_refused(client):
    sign_in(client, "dr-ada")
    assert client.post("/studies/1/accept").status_code == 403


def test_a_post_with_a_wrong_csrf_token_is_refused(client):
    sign_in(client, "dr-ada")
    assert client.post("/studies/1/accept", headers={"X-CSRF-Token": "guess"}).status_code == 403


def test_a_post_with_the_sessions_csrf_token_in_the_header_is_accepted(client):
    csrf = sign_in(client, "dr-ada")
    response = client.post("/studies/1/accept", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and response.json() == {"signed_by": "Practitioner/dr-ada"}


def test_a_form_post_with_the_csrf_token_field_is_accepted_and_the_route_still_reads_its_form(client):
    csrf = sign_in(client, "dr-ada")
    response = client.post("/studies/1/reject", data={"csrf_token": csrf, "reason": "false-positive"})
    assert response.status_code == 200
    assert response.json() == {"rejected_by": "Practitioner/dr-ada", "reason": "false-positive"}


def test_another_sessions_csrf_token_is_refused(client):
    other = TestClient(client.app, follow_redirects=False, base_url="http://127.0.0.1:8086")
    their_token = sign_in(other, "dr-ben")
    sign_in(client, "dr-ada")
    assert client.post("/studies/1/accept", headers={"X-CSRF-Token": their_token}).status_code == 403


def test_a_post_from_another_origin_is_refused_even_with_the_token(client):
    csrf = sign_in(client, "dr-ada")
    response = client.post("/studies/1/accept", headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example.org"})
    assert response.status_code == 403


def test_a_post_without_a_session_is_refused(client):
    assert client.post("/studies/1/accept", headers={"Accept": "application/json"}).status_code == 401


def test_logout_needs_the_csrf_token_and_ends_the_session(client):
    csrf = sign_in(client, "dr-ada")
    assert client.post("/logout").status_code == 403
    assert client.get("/studies/1").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/studies/1").status_code == 303


def test_a_session_cookie_from_a_worklist_with_another_secret_is_refused():
    ours = TestClient(make_app(), follow_redirects=False, base_url="http://127.0.0.1:8086")
    theirs = TestClient(
        make_app(session_secret="another-session-secret-entirely"),
        follow_redirects=False,
        base_url="http://127.0.0.1:8086",
    )
    sign_in(theirs, "dr-ada")
    ours.cookies.update(theirs.cookies)
    assert ours.get("/studies/1").status_code == 303


def oidc_client_without_provider() -> TestClient:
    # Nothing listens on port 9 (discard): the provider is unreachable.
    app = make_app(auth_mode="oidc", oidc_issuer="http://127.0.0.1:9")
    return TestClient(app, follow_redirects=False, base_url="http://127.0.0.1:8086")


def test_in_oidc_mode_a_callback_without_the_kept_state_is_refused():
    client = oidc_client_without_provider()
    response = client.get("/auth/callback", params={"code": "c", "state": "forged"})
    assert response.status_code == 400
    assert client.get("/studies/1").status_code == 303


def test_in_oidc_mode_the_development_login_is_off_and_an_unreachable_provider_is_a_503():
    client = oidc_client_without_provider()
    assert client.post("/login", data={"login": "dr-ada"}).status_code == 404
    assert client.get("/login").status_code == 503


def test_development_mode_is_refused_in_production():
    with pytest.raises(ValueError, match="refused in production"):
        WorklistSettings(environment="production", auth_mode="development", session_secret="x" * 32)
