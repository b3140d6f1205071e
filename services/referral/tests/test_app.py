"""The composition root: one typed ReferralComponents, started and stopped by the app's lifespan."""

from __future__ import annotations

from fastapi.testclient import TestClient

from radcds_referral.app import build_components, create_app
from radcds_referral.settings import ReferralSettings

from .test_cds_hooks_api import BASE, RecordingPublisher


def test_lifespan_starts_the_outbox_relay_and_on_shutdown_stops_it_and_closes_the_http_client(tmp_path):
    settings = ReferralSettings(data_dir=tmp_path / "data", public_base_url=BASE)
    components = build_components(settings, publisher=RecordingPublisher())
    with TestClient(create_app(settings, components=components)) as client:
        assert components.started == ["relay"]
        ready = client.get("/readyz")
    assert ready.status_code == 503  # no trusted issuers configured
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok", "trusted_issuers": "not ready"}
    assert components.started == []
    assert components.fhir_http.is_closed
    assert components.kafka is None


def test_components_with_a_handed_in_publisher_and_no_trusted_issuers_are_kafka_ready_not_trust_ready(tmp_path):
    settings = ReferralSettings(data_dir=tmp_path / "data", public_base_url=BASE)
    components = build_components(settings, publisher=RecordingPublisher())
    assert components.kafka_ready() is True
    assert components.trust_ready() is False
    assert components.jwks_http is None
