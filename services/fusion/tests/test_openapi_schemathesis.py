"""Schemathesis against the fusion service's own OpenAPI document (issue #15).

Every operation of ``/openapi.json`` (OpenAPI 3.1, as FastAPI serves it) gets requests generated from its
schema, sent in-process over ASGI, and each answer must not be a server error (RFC 9110 15.6: a 5xx means
the server failed, while malformed input must get a 4xx, an OperationOutcome for the FHIR paths, FHIR R4
3.1.0.4). The app is built as ``test_api.py`` builds it: SQLite, a recording publisher, no Kafka consumer;
one recommendation is recorded so that reads, searches and ``$cancel`` have something to find.

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
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import RecordingPublisher
from radcds_fusion.app import MIGRATION_CHAIN, FusionComponents, build_components, create_app
from radcds_fusion.settings import FusionSettings

from .test_api_hostile_input import recommend

pytestmark = pytest.mark.properties

EXAMPLES = 20 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples


def _components(scratch: Path) -> FusionComponents:
    config = FusionSettings(environment="test", data_dir=scratch, ehr_patient_identifier_system="urn:oid:1.2.3")
    engine = make_engine(sqlite_url(scratch / "fusion.db"))
    migrate(engine, chain=MIGRATION_CHAIN)
    return build_components(config, engine=engine, publisher=RecordingPublisher(), consume=False)


def _enrich(document: dict[str, Any], rec_id: str) -> None:
    """Tell schemathesis what the FHIR routes take.

    FastAPI declares ``{rec_id}`` with a free string, so generated reads and cancels would all be 404s; here it
    is the recorded recommendation or an unknown id. ``$cancel`` takes a JSON object (the Parameters resource,
    of any shape) under the FHIR media type too.
    """
    ids = {"type": "string", "enum": [rec_id, "unknown"]}
    for operations in document["paths"].values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "rec_id":
                    parameter["schema"] = ids
            if method == "post":
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }


# Loaded when the module is collected: schemathesis.pytest.from_fixture (its lazy loader) reads a private
# attribute that pytest 9 no longer has, so the schema cannot come from a fixture.
# Removed when the module is released (the end of the session); the schema needs it from collection on.
_SCRATCH_DIR = tempfile.TemporaryDirectory(prefix="fusion-schemathesis-", ignore_cleanup_errors=True)
_SCRATCH = Path(_SCRATCH_DIR.name)
_PARTS = _components(_SCRATCH)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_PARTS.settings, components=_PARTS))
_enrich(schema.raw_schema, recommend(_PARTS))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_requests_without_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
