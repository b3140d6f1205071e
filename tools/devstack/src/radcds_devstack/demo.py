"""The ``make run`` demo: a real chest radiograph through the stack, and what came out."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydicom
from kafka import KafkaConsumer
from pydicom.uid import generate_uid

from radcds.adapters.dicomweb.multipart import build_related
from radcds.adapters.kafka.codec import InvalidEvent, decode
from radcds.domain.events import (
    EVENT_KINDS,
    FINDINGS_PRODUCED,
    INSTANCE_STORED,
    ORDER_EVALUATED,
    REPORT_STORED,
    STUDY_AVAILABLE,
    dead_letter_topic,
)
from radcds_devstack.samples import drop_zero_pixel_spacing
from radcds_devstack.stack import LocalStack


def chest_radiograph() -> Path:
    """pydicom-data's RG1_UNCI.dcm: a real PA chest CR, 1955x1841, MONOCHROME1."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCI.dcm")
    if path is None:
        raise RuntimeError("pydicom-data is not installed (RG1_UNCI.dcm not found)")
    return Path(str(path))


def with_fresh_uids(path: Path) -> bytes:
    """The file's bytes with new Study, Series and SOP Instance UIDs (pixels untouched), and without
    a Pixel Spacing of ``0\\0`` (which viewers draw as an image of no size).

    Imaging stores a SOP Instance once; fresh UIDs make every demo run a new study so the whole
    flow shows again on a stack that already holds the original file.
    """
    ds = drop_zero_pixel_spacing(pydicom.dcmread(path))  # RG1_UNCI.dcm's Pixel Spacing 0\0 (see samples.py)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def stow(stack: LocalStack, files: list[Path] | list[bytes]) -> dict[str, Any]:
    """STOW-RS the files to imaging (PS3.18 10.5) and return the DICOM JSON response."""
    body, boundary = build_related(
        [("application/dicom", f if isinstance(f, bytes) else f.read_bytes()) for f in files]
    )
    url = f"http://{stack.host}:{stack.ports.imaging}/dicom-web/studies"
    response = httpx.post(
        url,
        content=body,
        timeout=60,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def event_trail(
    stack: LocalStack, study_uid: str, *, until_types: set[str], timeout_s: float = 180.0, partial: bool = False
) -> list[dict[str, Any]]:
    """Every radcds event about ``study_uid``, read from Kafka until each of ``until_types`` arrived (``TimeoutError``
    after ``timeout_s``; with ``partial``, what arrived by then, as a failed test's diagnosis)."""
    names = {k.topic for k in EVENT_KINDS.values()}  # several event kinds may share a topic
    topics = sorted(names | {dead_letter_topic(t) for t in names})
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=[stack.bootstrap],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    trail: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                headers = list(record.headers or [])
                h = dict(headers)
                if h.get("ce_subject", b"").decode() != study_uid:
                    continue
                entry = {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "type": h.get("ce_type", b"").decode(),
                    "id": h.get("ce_id", b"").decode(),
                    "time": h.get("ce_time", b"").decode(),
                    "traceparent": h.get("traceparent", b"").decode(),
                }
                try:
                    entry["payload"] = decode(headers, record.key, record.value).payload
                except InvalidEvent as exc:
                    entry["error"] = str(exc)
                trail.append(entry)
                if until_types <= {e["type"] for e in trail}:
                    return sorted(trail, key=lambda e: e["time"])
        if partial:
            return sorted(trail, key=lambda e: e["time"])
        raise TimeoutError(f"not all of {sorted(until_types)} arrived for the study within {timeout_s:.0f}s")
    finally:
        consumer.close()


def run_demo(stack: LocalStack, *, out: Any = print) -> dict[str, Any]:
    """Send the chest CR, wait for its DiagnosticReport, print it with the event trail."""
    path = chest_radiograph()
    out(f"1. STOW-RS {path.name} (real PA chest radiograph from pydicom-data, fresh UIDs) to imaging ...")
    result = stow(stack, [with_fresh_uids(path)])
    ref = result["00081199"]["Value"][0]
    retrieve = ref["00081190"]["Value"][0]
    study_uid = retrieve.split("/studies/")[1].split("/")[0]
    out(f"   stored: SOP Instance {ref['00081155']['Value'][0]}")
    out("2. Waiting for imaging -> (quiet period) study.available -> inference -> Triton -> Kafka -> reporting ...")
    trail = event_trail(
        stack, study_uid, until_types={INSTANCE_STORED.type, FINDINGS_PRODUCED.type, REPORT_STORED.type}
    )
    stored = next(e["payload"] for e in trail if e["type"] == REPORT_STORED.type)
    fhir = f"http://{stack.host}:{stack.ports.reporting}/fhir"
    report = httpx.get(f"{fhir}/DiagnosticReport/{stored['diagnosticReportId']}", timeout=10).json()
    out("3. Event trail (CloudEvents on Kafka, one W3C trace):")
    for e in trail:
        out(f"   {e['time']}  {e['topic']:<32} {e['type']:<52} trace={e['traceparent'][3:35]}")
    out(f"4. FHIR R4 DiagnosticReport at {fhir}/DiagnosticReport/{report['id']}")
    out(f"   status={report['status']}  code={report['code']['coding'][0]['display']}")
    out(f"   conclusion: {report['conclusion']}")
    for obs_ref in report.get("result", []):
        obs = httpx.get(f"{fhir}/{obs_ref['reference']}", timeout=10).json()
        q = obs.get("valueQuantity")
        value = f"{q['value']} {q['unit']}" if q else "not analysed"
        out(f"   - {obs['code'].get('text', '')}: {value}")
    html = base64.b64decode(report["presentedForm"][0]["data"]).decode()
    out(f"   presentedForm: text/html, {len(html)} characters")
    from radcds_imaging.domain.assembly import announcement_event_id

    out("   ... waiting for the study's quiet period to end (study assembly) ...")
    announced = wait_for_event(stack, STUDY_AVAILABLE.topic, announcement_event_id(study_uid, 1), timeout_s=60)
    study = httpx.get(f"{fhir}/ImagingStudy/{announced['payload']['imagingStudy']['id']}", timeout=10).json()
    out(
        f"   {STUDY_AVAILABLE.type}: ImagingStudy/{study['id']} modality={study['modality'][0]['code']} "
        f"series={study['numberOfSeries']} instances={study['numberOfInstances']} (served by reporting at /fhir)"
    )
    return {"study_uid": study_uid, "report": report, "trail": trail}


def call_referral(
    stack: LocalStack, call: dict[str, Any], *, service: str = "radcds-imaging-order-sign"
) -> dict[str, Any]:
    """POST a CDS Hooks call to referral, signed by the development EHR key as an EHR would."""
    from radcds_devstack.devkeys import sign_client_jwt

    key_path, issuers_path = stack.dev_issuer()
    issuer = json.loads(issuers_path.read_text())[0]
    kid = issuer["jwks"]["keys"][0]["kid"]
    url = f"http://{stack.host}:{stack.ports.referral}/cds-services/{service}"
    token = sign_client_jwt(key_path.read_bytes(), kid=kid, iss=issuer["iss"], aud=url)
    response = httpx.post(url, json=call, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def run_referral_demo(stack: LocalStack, *, out: Any = print) -> dict[str, Any]:
    """order-sign for a CT head after a low-risk minor head injury: card, rating and the Kafka event."""
    from radcds_devstack.scenarios import low_risk_minor_head_injury

    out("5. CDS Hooks order-sign (signed ES384 JWT): CT head for a low-risk minor head injury ...")
    response = call_referral(stack, low_risk_minor_head_injury())
    for card in response["cards"]:
        out(f"   card [{card['indicator']}] {card['summary']}")
        for s in card.get("suggestions", []):
            out(f"     suggestion: {s['label']}")
    for action in response.get("systemActions", []):
        ext = {e["url"].rsplit("/", 1)[-1]: e for e in action["resource"]["extension"]}
        rating = ext["pama-rating"]["valueCodeableConcept"]["coding"][0]["code"]
        consult = ext["pama-rating-consult-id"]["valueUri"]
        out(f"   systemAction: rating={rating} consult-id={consult}")
        event = wait_for_event(stack, ORDER_EVALUATED.topic, consult)
        out(f"   event {event['type']} on {ORDER_EVALUATED.topic}: rule={event['payload']['ruleId']}")
    return response


def wait_for_event(stack: LocalStack, topic: str, event_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The event with CloudEvents id ``event_id`` on ``topic``, once it is there."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[stack.bootstrap],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                headers = list(record.headers or [])
                if dict(headers).get("ce_id", b"").decode() == event_id:
                    decoded = decode(headers, record.key, record.value)
                    return {"type": decoded.type, "payload": decoded.payload}
        raise TimeoutError(f"event {event_id} not on {topic} within {timeout_s:.0f}s")
    finally:
        consumer.close()


def dump(obj: Any) -> str:
    """Pretty JSON."""
    return json.dumps(obj, indent=2)


def _dicom_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def seed_prior_ctr(stack: LocalStack, *, ctr: float = 0.44, months_before: int = 6) -> str:
    """SEEDED for the demo: an earlier chest_ctr result for the demo chest radiograph's patient (RG1_UNCI.dcm's
    Patient ID, a study ``months_before`` its Study Date), published on the findings topic as inference would
    have, so that fusion holds a prior CTR to compare with. Deterministic UIDs: a rerun replaces it."""
    from radcds.adapters.kafka.publisher import KafkaEventPublisher, build_producer
    from radcds.domain import codes
    from radcds.domain.events import SOURCE_INFERENCE, ImagingFindingsProduced
    from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext

    original = pydicom.dcmread(chest_radiograph(), stop_before_pixels=True)
    day = date(int(original.StudyDate[:4]), int(original.StudyDate[4:6]), int(original.StudyDate[6:8]))
    prior_day = day - timedelta(days=round(months_before * 30.44))
    study = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, f"radcds-demo-prior-ctr|{original.PatientID}").int)
    analysis = ImageAnalysis(
        instance=InstanceReference(study, study + ".1", study + ".1.1", str(original.SOPClassUID)),
        context=StudyContext(
            patient_id=str(original.PatientID),
            issuer_of_patient_id=str(original.get("IssuerOfPatientID", "") or ""),
            modality="CR",
            study_date=_dicom_date(prior_day),
            study_description="SEEDED prior chest radiograph (demo)",
        ),
        model=ModelIdentity("chest_ctr", "1"),
        measurements=(Measurement(codes.CARDIOTHORACIC_RATIO, ctr, codes.UNIT_RATIO),),
    )
    publisher = KafkaEventPublisher(
        build_producer(stack.bootstrap, client_id="radcds-demo", request_timeout_ms=30_000), source=SOURCE_INFERENCE
    )
    try:
        publisher.publish(
            FINDINGS_PRODUCED,
            ImagingFindingsProduced(analysis).to_payload(),
            event_id=f"demo-prior-ctr-{study}",
            subject=study,
        )
    finally:
        publisher.close()
    return prior_day.isoformat()


def run_fusion_demo(stack: LocalStack, *, chest_study_uid: str, prior_date: str, out: Any = print) -> dict[str, Any]:
    """fusion: the demo chest radiograph compared with the seeded prior CTR, and a nodule measured by an
    (example) AI product's TID 1500 SR six months apart: comparison, Fleischner recommendation, ServiceRequest."""
    from radcds.domain.events import ASSESSMENT_PRODUCED
    from radcds_devstack.samples import chest_ct, nodule_measurement_sr, part10

    out(f"6. fusion: the chest radiograph in context (prior CTR 0.44 of {prior_date} SEEDED by the demo) ...")
    trail = event_trail(stack, chest_study_uid, until_types={ASSESSMENT_PRODUCED.type}, timeout_s=120)
    chest = [e["payload"] for e in trail if e["type"] == ASSESSMENT_PRODUCED.type][-1]
    for line in chest["sections"]["comparison"]:
        out(f"   comparison: {line}")
    for line in chest["sections"]["missingContext"]:
        out(f"   missing context: {line}")
    _print_report_context(stack, chest_study_uid, out=out)
    patient = f"DEMO-NODULE-{uuid.uuid4().hex[:6]}"
    today = date.today()
    out("7. fusion: a solid nodule measured by an example AI product's TID 1500 SR (SYNTHETIC sizes, real CT) ...")
    for day, size in ((today - timedelta(days=182), (6.1, 5.9)), (today, (8.2, 7.8))):
        sr = nodule_measurement_sr(
            chest_ct(patient_id=patient, study_date=_dicom_date(day)), long_axis_mm=size[0], short_axis_mm=size[1]
        )
        stow(stack, [part10(sr)])
        out(f"   STOW-RS measurement SR of {day.isoformat()}: nodule {size[0]} x {size[1]} mm")
    trail = event_trail(stack, sr.StudyInstanceUID, until_types={ASSESSMENT_PRODUCED.type}, timeout_s=120)
    nodule = [e["payload"] for e in trail if e["type"] == ASSESSMENT_PRODUCED.type][-1]
    for line in nodule["sections"]["comparison"]:
        out(f"   comparison: {line}")
    for line in nodule["sections"]["recommendations"]:
        out(f"   recommendation: {line}")
    fusion = f"http://{stack.host}:{stack.ports.fusion}/fhir"
    for rec in nodule["recommendations"]:
        out(f"   FHIR: {fusion}/ServiceRequest/{rec['id']} (intent proposal, due by {rec['dueBy']})")
    _print_report_context(stack, sr.StudyInstanceUID, out=out)
    return {"chest": chest, "nodule": nodule}


def _print_report_context(stack: LocalStack, study_uid: str, *, out: Any, timeout_s: float = 60.0) -> None:
    """The study's DiagnosticReport once reporting filled its sections from the assessment (docs/reporting.md)."""
    from radcds.adapters.fhir.report import diagnostic_report_id

    url = f"http://{stack.host}:{stack.ports.reporting}/fhir/DiagnosticReport/{diagnostic_report_id(study_uid)}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = httpx.get(url, timeout=10)
        if answer.status_code == 200 and "Comparison: " in answer.json().get("conclusion", ""):
            report = answer.json()
            conclusion = report["conclusion"]
            out(f"   reporting: {url} version {report['meta']['versionId']} (sections also in its HTML/PDF and ORU)")
            out(f"   conclusion: ...{conclusion[conclusion.index('Comparison: ') :]}")
            return
        time.sleep(0.5)
    out("   reporting: the report's context sections were not filled in time (see docs/operations.md)")


def run_all(stack: LocalStack, *, out: Any = print) -> None:
    """The whole demo: the seeded prior CTR, the chest radiograph to its report, CDS Hooks, then fusion."""
    prior_date = seed_prior_ctr(stack)
    result = run_demo(stack, out=out)
    run_referral_demo(stack, out=out)
    run_fusion_demo(stack, chest_study_uid=result["study_uid"], prior_date=prior_date, out=out)
