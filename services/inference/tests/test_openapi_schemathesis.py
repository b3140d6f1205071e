"""Schemathesis against the inference service's own OpenAPI document (issue #15).

Inference's HTTP surface is its probes and metrics (``/healthz``, ``/readyz``, ``/metrics``); studies are
analysed from Kafka events and over gRPC (``proto/``, ``AnalyzeStudy``), which OpenAPI does not describe. Every
operation of ``/openapi.json`` gets requests generated from its schema, sent in-process over ASGI; each answer
must not be a server error (RFC 9110 15.6). ``/readyz`` is left out: with no Triton and no Kafka broker here it
answers 503, as a readiness probe must (``test_inference_service.py`` checks what it says). The app is built
from the real manifest of ``models/``; its components are never started (the ASGI transport runs the lifespan:
started, they would reach for Kafka and open the gRPC port, where an integration stack may be running).

Profiles (``conftest.py`` at the root): ``ci`` runs a short 20 examples per operation here;
``HYPOTHESIS_PROFILE=fuzz`` keeps its own count.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from radcds_inference.app import InferenceComponents, build_components, create_app
from radcds_inference.settings import InferenceSettings

pytestmark = pytest.mark.properties

EXAMPLES = 20 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples
ROOT = Path(__file__).resolve().parents[3]

# Loaded when the module is collected: schemathesis.pytest.from_fixture (its lazy loader) reads a private
# attribute that pytest 9 no longer has, so the schema cannot come from a fixture.


class _Unstarted(InferenceComponents):
    """The real components, with nothing to start or stop (the lifespan calls these)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


_SETTINGS = InferenceSettings(environment="test", model_repository=ROOT / "models")
_BUILT = build_components(_SETTINGS)
_COMPONENTS = _Unstarted(**{f.name: getattr(_BUILT, f.name) for f in dataclasses.fields(_BUILT)})
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_SETTINGS, components=_COMPONENTS)).exclude(
    path="/readyz"
)


def test_the_document_lists_the_probes_and_metrics_and_nothing_else() -> None:
    assert sorted(schema.raw_schema["paths"]) == ["/healthz", "/metrics", "/readyz"]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_requests_without_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
