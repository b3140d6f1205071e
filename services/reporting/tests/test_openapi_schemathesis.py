"""Schemathesis against the reporting service's own OpenAPI document (issue #15).

Every operation of ``/openapi.json`` (OpenAPI 3.1, as FastAPI serves it) gets requests generated from its
schema, sent in-process over ASGI, and each answer must not be a server error (RFC 9110 15.6: a 5xx means
the server failed, while malformed input must get a 4xx, an OperationOutcome for the FHIR paths, FHIR R4
3.1.0.4). The app is built as ``test_fhir_search.py`` builds it: SQLite, no MLLP listener, no consumer.

Profiles (``conftest.py`` at the root): ``ci`` runs a short 20 examples per operation here, since each is a
full request; ``HYPOTHESIS_PROFILE=fuzz`` keeps its own count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.app import build_components, create_app
from radcds_reporting.settings import ReportingSettings

pytestmark = pytest.mark.properties

EXAMPLES = 20 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples


def _app(scratch: Path) -> FastAPI:
    engine = make_engine(sqlite_url(scratch / "reporting.db"))
    migrate(engine, chain="radcds_reporting.db")
    config = ReportingSettings(data_dir=scratch, fhir_base_url="http://testserver/fhir", mllp_enabled=False)
    parts = build_components(config, engine=engine, publisher=RecordingPublisher(), consume=False)
    return create_app(config, components=parts)


def _enrich(document: dict[str, Any], capabilities: dict[str, Any]) -> None:
    """Tell schemathesis what the generic FHIR routes take, from the service's own CapabilityStatement.

    FastAPI declares ``/fhir/{resource_type}`` with a free string and no query or body, so generated requests
    would all be 404s for unknown types. Here ``resource_type`` is one of the served types (an unknown one is
    a plain 404), a search takes every declared search parameter and the common result parameters (FHIR R4 3.1.1.5.5),
    and update and patch take a JSON object or a JSON Patch array (3.1.0.4.3, 3.1.0.5.3).
    """
    resources = capabilities["rest"][0]["resource"]
    names = sorted({p["name"] for r in resources for p in r.get("searchParam", [])} | set(_RESULT_PARAMETERS))
    resource_type = {"enum": [r["type"] for r in resources]}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "resource_type":
                    parameter["schema"] = resource_type
            if path == "/fhir/{resource_type}" and method == "get":
                operation.setdefault("parameters", []).extend(
                    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in names
                )
            if path == "/fhir/{resource_type}/{resource_id}" and method in ("put", "patch"):
                media, body = (
                    ("application/fhir+json", {"type": "object"})
                    if method == "put"
                    else ("application/json-patch+json", {"type": "array", "items": {"type": "object"}})
                )
                operation["requestBody"] = {"required": True, "content": {media: {"schema": body}}}


_RESULT_PARAMETERS = ("_count", "_include", "_revinclude", "_sort", "_summary", "_elements", "_total", "_format")


# Loaded when the module is collected: schemathesis.pytest.from_fixture (its lazy loader) reads a private
# attribute that pytest 9 no longer has, so the schema cannot come from a fixture.
# Removed when the module is released (the end of the session); the schema needs it from collection on.
_SCRATCH_DIR = tempfile.TemporaryDirectory(prefix="reporting-schemathesis-", ignore_cleanup_errors=True)
_SCRATCH = Path(_SCRATCH_DIR.name)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(_SCRATCH))
_enrich(schema.raw_schema, TestClient(schema.app).get("/fhir/metadata").json())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_requests_without_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
