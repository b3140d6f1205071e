"""The signed session cookie, its encrypted access token, the login state and the CSRF comparison."""

from __future__ import annotations

import base64
import json

import pytest

from radcds_worklist.adapters.sessions import SessionCodec, csrf_matches, safe_return_path
from radcds_worklist.domain.access import Role, User

ADA = User("https://idp.example.org|ada", "Dr Ada Lovelace", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
SECRET = "a-test-secret-of-sufficient-length"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def codec(clock) -> SessionCodec:
    return SessionCodec(secret=SECRET, max_age_s=3600, clock=clock)


def _payload(cookie: str) -> dict:
    body = cookie.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _with_payload(cookie: str, payload: dict) -> str:
    version, _, mac = cookie.split(".")
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{version}.{body}.{mac}"


def test_a_session_comes_back_from_its_cookie_with_user_csrf_and_access_token(codec):
    session = codec.issue(ADA, access_token="at-123", access_token_expires_at=1_800_000_300.0)
    back = codec.decode(codec.encode(session))
    assert back == session
    assert back is not None and back.user.can_sign and back.csrf_token == session.csrf_token


def test_every_sign_in_gets_a_new_csrf_token(codec):
    assert codec.issue(ADA).csrf_token != codec.issue(ADA).csrf_token


def test_a_cookie_whose_payload_was_altered_is_refused(codec):
    cookie = codec.encode(codec.issue(User("iss|vic", "Vic", frozenset({Role.VIEWER}), "Practitioner/vic")))
    payload = _payload(cookie) | {"roles": ["radiologist"]}  # a viewer making itself a radiologist
    assert codec.decode(_with_payload(cookie, payload)) is None


def test_a_cookie_with_another_users_id_is_refused(codec):
    cookie = codec.encode(codec.issue(ADA))
    assert codec.decode(_with_payload(cookie, _payload(cookie) | {"uid": "iss|ben"})) is None


def test_a_cookie_signed_with_another_secret_is_refused(codec, clock):
    other = SessionCodec(secret="another-secret-of-sufficient-length", max_age_s=3600, clock=clock)
    assert codec.decode(other.encode(other.issue(ADA))) is None


@pytest.mark.parametrize("value", [None, "", "garbage", "v1.x.y", "v2.a.b", "v1..", "v1.e30." + "A" * 43])
def test_a_malformed_cookie_is_no_session(codec, value):
    assert codec.decode(value) is None


def test_a_session_past_its_max_age_is_refused(codec, clock):
    cookie = codec.encode(codec.issue(ADA))
    clock.now += 3599
    assert codec.decode(cookie) is not None
    clock.now += 1
    assert codec.decode(cookie) is None


def test_the_access_token_is_encrypted_in_the_cookie(codec):
    cookie = codec.encode(codec.issue(ADA, access_token="eyJ-the-bearer-token"))
    assert "the-bearer-token" not in base64.urlsafe_b64decode(cookie.split(".")[1] + "==").decode()
    assert "eyJ-the-bearer-token" not in json.dumps(_payload(cookie))


def test_an_expired_access_token_is_not_handed_out(codec, clock):
    session = codec.issue(ADA, access_token="at", access_token_expires_at=clock.now + 60)
    assert session.access_token_valid(clock.now) == "at"
    assert session.access_token_valid(clock.now + 60) is None


def test_a_login_state_comes_back_and_cannot_pass_for_a_session(codec):
    state = codec.new_login_state(return_to="/studies/42", state="s", nonce="n", code_verifier="v" * 43)
    cookie = codec.encode_login_state(state)
    assert codec.decode_login_state(cookie) == state
    assert codec.decode(cookie) is None
    assert codec.decode_login_state(codec.encode(codec.issue(ADA))) is None


def test_a_login_state_expires_after_ten_minutes(codec, clock):
    cookie = codec.encode_login_state(codec.new_login_state(return_to="/"))
    clock.now += 600
    assert codec.decode_login_state(cookie) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/studies/1.2.3", "/studies/1.2.3"),
        ("/monitoring?model=chest_ctr", "/monitoring"),
        ("//evil.example.org/x", "/"),
        ("/\\evil.example.org", "/"),
        ("https://evil.example.org/", "/"),
        ("javascript:alert(1)", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_are_returned_to_after_sign_in(value, expected):
    assert safe_return_path(value) == expected


def test_csrf_tokens_match_only_exactly():
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches("abc", None)
    assert not csrf_matches("", "")


def test_cookies_are_httponly_lax_and_secure_with_the_host_prefix_when_configured(clock):
    plain = SessionCodec(secret=SECRET, max_age_s=3600, clock=clock).session_cookie
    secure = SessionCodec(secret=SECRET, max_age_s=3600, secure=True, clock=clock).session_cookie
    assert (plain.key, plain.httponly, plain.samesite, plain.secure) == ("radcds_session", True, "lax", False)
    assert (secure.key, secure.secure, secure.path) == ("__Host-radcds_session", True, "/")
    assert secure.max_age == 3600


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="16 characters"):
        SessionCodec(secret="short", max_age_s=60)


def _mac_variants(cookie: str) -> list[str]:
    version, body, mac = cookie.split(".")
    last = mac[-1]
    # 32 bytes are 43 base64url characters: the last carries 2 unused bits, so 4 characters decode alike.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = [c for c in alphabet if c != last and alphabet.index(c) >> 2 == alphabet.index(last) >> 2]
    return [
        f"{version}.{body}.",  # signature stripped
        f"{version}.{body}.{mac[:-2]}",  # truncated
        f"{version}.{body}.{mac}=",  # padded
        f"{version}.{body}.{mac[:20]}!{mac[20:]}",  # a character outside the alphabet inserted
        f"{version}.{body}.{mac[:-1]}{same_bytes[0]}",  # the last character's unused bits changed
        f"{version}.{body}.{mac.upper()}",
        f"none.{body}.",  # an unsigned version, as JWT's alg: none
        f"{version}.{body}.{mac}.{mac}",
        f"{version}.{body} .{mac}",
    ]


@pytest.mark.parametrize("variant", range(9))
def test_a_session_cookie_whose_mac_is_stripped_truncated_or_re_encoded_is_refused(codec, variant):
    cookie = codec.encode(codec.issue(ADA))
    assert codec.decode(cookie) is not None
    assert codec.decode(_mac_variants(cookie)[variant]) is None


def test_a_login_state_cookie_whose_mac_is_re_encoded_is_refused(codec):
    cookie = codec.encode_login_state(codec.new_login_state(return_to="/"))
    for variant in _mac_variants(cookie):
        assert codec.decode_login_state(variant) is None
