"""Every FHIR resource kind the reporting service stores, checked by the HAPI FHIR 8.8.0 instance validator.

The validator (``deploy/local/hapi-fhir-validator``: pom.xml from Maven Central, ValidatorServer.java)
runs in one JVM for this module. Each resource is produced by the real code path (order ->
findings -> critical-result escalation -> sign-off, on a migrated SQLite reporting database) and
every stored version is validated against base FHIR R4 4.0.1 and against the US Core profile
radcds claims for its type (CapabilityStatement ``supportedProfile``) in US Core 6.1.0 and 8.0.0,
whose StructureDefinitions come from HL7/US-Core (see the README beside them) and get their
snapshots generated when the validator loads them. Zero errors is the bar; the warnings left are
listed in docs/reporting.md. Negative controls show the validator still checks what we rely on.
"""

from __future__ import annotations

import copy
import itertools
import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds.adapters.kafka.codec import DecodedEvent, decode, encode
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack.testing import RecordingPublisher
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.api.fhir import capability_statement
from radcds_reporting.db.tables import fhir_resource_versions
from radcds_reporting.domain.service_request import OrderDetails
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.critical import CriticalResults
from radcds_reporting.use_cases.orders import store_order
from radcds_reporting.use_cases.signoff import ReportSignOff

pytestmark = [pytest.mark.integration, pytest.mark.validators]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "deploy" / "local" / "hapi-fhir-validator"
LIB = ROOT / ".cache" / "hapi-fhir-validator" / "lib"
US_CORE_VERSIONS = ("6.1.0", "8.0.0")
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
#: The US Core profile radcds claims per resource type (types without one are checked against base R4).
CLAIMED = {
    "Patient": US_CORE + "us-core-patient",
    "DiagnosticReport": US_CORE + "us-core-diagnosticreport-note",
    "Observation": US_CORE + "us-core-observation-clinical-result",
    "ServiceRequest": US_CORE + "us-core-servicerequest",
    "Provenance": US_CORE + "us-core-provenance",
    "Organization": US_CORE + "us-core-organization",
}
STUDY = "1.2.826.0.1.3680043.2.1125.77"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: A DICOM header's Patient and study modules (synthetic values invented for this test, no real person).
CONTEXT = StudyContext(
    patient_id="PID-HAPI-1",
    issuer_of_patient_id="HOSP",
    accession_number="ACC-HAPI-1",
    modality="CT",
    study_date="20260102",
    study_time="101500",
    study_description="CT HEAD WO CONTRAST",
    patient_name="DOE^JANE^Q^DR^III",
    patient_sex="F",
    patient_birth_date="19700101",
)
INTRACRANIAL_HEMORRHAGE = Coding(codes.SNOMED_CT, "1386000", "Intracranial hemorrhage")


