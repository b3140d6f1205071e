"""Schemathesis against the referral service's own OpenAPI document (issue #15).

Every operation of ``/openapi.json`` gets requests generated from its schema, sent in-process over ASGI with
a valid CDS Client JWT (CDS Hooks 2.0 "Trusting CDS Clients") for the generated path, so they reach the
handlers; each answer must not be a server error (RFC 9110 15.6): malformed input gets a 4xx, for a hook
call the CDS Hooks 2.0 400. The app is built as ``test_cds_hooks_api.py`` builds it: SQLite, a recording
publisher, a dev issuer.

Profiles (``conftest.py`` at the root): ``ci`` runs a short 20 examples per operation here, since each is a
full request; ``HYPOTHESIS_PROFILE=fuzz`` keeps its own count.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from radcds_devstack.devkeys import sign_client_jwt, write_dev_issuer
from radcds_devstack.testing import RecordingPublisher
from radcds_referral.app import build_components, create_app
from radcds_referral.settings import ReferralSettings

pytestmark = pytest.mark.properties

EXAMPLES = 20 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples
ISS = "https://ehr.example.org/cds-client"
BASE = "http://testserver"

# Loaded when the module is collected: schemathesis.pytest.from_fixture (its lazy loader) reads a private
# attribute that pytest 9 no longer has, so the schema cannot come from a fixture.
# Removed when the module is released (the end of the session); the schema needs it from collection on.
_SCRATCH_DIR = tempfile.TemporaryDirectory(prefix="referral-schemathesis-", ignore_cleanup_errors=True)
_SCRATCH = Path(_SCRATCH_DIR.name)
_KEY_PATH, _ISSUERS = write_dev_issuer(_SCRATCH / "issuer", ISS)
_KEY = _KEY_PATH.read_bytes()
_KID = json.loads(_ISSUERS.read_text())[0]["jwks"]["keys"][0]["kid"]
_SETTINGS = ReferralSettings(trusted_issuers_file=_ISSUERS, data_dir=_SCRATCH / "data", public_base_url=BASE)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_SETTINGS, components=build_components(_SETTINGS, publisher=RecordingPublisher()))
)


def _bearer(path: str) -> str:
    return "Bearer " + sign_client_jwt(_KEY, kid=_KID, iss=ISS, aud=BASE + path)


def _enrich(document: dict[str, Any], discovery: dict[str, Any]) -> None:
    """Tell schemathesis what the generic routes take, from the service's own discovery (CDS Hooks 2.0).

    FastAPI declares ``{service_id}`` with a free string and the hook and feedback calls with no body, so
    generated requests would all be 404s. Here ``service_id`` is one of the discovered services (an unknown
    one is a plain 404) and each POST takes a JSON object.
    """
    ids = {"enum": [service["id"] for service in discovery["services"]]}
    for operations in document["paths"].values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "service_id":
                    parameter["schema"] = ids
            if method == "post":
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }


_enrich(
    schema.raw_schema,
    TestClient(schema.app).get("/cds-services", headers={"Authorization": _bearer("/cds-services")}).json(),
)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_requests_without_a_server_error(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": _bearer(case.formatted_path)}
    case.call_and_validate(checks=[not_a_server_error])
