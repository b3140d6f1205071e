"""Inference over the real stack (Kafka, Triton, PostgreSQL, imaging, inference, reporting).

STOW-RS → imaging → study.available (quiet period 1 s) → inference: envelope, WADO-RS, Triton,
findings event + TID 1500 SR stored back in imaging (STOW-RS), and AnalyzeStudy over gRPC.

Studies (each with fresh UIDs, radcds_devstack.samples):
(a) the real PA chest CR RG1_UNCI.dcm → CTR; (b) the real head CT slice 693_UNCI.dcm → negative;
(c) DERIVED from 693_UNCI.dcm with an inserted 7 mm disc of 60-76 HU → critical hemorrhage
candidate; (d) RG1_UNCI.dcm with View Position set to AP (DERIVED header) → "not analysed: ...".
"""

from __future__ import annotations

import io
import math
from typing import Any

import grpc
import httpx
import pydicom
import pytest
from kafka import KafkaConsumer, TopicPartition

from radcds.adapters.dicomweb.multipart import parse_content_type, split_parts
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, STUDY_AVAILABLE
from radcds_devstack.demo import event_trail, stow, wait_for_event
from radcds_devstack.samples import chest_cr, head_ct, head_ct_with_hyperdense_disc, part10
from radcds_imaging.domain.assembly import announcement_event_id
from radcds_inference.adapters.grpc.gen import inference_pb2, inference_pb2_grpc

from .helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.triton, pytest.mark.postgres]


def _findings(stack, ds: pydicom.Dataset) -> dict[str, Any]:
    stow(stack, [part10(ds)])
    trail = event_trail(stack, ds.StudyInstanceUID, until_types={FINDINGS_PRODUCED.type}, timeout_s=180)
    return next(e["payload"] for e in trail if e["type"] == FINDINGS_PRODUCED.type)


def _values(payload: dict[str, Any]) -> dict[str, float]:
    return {m["code"]: m["value"] for m in payload["measurements"]}


def _wado(stack, study: str, series: str, sop: str) -> pydicom.Dataset:
    url = f"http://{stack.host}:{stack.ports.imaging}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    response = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=30)
    response.raise_for_status()
    _, params = parse_content_type(response.headers["content-type"])
    return pydicom.dcmread(io.BytesIO(split_parts(response.content, params["boundary"])[0].content))


def _numbers(item: pydicom.Dataset) -> dict[str, float]:
    """NUM content items of an SR tree: concept meaning → value."""
    out = {}
    for child in item.get("ContentSequence", []):
        if child.ValueType == "NUM":
            out[child.ConceptNameCodeSequence[0].CodeMeaning] = float(child.MeasuredValueSequence[0].NumericValue)
        out |= _numbers(child)
    return out


@pytest.fixture(scope="module")
def chest(stack):
    ds = chest_cr()
    return ds, _findings(stack, ds)


def test_pa_chest_cr_yields_a_ctr_findings_event_with_key_image_and_provenance(chest):
    ds, payload = chest
    assert payload["model"] == {"name": "chest_ctr", "version": "1"}
    assert 0.3 < _values(payload)["cardiothoracic-ratio"] < 0.6
    assert payload["keyImage"]["sopInstanceUid"] == ds.SOPInstanceUID
    assert payload["critical"] is False and "notAnalysedReason" not in payload
    assert payload["location"]["description"].startswith("heart borders")


def test_chest_sr_is_stored_in_imaging_with_the_same_ctr(stack, chest):
    ds, payload = chest
    ref = payload["structuredReport"]
    sr = _wado(stack, ref["studyInstanceUid"], ref["seriesInstanceUid"], ref["sopInstanceUid"])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and sr.Modality == "SR"
    assert sr.StudyInstanceUID == ds.StudyInstanceUID
    assert _numbers(sr)["Cardiothoracic ratio"] == pytest.approx(_values(payload)["cardiothoracic-ratio"], abs=1e-3)