class HapiValidator:
    """Client of ValidatorServer.java: one JSON request per line on stdin, one answer per line on stdout."""

    def __init__(self) -> None:
        args = [f"{v}={HARNESS / 'us-core' / v / 'resources'}" for v in US_CORE_VERSIONS]
        self._process = subprocess.Popen(
            ["java", "-Xss4m", "-cp", f"{LIB}/*", str(HARNESS / "ValidatorServer.java"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._ids = itertools.count()
        self.ready = json.loads(self._next_line())

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _next_line(self) -> str:
        # A generous guard against a hung JVM, not a timing assertion.
        line = self._lines.get(timeout=600)
        if not line:
            assert self._process.stderr is not None
            raise RuntimeError(f"the validator stopped: {self._process.stderr.read()[-4000:]}")
        return line

    def validate(self, resource: dict[str, Any], *, chain: str = "r4", profile: str | None = None) -> list[dict]:
        """The validator's messages for ``resource`` (severity, location, messageId, message)."""
        assert self._process.stdin is not None
        request_id = str(next(self._ids))
        request = {"id": request_id, "chain": chain, "profile": profile, "resource": resource}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = json.loads(self._next_line())
        assert answer["id"] == request_id
        assert "failure" not in answer, answer.get("failure")
        return list(answer["messages"])

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=60)


@pytest.fixture(scope="module")
def hapi() -> Iterator[HapiValidator]:
    """The HAPI FHIR 8.8.0 validator, one JVM for the module (jars from `make deps`)."""
    if shutil.which("java") is None or not (LIB / "hapi-fhir-validation-8.8.0.jar").is_file():
        pytest.fail("the HAPI FHIR validator is not installed: run `make deps` (Java and the Maven peer)")
    validator = HapiValidator()
    yield validator
    validator.close()


def _findings(event_id: str, sop: str, *, critical: bool = False, reason: str = "") -> DecodedEvent:
    """An ImagingFindingsProduced event as inference publishes it (encoded and decoded like Kafka's)."""
    measurements: tuple[Measurement, ...] = ()
    if not reason:
        measurements = (Measurement(codes.HYPERDENSE_MEAN_HU, 61.0, codes.UNIT_HOUNSFIELD),)
    analysis = ImageAnalysis(
        InstanceReference(STUDY, STUDY + ".1", sop, CT_IMAGE_STORAGE),
        CONTEXT,
        ModelIdentity("head_ct_hyperdensity", "1"),
        measurements=measurements,
        not_analysed_reason=reason,
        findings=(INTRACRANIAL_HEMORRHAGE,) if critical else (),
        critical=critical,
    )
    msg = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=event_id,
        source="/radcds/inference",
        subject=STUDY,
    )
    return decode(list(msg.headers.items()), None, msg.value)


@pytest.fixture(scope="module")
def stored_versions(tmp_path_factory) -> list[dict[str, Any]]:
    """Every version of every resource one critical CT head study leaves in the reporting database."""
    engine = make_engine(sqlite_url(tmp_path_factory.mktemp("hapi") / "reporting.db"))
    migrate(engine, chain="radcds_reporting.db")
    now = [datetime(2026, 1, 2, 12, 0, tzinfo=UTC)]
    clock = lambda: now[0]  # noqa: E731
    store_order(
        engine=engine,
        order=OrderDetails(
            patient_id=CONTEXT.patient_id,
            issuer_of_patient_id=CONTEXT.issuer_of_patient_id,
            placer_order_number="P-HAPI-1",
            placer_assigning_authority="EPIC",
            accession_number=CONTEXT.accession_number,
            study_instance_uid=STUDY,
            code=Coding(codes.LOINC, "24725-4", "CT Head"),
            requester="Practitioner/dr-order",
            authored_on="2026-01-01T09:00:00Z",
        ),
        now=now[0],
    )
    service = ReportingService(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        consumer_group="g",
        clock=clock,
    )
    service.handle(_findings("e1", STUDY + ".1.1", critical=True))
    service.handle(_findings("e2", STUDY + ".1.2", reason="outside the validated envelope: colour image"))
    now[0] += timedelta(hours=1)
    CriticalResults(
        engine=engine,
        relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"),
        ack_timeout=timedelta(minutes=30),
        escalation_recipient="Practitioner/on-call",
        clock=clock,
    ).escalate_overdue()
    with engine.connect() as conn:
        (dr,) = FhirRepository(conn).search("DiagnosticReport")[1]
    ReportSignOff(
        engine=engine, relay=OutboxRelay(engine, RecordingPublisher(), name="reporting-outbox"), clock=clock
    ).update(
        report_id=dr["id"], patch=[{"op": "replace", "path": "/status", "value": "final"}], user="Practitioner/rad-1"
    )
    with engine.connect() as conn:
        rows = conn.execute(select(fhir_resource_versions.c.content)).all()
    engine.dispose()
    return [json.loads(r.content) for r in rows]


def _errors(messages: list[dict]) -> list[str]:
    return [f"{m['location']}: {m['message']}" for m in messages if m["severity"] in {"error", "fatal"}]


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


def test_every_resource_kind_we_store_is_among_the_validated_versions(stored_versions):
    kinds = {r["resourceType"] for r in stored_versions}
    assert kinds == {
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
    statuses = {r["status"] for r in stored_versions if r["resourceType"] == "DiagnosticReport"}
    assert statuses == {"preliminary", "final"}


def test_every_stored_version_has_no_error_and_a_narrative_under_base_r4(hapi, stored_versions):
    failures = {}
    for resource in stored_versions:
        messages = hapi.validate(resource)
        problems = _errors(messages) + [m["message"] for m in messages if "dom-6" in m["messageId"]]
        if problems:
            failures[_key(resource)] = problems
    assert failures == {}


@pytest.mark.parametrize("version", US_CORE_VERSIONS)
def test_every_stored_version_has_no_error_against_the_us_core_profile_we_claim(hapi, stored_versions, version):
    failures = {}
    for resource in stored_versions:
        profile = CLAIMED.get(resource["resourceType"])
        if profile is None:
            continue
        errors = _errors(hapi.validate(resource, chain=version, profile=profile))
        if errors:
            failures[_key(resource)] = errors
    assert failures == {}


def _bundle(stored_versions: list[dict[str, Any]], *, profiles: bool) -> dict[str, Any]:
    """The current version of every resource in one collection Bundle, so references resolve inside it."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in stored_versions:
        key = (r["resourceType"], r["id"])
        if key not in latest or int(r["meta"]["versionId"]) > int(latest[key]["meta"]["versionId"]):
            latest[key] = copy.deepcopy(r)
    entries = []
    for (rtype, rid), resource in sorted(latest.items()):
        if profiles and rtype in CLAIMED:
            resource["meta"]["profile"] = [CLAIMED[rtype]]
        entries.append({"fullUrl": f"http://radcds.test/fhir/{rtype}/{rid}", "resource": resource})
    return {"resourceType": "Bundle", "id": "stored", "type": "collection", "entry": entries}


@pytest.mark.parametrize("chain", ["r4", *US_CORE_VERSIONS])
def test_stored_resources_in_one_bundle_resolve_their_references_without_error(hapi, stored_versions, chain):
    # Inside a Bundle the validator resolves each reference and checks the target's type and, with
    # meta.profile set, that the target meets the profile the reference demands (US Core targetProfile).
    bundle = _bundle(stored_versions, profiles=chain != "r4")
    assert _errors(hapi.validate(bundle, chain=chain)) == []


def test_capability_statement_claims_exactly_the_profiles_validated_here(hapi):
    cs = capability_statement("http://radcds.test/fhir", smart=False)
    claimed = {r["type"]: p for r in cs["rest"][0]["resource"] for p in r.get("supportedProfile", [])}
    assert claimed == CLAIMED
    assert _errors(hapi.validate(cs)) == []


# ---- negative controls: a validator that stopped checking would pass these silently ----------------


@pytest.mark.parametrize(("version", "required"), [("6.1.0", ("name", "gender")), ("8.0.0", ("name",))])
def test_patient_without_name_and_gender_fails_us_core_patient(hapi, stored_versions, version, required):
    # US Core 6.1.0 requires name and gender (1..1); in 8.0.0 gender is must-support only (0..1).
    patient = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "Patient"))
    del patient["name"], patient["gender"]
    errors = " ".join(_errors(hapi.validate(patient, chain=version, profile=CLAIMED["Patient"])))
    for element in required:
        assert f"Patient.{element}: minimum required = 1" in errors


def test_diagnostic_report_without_code_and_with_unknown_status_fails_base_r4(hapi, stored_versions):
    dr = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "DiagnosticReport"))
    del dr["code"]
    dr["status"] = "signed"
    errors = " ".join(_errors(hapi.validate(dr)))
    assert "DiagnosticReport.code" in errors
    assert "signed" in errors


@pytest.mark.parametrize("version", US_CORE_VERSIONS)
def test_preliminary_report_without_effective_fails_us_core_10(hapi, stored_versions, version):
    dr = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "DiagnosticReport"))
    del dr["effectiveDateTime"]
    messages = hapi.validate(dr, chain=version, profile=CLAIMED["DiagnosticReport"])
    errors = [m["message"] for m in messages if m["severity"] == "error"]
    assert any("us-core-10" in e or "effective" in e for e in errors), errors


def test_observation_with_a_device_performer_fails_base_r4(hapi, stored_versions):
    # R4 Observation.performer allows no Device (hence Observation.device); the Device is contained so
    # that the validator resolves the reference and sees its type.
    obs = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "Observation"))
    device = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "Device"))
    obs["contained"] = [{**{k: v for k, v in device.items() if k != "meta"}, "id": "model"}]
    obs["performer"] = [{"reference": "#model"}]
    obs["device"] = {"reference": "#model"}
    errors = _errors(hapi.validate(obs))
    assert any("Observation.performer" in e and "Device" in e for e in errors), errors


def test_resource_without_narrative_gets_the_dom_6_warning(hapi, stored_versions):
    study = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "ImagingStudy"))
    del study["text"]
    warnings = [m for m in hapi.validate(study) if m["severity"] == "warning"]
    assert any("dom-6" in m["messageId"] for m in warnings)


def test_narrative_without_xhtml_namespace_fails_base_r4(hapi, stored_versions):
    device = copy.deepcopy(next(r for r in stored_versions if r["resourceType"] == "Device"))
    device["text"]["div"] = device["text"]["div"].replace(' xmlns="http://www.w3.org/1999/xhtml"', "")
    assert _errors(hapi.validate(device))


def test_validator_loaded_and_snapshotted_the_us_core_profiles(hapi):
    for version in US_CORE_VERSIONS:
        files = list((HARNESS / "us-core" / version / "resources").glob("StructureDefinition-*.json"))
        assert hapi.ready["snapshots"][version] == len(files) > 0
