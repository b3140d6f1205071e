"""One real chest radiograph through STOW-RS, Kafka, Triton and reporting, in one trace."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pydicom
import pytest

from radcds.adapters.dicom.pixels import prepare_image
from radcds.devstack.demo import chest_radiograph, event_trail, stow
from radcds.domain.events import FINDINGS_PRODUCED, INSTANCE_STORED, REPORT_STORED

from .helpers import eventually, fhir, read_topic, spans

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


def _reference_statistics(path: Path):
    spec = importlib.util.spec_from_file_location("pixstats", ROOT / "models/pixel_statistics/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_statistics(prepare_image(pydicom.dcmread(path)))


@pytest.fixture(scope="module")
def chest_result(stack):
    path = chest_radiograph()
    response = stow(stack, [path])
    study_uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    trail = event_trail(
        stack, study_uid, until_types={INSTANCE_STORED.type, FINDINGS_PRODUCED.type, REPORT_STORED.type}, timeout_s=180
    )
    return path, response, trail


def test_chest_cr_over_stow_yields_events_in_order_for_the_study(chest_result):
    _, response, trail = chest_result
    assert "00081198" not in response
    assert [e["type"] for e in trail] == [INSTANCE_STORED.type, FINDINGS_PRODUCED.type, REPORT_STORED.type]


def test_chest_cr_report_is_preliminary_r4_with_measurements_computed_by_triton(stack, chest_result):
    path, _, trail = chest_result
    report = fhir(stack, f"DiagnosticReport/{trail[-1]['payload']['diagnosticReportId']}")
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "preliminary"
    assert report["imagingStudy"][0]["reference"].startswith("ImagingStudy/")
    expected = _reference_statistics(path)
    values = {}
    for ref in report["result"]:
        obs = fhir(stack, ref["reference"])
        values[obs["code"]["coding"][0]["code"]] = obs["valueQuantity"]["value"]
    assert values["mean-pixel-value"] == pytest.approx(float(expected[0]), abs=1e-2)
    assert values["foreground-fraction"] == pytest.approx(float(expected[5]), abs=1e-2)
    study = fhir(stack, report["imagingStudy"][0]["reference"])
    assert study["modality"][0]["code"] == "CR"


def test_one_instance_has_http_kafka_and_grpc_spans_in_a_single_trace(stack, chest_result):
    trace_id = chest_result[2][0]["traceparent"].split("-")[1]

    def collected():
        mine = [s for s in spans(stack.run_dir / "traces") if s["context"]["trace_id"] == f"0x{trace_id}"]
        kinds = {(s["_service"], s["kind"], s["name"]) for s in mine}
        wanted = [
            ("imaging", "SpanKind.SERVER", "POST /dicom-web/studies"),
            ("imaging", "SpanKind.PRODUCER", f"{INSTANCE_STORED.topic} publish"),
            ("inference", "SpanKind.CONSUMER", f"{INSTANCE_STORED.topic} process"),
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
    study_uid = chest_result[2][0]["payload"]["instance"]["studyInstanceUid"]
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
    assert json.loads(records[0].value)["model"] == {"name": "pixel_statistics", "version": "1"}
