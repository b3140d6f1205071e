"""referral over real HTTP with a signed JWT, and its consultation event on real Kafka."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from radcds.domain.events import ORDER_EVALUATED
from radcds_devstack import scenarios
from radcds_devstack.demo import call_referral, wait_for_event
from radcds_devstack.devkeys import sign_client_jwt

from .helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_order_sign_rating_is_published_as_an_order_evaluated_event(stack):
    response = call_referral(stack, scenarios.low_risk_minor_head_injury())
    ext = {e["url"].rsplit("/", 1)[-1]: e for e in response["systemActions"][0]["resource"]["extension"]}
    consult = ext["pama-rating-consult-id"]["valueUri"]
    event = wait_for_event(stack, ORDER_EVALUATED.topic, consult)
    assert event["type"] == ORDER_EVALUATED.type
    payload = event["payload"]
    assert payload["rating"] == "not-appropriate"
    assert payload["ruleId"] == "canadian-ct-head"
    assert payload["orderId"] == "draft-ct-head"
    assert payload["cardUuid"] == response["cards"][0]["uuid"]
    (record,) = [r for r in read_topic(stack, ORDER_EVALUATED.topic) if dict(r.headers)["ce_id"] == consult.encode()]
    assert record.key == b"draft-ct-head"


def test_unsigned_call_is_refused_with_a_bare_401(stack):
    url = f"http://{stack.host}:{stack.ports.referral}/cds-services/radcds-imaging-order-sign"
    response = httpx.post(url, json=scenarios.low_risk_minor_head_injury(), timeout=10)
    assert response.status_code == 401 and response.content == b""
    assert response.headers["www-authenticate"] == "Bearer"  # RFC 6750 3.1: no token sent, no error code


def _signed_headers(stack, url: str) -> dict[str, str]:
    key_path, issuers_path = stack.dev_issuer()
    issuer = json.loads(issuers_path.read_text())[0]
    kid = issuer["jwks"]["keys"][0]["kid"]
    return {"Authorization": "Bearer " + sign_client_jwt(key_path.read_bytes(), kid=kid, iss=issuer["iss"], aud=url)}


def test_token_for_another_endpoint_is_refused_with_an_invalid_token_challenge(stack):
    base = f"http://{stack.host}:{stack.ports.referral}/cds-services"
    response = httpx.get(base, headers=_signed_headers(stack, base + "/radcds-imaging-order-sign"), timeout=10)
    assert response.status_code == 401 and response.content == b""
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'  # RFC 6750 3.1, no detail


def test_accepted_feedback_without_accepted_suggestions_is_a_400_operation_outcome(stack):
    card = call_referral(stack, scenarios.low_risk_minor_head_injury())["cards"][0]
    url = f"http://{stack.host}:{stack.ports.referral}/cds-services/radcds-imaging-order-sign/feedback"
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-28T10:00:00Z"}]}
    response = httpx.post(url, json=feedback, headers=_signed_headers(stack, url), timeout=10)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and "acceptedSuggestions" in outcome["issue"][0]["diagnostics"]


def test_two_http_workers_on_a_fresh_database_start_and_keep_serving(stack, tmp_path):
    # RADCDS_REFERRAL_HTTP_WORKERS=2 on an empty SQLite database: each worker used to migrate at start-up, and
    # in `make bench` of 2026-12-02 they raced on the same DDL ("table already exists"), so uvicorn stopped the
    # whole service. The parent now migrates once before starting the workers. The race depends on timing (this
    # test did not reproduce it without the fix); it checks that two workers start and serve.
    import subprocess
    import sys
    import time

    from radcds_devstack.testing import free_port

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RADCDS_")},
        **stack.service_env("referral"),
        "RADCDS_REFERRAL_HTTP_PORT": str(port),
        "RADCDS_REFERRAL_DATA_DIR": str(tmp_path / "data"),
        "RADCDS_REFERRAL_DATABASE_URL": f"sqlite:///{tmp_path / 'referral.db'}",
        "RADCDS_REFERRAL_TRACE_FILE": str(tmp_path / "traces.jsonl"),
        "RADCDS_REFERRAL_PUBLIC_BASE_URL": f"http://{stack.host}:{port}",
        "RADCDS_REFERRAL_HTTP_WORKERS": "2",
    }
    log = (tmp_path / "referral.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "radcds_referral"], env=env, stdout=log, stderr=log)
    try:
        url = f"http://{stack.host}:{port}/cds-services/radcds-imaging-order-sign"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://{stack.host}:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.5)
        assert ready, (tmp_path / "referral.log").read_text()[-2000:]
        answers = [
            httpx.post(
                url, json=scenarios.low_risk_minor_head_injury(), headers=_signed_headers(stack, url), timeout=10
            )
            for _ in range(8)
        ]
        assert [a.status_code for a in answers] == [200] * 8
        assert process.poll() is None, (tmp_path / "referral.log").read_text()[-2000:]
        assert "Application startup failed" not in (tmp_path / "referral.log").read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
