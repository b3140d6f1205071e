"""One real chest radiograph through STOW-RS, Kafka, Triton and reporting.

Since issue #5 inference analyses whole studies: STOW-RS → instance.stored → (quiet period)
study.available → inference (chest_ctr on Triton) → findings → reporting. The analysis runs in the
trace of the study.available event (the announcer starts it), not in the STOW-RS request's trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from radcds.domain.events import FINDINGS_PRODUCED, INSTANCE_STORED, REPORT_STORED, STUDY_AVAILABLE
from radcds_devstack.demo import chest_radiograph, event_trail, stow
from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.preprocess import prepare_series
from radcds_inference.adapters.triton.manifest import load_manifest

from .helpers import eventually, fhir, read_topic, spans

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


def _reference_ctr(path: Path) -> float:
    module = model_code(ROOT / "models", "chest_ctr")
    prepared = prepare_series([pydicom.dcmread(path)], load_manifest(ROOT / "models").entry("chest_ctr").preprocessing)
    return float(module.measure_ctr(prepared.pixels[0]).ratio)


@pytest.fixture(scope="module")
def chest_result(stack):
    path = chest_radiograph()
    response = stow(stack, [path])
    study_uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    trail = event_trail(
        stack,
        study_uid,
        until_types={INSTANCE_STORED.type, STUDY_AVAILABLE.type, FINDINGS_PRODUCED.type, REPORT_STORED.type},
        timeout_s=180,
    )
    return path, response, trail


def _first(trail, kind):
    return next(e for e in trail if e["type"] == kind.type)


def test_chest_cr_over_stow_yields_events_in_order_for_the_study(chest_result):
    _, response, trail = chest_result
    assert "00081198" not in response
    firsts = [
        trail.index(_first(trail, k)) for k in (INSTANCE_STORED, STUDY_AVAILABLE, FINDINGS_PRODUCED, REPORT_STORED)
    ]
    assert firsts == sorted(firsts)


def test_chest_cr_report_is_preliminary_r4_with_the_ctr_computed_by_triton(stack, chest_result):
    path, _, trail = chest_result
    report = fhir(stack, f"DiagnosticReport/{_first(trail, REPORT_STORED)['payload']['diagnosticReportId']}")
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "preliminary"
    assert report["imagingStudy"][0]["reference"].startswith("ImagingStudy/")
    values = {}
    for ref in report["result"]:
        obs = fhir(stack, ref["reference"])
        if "valueQuantity" in obs:
            values[obs["code"]["coding"][0]["code"]] = obs["valueQuantity"]["value"]
    assert values["cardiothoracic-ratio"] == pytest.approx(_reference_ctr(path), abs=1e-3)
    study = fhir(stack, report["imagingStudy"][0]["reference"])
    assert study["modality"][0]["code"] == "CR"


def test_study_analysis_has_kafka_grpc_and_http_spans_in_a_single_trace(stack, chest_result):
    trace_id = _first(chest_result[2], STUDY_AVAILABLE)["traceparent"].split("-")[1]

    def collected():
        mine = [s for s in spans(stack.run_dir / "traces") if s["context"]["trace_id"] == f"0x{trace_id}"]
        kinds = {(s["_service"], s["kind"], s["name"]) for s in mine}
        wanted = [
            ("imaging", "SpanKind.PRODUCER", f"{STUDY_AVAILABLE.topic} publish"),
            ("inference", "SpanKind.CONSUMER", f"{STUDY_AVAILABLE.topic} process"),
            ("inference", "SpanKind.CLIENT", "/inference.GRPCInferenceService/ModelInfer"),
            ("inference", "SpanKind.PRODUCER", f"{FINDINGS_PRODUCED.topic} publish"),
            ("reporting", "SpanKind.CONSUMER", f"{FINDINGS_PRODUCED.topic} process"),
            ("reporting", "SpanKind.PRODUCER", f"{REPORT_STORED.topic} publish"),
        ]
        return all(w in kinds for w in wanted) and mine

    mine = eventually(collected, timeout_s=30, what="all spans of the study's trace")
    grpc = next(s for s in mine if s["name"].endswith("/ModelInfer"))
    assert grpc["attributes"]["rpc.system"] == "grpc"


def test_service_events_are_binary_mode_cloudevents_keyed_by_study(stack, chest_result):
    study_uid = _first(chest_result[2], INSTANCE_STORED)["payload"]["instance"]["studyInstanceUid"]
    records = [
        r
        for r in read_topic(stack, FINDINGS_PRODUCED.topic, idle_ms=1500)
        if dict(r.headers).get("ce_subject") == study_uid.encode()
    ]
    assert records
    headers = dict(records[0].headers)
    assert headers["ce_source"] == b"/radcds/inference"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["content-type"] == b"application/json"
    assert records[0].key == study_uid.encode()
    assert json.loads(records[0].value)["model"] == {"name": "chest_ctr", "version": "1"}
