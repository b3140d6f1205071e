"""What the reporting service writes: US Core DiagnosticReport content, the readable report
(HTML and PDF), Provenance, and validation by fhir.resources (R4B), FHIRPath invariants (fhirpathpy)
and the independent npm ``fhir`` 4.12.0 validator."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models
from sqlalchemy import select

from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.fhir.resources import validate_resource
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.db.tables import fhir_resources
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.critical import CriticalResults
from radcds_reporting.use_cases.orders import store_order
from radcds_reporting.use_cases.signoff import ReportSignOff

from .conftest import ROOT, STUDY, findings_event

R4 = models["r4"]
#: FHIRPath invariants: US Core DiagnosticReport for Report and Note exchange (us-core-10 and the
#: profile's required elements) and FHIR R4 core constraints of the resources we write.
INVARIANTS: dict[str, dict[str, str]] = {
    "DiagnosticReport": {
        "us-core-10": "(status in ('partial' | 'preliminary' | 'final' | 'amended' | 'corrected' | 'appended'))"
        " implies effective.exists()",
        "category LP29684-5": "category.coding.where(system = 'http://loinc.org' and code = 'LP29684-5').exists()",
        "LOINC code": "code.coding.where(system = 'http://loinc.org').exists()",
        "subject is a Patient": "subject.reference.startsWith('Patient/')",
        "issued": "issued.exists()",
        "presentedForm html and pdf": "presentedForm.where(contentType = 'text/html').exists()"
        " and presentedForm.where(contentType = 'application/pdf').exists()",
        "att-1": "presentedForm.all(data.empty() or contentType.exists())",
        "result are Observations": "result.all(reference.startsWith('Observation/'))",
        "dom-3 no contained": "contained.empty()",
    },
    "Observation": {
        "obs-6": "dataAbsentReason.empty() or value.empty()",
        "coded": "code.coding.exists()",
        "value or reason": "value.exists() or dataAbsentReason.exists()",
        "UCUM units": "value.ofType(Quantity).all(system = 'http://unitsofmeasure.org' and code.exists())",
        "derivedFrom ImagingStudy": "derivedFrom.where(reference.startsWith('ImagingStudy/')).exists()",
        "us-core effective": "effective.exists()",
    },
    "Provenance": {
        "targets": "target.exists()",
        "agent who": "agent.all(who.exists())",
    },
    "Communication": {
        "about report": "about.where(reference.startsWith('DiagnosticReport/')).exists()",
        "recipient": "recipient.exists()",
        "stat": "priority = 'stat'",
    },
    "ServiceRequest": {
        "intent order": "intent = 'order'",
        "accession": "identifier.where(type.coding.code = 'ACSN').exists()",
        "prr-1": "orderDetail.empty() or code.exists()",
    },
}


@pytest.fixture
def stored(engine, clock):
    """Every resource one critical study produces, from order to sign-off and escalation."""
    store_order(
        engine=engine,
        order=OrderDetails(
            patient_id="PID-1",
            placer_order_number="P-1",
            accession_number="ACC-1",
            study_instance_uid=STUDY,
            code=Coding(codes.LOINC, "24725-4", "CT Head"),
            requester="Practitioner/dr-order",
            authored_on="2026-01-01T09:00:00Z",
        ),
    )
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
    )
    service.handle(findings_event("e1", STUDY + ".1.1", critical=True))
    service.handle(findings_event("e2", STUDY + ".1.2", reason="outside the validated envelope: colour image"))
    escalation = CriticalResults(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        ack_timeout=timedelta(minutes=30),
        escalation_recipient="Practitioner/on-call",
        clock=clock,
    )
    clock.advance(hours=1)
    assert len(escalation.escalate_overdue()) == 1
    with engine.connect() as conn:
        (dr,) = FhirRepository(conn).search("DiagnosticReport")[1]
    ReportSignOff(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), clock=clock
    ).update(
        report_id=dr["id"], patch=[{"op": "replace", "path": "/status", "value": "final"}], user="Practitioner/rad-1"
    )
    with engine.connect() as conn:
        rows = conn.execute(select(fhir_resources.c.content)).all()
    return [json.loads(r.content) for r in rows]


def _one(resources, rtype):
    found = [r for r in resources if r["resourceType"] == rtype]
    assert found, rtype
    return found


def test_every_stored_resource_validates_as_r4(stored):
    assert {r["resourceType"] for r in stored} == {
        "Patient",
        "ServiceRequest",
        "ImagingStudy",
        "Observation",
        "Provenance",
        "DiagnosticReport",
        "Communication",
        "Device",
        "Organization",
    }
    for resource in stored:
        validate_resource(resource)


def test_us_core_and_r4_invariants_hold_under_fhirpath(stored):
    failures = []
    for resource in stored:
        for name, expression in INVARIANTS.get(resource["resourceType"], {}).items():
            if evaluate(resource, expression, {}, R4) != [True]:
                failures.append(f"{resource['resourceType']}/{resource['id']}: {name}")
    assert failures == []


def test_readable_report_is_html_and_pdf_with_hash_disclaimer_models_and_reserved_sections(stored):
    (dr,) = _one(stored, "DiagnosticReport")
    forms = {f["contentType"]: f for f in dr["presentedForm"]}
    assert set(forms) == {"text/html", "application/pdf"}
    for form in forms.values():
        data = base64.b64decode(form["data"])
        assert form["size"] == len(data)
        assert form["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
        assert form["title"] == "Imaging report (final)"  # rendered again when the radiologist signed
    html = base64.b64decode(forms["text/html"]["data"]).decode()
    assert "Signed by Practitioner/rad-1" in html and "not for diagnostic use on their own" in html
    assert "head_ct_hyperdensity v1" in html
    assert "outside the validated envelope: colour image" in html
    for section in ("comparison", "recommendations", "missing-context"):
        assert f'data-section="{section}"' in html
    assert "CRITICAL" in html
    assert base64.b64decode(forms["application/pdf"]["data"]).startswith(b"%PDF-")


def test_signed_report_carries_interpreter_snomed_conclusion_code_and_final_results(stored):
    (dr,) = _one(stored, "DiagnosticReport")
    assert dr["status"] == "final"
    assert dr["resultsInterpreter"] == [{"reference": "Practitioner/rad-1"}]
    assert dr["conclusionCode"][0]["coding"][0] == {
        "system": codes.SNOMED_CT,
        "code": "1386000",
        "display": "Intracranial hemorrhage",
    }
    assert "CRITICAL RESULT" in dr["conclusion"] and "colour image" in dr["conclusion"]
    assert {o["status"] for o in _one(stored, "Observation")} == {"final"}


def test_each_ai_derived_resource_is_a_provenance_target_naming_model_inputs_and_rules(stored):
    provenances = _one(stored, "Provenance")
    targeted = {t["reference"].split("/_history")[0] for p in provenances for t in p["target"]}
    for resource in stored:
        if resource["resourceType"] in {"Observation", "DiagnosticReport"}:
            assert f"{resource['resourceType']}/{resource['id']}" in targeted
    ai = [p for p in provenances if p.get("policy")]
    assert all(any("ImagingStudy/" in e["what"]["reference"] for e in p["entity"]) for p in ai)
    assert any("head_ct_hyperdensity version 1" in a["who"]["display"] for p in ai for a in p["agent"])
    signing = [p for p in provenances if any(a["who"].get("reference") == "Practitioner/rad-1" for a in p["agent"])]
    assert len(signing) == 1


VALIDATOR_DIR = ROOT / "deploy" / "local" / "fhirvalidator"


@pytest.fixture(scope="session")
def npm_fhir_validator() -> Path:
    """The npm ``fhir`` 4.12.0 package, installed from the lock into .cache/fhirvalidator when missing."""
    target = ROOT / ".cache" / "fhirvalidator"
    if not (target / "node_modules" / "fhir").is_dir():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed")
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(VALIDATOR_DIR / name, target / name)
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=300
        )
    return target / "node_modules"


@pytest.mark.integration
@pytest.mark.validators
def test_npm_fhir_validator_accepts_every_stored_resource(stored, npm_fhir_validator):
    result = subprocess.run(
        ["node", str(VALIDATOR_DIR / "validate.js")],
        input=json.dumps(stored),
        capture_output=True,
        text=True,
        env={"NODE_PATH": str(npm_fhir_validator), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=True,
        timeout=120,
    )
    outcomes = json.loads(result.stdout)
    assert len(outcomes) == len(stored)
    errors = {f"{o['resourceType']}/{o['id']}": o["errors"] for o in outcomes if not o["valid"]}
    assert errors == {}


@pytest.mark.integration
@pytest.mark.validators
def test_npm_fhir_validator_rejects_a_broken_report(npm_fhir_validator):
    broken = {"resourceType": "DiagnosticReport", "id": "x", "status": "signed", "code": {"text": "x"}}
    result = subprocess.run(
        ["node", str(VALIDATOR_DIR / "validate.js")],
        input=json.dumps([broken]),
        capture_output=True,
        text=True,
        env={"NODE_PATH": str(npm_fhir_validator), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout)[0]["valid"] is False