def test_stored_sr_triggers_an_update_that_inference_skips(stack, chest):
    ds, _ = chest
    update = wait_for_event(stack, STUDY_AVAILABLE.topic, announcement_event_id(ds.StudyInstanceUID, 2), timeout_s=60)
    assert update["payload"]["isUpdate"] is True
    # Reads the group's committed offsets without joining it (no subscribe, no auto-commit).
    consumer = KafkaConsumer(bootstrap_servers=[stack.bootstrap], enable_auto_commit=False, group_id="radcds-inference")
    try:
        partitions = [
            TopicPartition(STUDY_AVAILABLE.topic, p) for p in consumer.partitions_for_topic(STUDY_AVAILABLE.topic)
        ]
        end = consumer.end_offsets(partitions)

        def consumed_up_to_end() -> bool:
            return all((consumer.committed(tp) or 0) >= end[tp] for tp in partitions)

        eventually(consumed_up_to_end, timeout_s=120, what="inference consumed the study update")
    finally:
        consumer.close(autocommit=False)
    trail = event_trail(stack, ds.StudyInstanceUID, until_types={FINDINGS_PRODUCED.type}, timeout_s=30)
    assert len([e for e in trail if e["type"] == FINDINGS_PRODUCED.type]) == 1


def test_real_head_ct_is_negative(stack):
    payload = _findings(stack, head_ct())
    assert payload["model"]["name"] == "head_ct_hyperdensity"
    assert _values(payload)["hyperdense-region-count"] == 0
    assert payload.get("findings", []) == [] and payload["critical"] is False
    assert payload["structuredReport"]["sopInstanceUid"]


def test_derived_positive_head_ct_is_a_critical_hemorrhage_candidate(stack):
    """DERIVED from 693_UNCI.dcm: a 7 mm disc of 60-76 HU inserted at (260, 250), 154.1 mm²."""
    ds, inserted = head_ct_with_hyperdense_disc()
    payload = _findings(stack, ds)
    assert payload["critical"] is True
    assert payload["findings"] == [{"system": codes.SNOMED_CT, "code": "1386000", "display": "Intracranial hemorrhage"}]
    assert _values(payload)["hyperdense-region-area"] == pytest.approx(inserted.area_mm2, rel=0.05)
    row, column = payload["location"]["points"][0]["row"], payload["location"]["points"][0]["column"]
    assert abs(row - 260) <= 2 and abs(column - 250) <= 2
    # Then the outline: convex-hull vertices of the 7 mm (14.6 pixel) disc, on the source grid.
    outline = [(p["row"], p["column"]) for p in payload["location"]["points"][1:]]
    assert 8 <= len(outline) <= 16
    assert all(13 <= math.hypot(r - 260, c - 250) <= 16 for r, c in outline)
    assert "vertices of its outline" in payload["location"]["description"]


def test_ap_chest_cr_outside_the_envelope_yields_a_not_analysed_finding(stack):
    payload = _findings(stack, chest_cr(view_position="AP"))  # DERIVED header: AP instead of PA
    assert payload["notAnalysedReason"].startswith("not analysed: chest_ctr: view position AP")
    assert payload["measurements"] == [] and "structuredReport" not in payload


def test_analyze_study_over_grpc_returns_the_ctr_of_a_stored_study(stack, chest):
    ds, payload = chest
    with grpc.insecure_channel(f"{stack.host}:{stack.ports.inference_grpc}") as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        response = stub.AnalyzeStudy(
            inference_pb2.AnalyzeStudyRequest(study_instance_uid=ds.StudyInstanceUID), timeout=120
        )
        with pytest.raises(grpc.RpcError) as missing:
            stub.AnalyzeStudy(inference_pb2.AnalyzeStudyRequest(study_instance_uid="1.2.3.4.5.6.7"), timeout=60)
    (analysis,) = [a for a in response.analyses if a.model_name == "chest_ctr"]
    ctr = next(m for m in analysis.measurements if m.code.code == "cardiothoracic-ratio")
    assert ctr.value == pytest.approx(_values(payload)["cardiothoracic-ratio"], abs=1e-3)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
