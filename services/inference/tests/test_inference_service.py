"""Inference use case with fakes of our own ports (model port, DICOMweb port, publisher).

The model fake runs each model's own numeric core (models/<name>/1/model.py) in process, so the
values are the algorithms' real outputs on real images. Images: pydicom-data's RG1_UNCI.dcm (PA
chest CR) and 693_UNCI.dcm (head CT slice); the positive head CT is DERIVED from 693_UNCI.dcm by
inserting a 7 mm disc of 60-76 HU (radcds_devstack.samples.head_ct_with_hyperdense_disc).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radcds.adapters.kafka.codec import decode, encode
from radcds.adapters.kafka.consumer import RetryableError
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, STUDY_AVAILABLE, ImagingFindingsProduced
from radcds_devstack.samples import chest_cr, head_ct, head_ct_with_hyperdense_disc, part10
from radcds_devstack.testing import RecordingPublisher, model_code
from radcds_inference.adapters.dicom.preprocess import prepare_series
from radcds_inference.adapters.triton.errors import TritonUnavailable
from radcds_inference.adapters.triton.manifest import load_manifest
from radcds_inference.domain.study import InstanceLocator, SeriesLocator, StudyLocator
from radcds_inference.handlers import InferenceService, sr_uids

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = load_manifest(ROOT / "models")
BASE = "http://imaging.test/dicom-web"


def _load(name: str) -> Any:
    return model_code(ROOT / "models", name)


CHEST = _load("chest_ctr")
HEAD = _load("head_ct_hyperdensity")


class InProcessModels:
    """Fake of ModelPort: the models' numeric cores, called per batch item; records the batches."""

    def __init__(self, *, unavailable: bool = False) -> None:
        self.unavailable = unavailable
        self.calls: list[tuple[str, dict[str, tuple[int, ...]]]] = []

    async def infer(self, model, version, inputs, outputs):
        self.calls.append((model, {k: v.shape for k, v in inputs.items()}))
        if self.unavailable:
            raise TritonUnavailable("Triton unavailable: StatusCode.UNAVAILABLE")
        if model == "chest_ctr":
            results = [CHEST.measure_ctr(image) for image in inputs["IMAGE"]]
            spacings = inputs["PIXEL_SPACING"]
            measurements = [r.measurements((float(s[0]), float(s[1]))) for r, s in zip(results, spacings, strict=True)]
        else:
            results = [
                HEAD.find_hyperdensities(i, tuple(float(v) for v in s))
                for i, s in zip(inputs["IMAGE"], inputs["SPACING"], strict=True)
            ]
            measurements = [r.measurements() for r in results]
        return {
            "STATUS": np.array([[r.status] for r in results], dtype=np.int32),
            "MEASUREMENTS": np.stack(measurements),
            "LOCATIONS": np.stack([r.locations() for r in results]),
        }


class FakeDicomWeb:
    """Fake of DicomWebPort holding Part 10 files by URL; records what is stored."""

    def __init__(self, datasets: list[pydicom.Dataset]) -> None:
        self.files = {}
        self.retrieved: list[str] = []
        self.stored: list[bytes] = []
        self.studies: dict[str, StudyLocator] = {}
        for ds in datasets:
            url = f"{BASE}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            self.files[url] = part10(ds)

    async def retrieve_instance(self, url: str) -> bytes:
        self.retrieved.append(url)
        return self.files[url]

    async def find_study(self, study_instance_uid: str) -> StudyLocator:
        if study_instance_uid not in self.studies:
            raise LookupError(study_instance_uid)
        return self.studies[study_instance_uid]

    async def store(self, data: bytes, *, study_instance_uid: str) -> None:
        self.stored.append(data)


def _series(*datasets: pydicom.Dataset, modality: str | None = None) -> SeriesLocator:
    first = datasets[0]
    return SeriesLocator(
        first.SeriesInstanceUID,
        modality or first.Modality,
        tuple(
            InstanceLocator(
                ds.SOPInstanceUID,
                ds.SOPClassUID,
                f"{BASE}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
            )
            for ds in datasets
        ),
    )


def _service(datasets, models=None):
    models = models or InProcessModels()
    web = FakeDicomWeb(datasets)
    publisher = RecordingPublisher()
    service = InferenceService(manifest=MANIFEST, models=models, dicomweb=web, publisher=publisher)
    return service, models, web, publisher


def _imaging_study(study_uid: str, series: list[SeriesLocator]) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": "x",
        "status": "available",
        "subject": {"reference": "Patient/p"},
        "contained": [{"resourceType": "Endpoint", "id": "wado", "address": BASE}],
        "endpoint": [{"reference": "#wado"}],
        "series": [
            {
                "uid": s.series_instance_uid,
                "modality": {"system": codes.DICOM_DCM, "code": s.modality},
                "instance": [
                    {"uid": i.sop_instance_uid, "sopClass": {"code": f"urn:oid:{i.sop_class_uid}"}} for i in s.instances
                ],
            }
            for s in series
        ],
    }


def _event(study_uid: str, series: list[SeriesLocator], event_id: str = "ev-1"):
    payload = {
        "studyInstanceUid": study_uid,
        "version": 1,
        "isUpdate": False,
        "numberOfInstances": sum(len(s.instances) for s in series),
        "imagingStudy": _imaging_study(study_uid, series),
    }
    msg = encode(STUDY_AVAILABLE, payload, event_id=event_id, source="/t", subject=study_uid)
    return decode(list(msg.headers.items()), None, msg.value)


def test_pa_chest_cr_yields_ctr_equal_to_the_in_process_algorithm_and_an_sr():
    ds = chest_cr()
    service, models, web, publisher = _service([ds])
    service.handle(_event(ds.StudyInstanceUID, [_series(ds)]))
    assert [e[0] for e in publisher.events] == [FINDINGS_PRODUCED]
    analysis = ImagingFindingsProduced.from_payload(publisher.events[0][1]).analysis
    prepared = prepare_series([ds], MANIFEST.entry("chest_ctr").preprocessing)
    expected = CHEST.measure_ctr(prepared.pixels[0]).ratio
    ctr = next(m for m in analysis.measurements if m.code == codes.CARDIOTHORACIC_RATIO)
    assert ctr.value == pytest.approx(expected, abs=1e-3)
    assert ctr.unit == "{ratio}"
    assert analysis.findings == ()  # CTR 0.467 <= 0.5: no cardiomegaly
    assert analysis.critical is False
    assert analysis.key_image.sop_instance_uid == ds.SOPInstanceUID
    assert analysis.location is not None and len(analysis.location.points) == 4
    assert analysis.model.name == "chest_ctr" and analysis.model.version == "1"
    assert len(web.stored) == 1
    sr = pydicom.dcmread(io.BytesIO(web.stored[0]))
    assert sr.Modality == "SR" and sr.StudyInstanceUID == ds.StudyInstanceUID
    assert analysis.structured_report.sop_instance_uid == sr.SOPInstanceUID
    assert models.calls[0][1]["IMAGE"][0] == 1


def test_ap_chest_cr_is_not_analysed_and_says_why_without_calling_the_model():
    ds = chest_cr(view_position="AP")  # DERIVED: header changed to AP
    service, models, web, publisher = _service([ds])
    service.handle(_event(ds.StudyInstanceUID, [_series(ds)]))
    analysis = ImagingFindingsProduced.from_payload(publisher.events[0][1]).analysis
    assert analysis.not_analysed_reason.startswith("not analysed: chest_ctr: view position AP")
    assert models.calls == []
    assert web.stored == []


def test_real_head_ct_is_negative_with_measured_intracranial_area():
    ds = head_ct()
    service, _, web, publisher = _service([ds])
    service.handle(_event(ds.StudyInstanceUID, [_series(ds)]))
    analysis = ImagingFindingsProduced.from_payload(publisher.events[0][1]).analysis
    values = {m.code.code: m.value for m in analysis.measurements}
    assert values["hyperdense-region-count"] == 0
    assert values["intracranial-area"] > 10_000  # mm2 of brain on a 5 mm axial slice
    assert analysis.findings == () and analysis.critical is False
    assert len(web.stored) == 1


def test_derived_positive_head_ct_is_a_critical_hemorrhage_candidate_with_location():
    """DERIVED from 693_UNCI.dcm: a 7 mm disc of 60-76 HU inserted at (260, 250)."""
    ds, inserted = head_ct_with_hyperdense_disc()
    service, _, _, publisher = _service([ds])
    service.handle(_event(ds.StudyInstanceUID, [_series(ds)]))
    payload = publisher.events[0][1]
    analysis = ImagingFindingsProduced.from_payload(payload).analysis
    assert analysis.findings == (codes.INTRACRANIAL_HEMORRHAGE,)
    assert analysis.critical is True and payload["critical"] is True
    values = {m.code.code: m.value for m in analysis.measurements}
    assert values["hyperdense-region-count"] == 1
    assert values["hyperdense-region-area"] == pytest.approx(inserted.area_mm2, rel=0.05)
    row, column = analysis.location.points[0]
    assert abs(row - 260) <= 2 and abs(column - 250) <= 2


def test_slices_of_a_series_go_to_the_model_in_one_batch():
    first = head_ct()
    second = head_ct()
    second.StudyInstanceUID, second.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID
    second.ImagePositionPatient = [-122.5, -112.4, 52.0]
    service, models, _, publisher = _service([first, second])
    service.handle(_event(first.StudyInstanceUID, [_series(first, second)]))
    assert len(models.calls) == 1 and models.calls[0][1]["IMAGE"][0] == 2
    assert len(publisher.events) == 1  # one findings event per (series, model)


def test_sr_series_is_not_applicable_and_nothing_is_retrieved():
    ds = head_ct()
    service, models, web, publisher = _service([ds])
    service.handle(_event(ds.StudyInstanceUID, [_series(ds, modality="SR")]))
    assert publisher.events == [] and web.retrieved == [] and models.calls == []


def test_study_update_holding_our_sr_skips_the_series_already_analysed():
    ds = head_ct()
    series = _series(ds)
    service, models, web, publisher = _service([ds])
    from radcds.domain.findings import ModelIdentity

    _, sr_sop = sr_uids(ds.StudyInstanceUID, series, ModelIdentity("head_ct_hyperdensity", "1"))
    sr_series = SeriesLocator("1.2.3", "SR", (InstanceLocator(sr_sop, "1.2.840.10008.5.1.4.1.1.88.34", "u"),))
    service.handle(_event(ds.StudyInstanceUID, [series, sr_series]))
    assert publisher.events == [] and models.calls == [] and web.retrieved == []


def test_triton_unavailable_becomes_retryable_and_publishes_nothing():
    ds = chest_cr()
    service, _, web, publisher = _service([ds], InProcessModels(unavailable=True))
    with pytest.raises(RetryableError):
        service.handle(_event(ds.StudyInstanceUID, [_series(ds)]))
    assert publisher.events == [] and web.stored == []


def test_redelivered_study_event_publishes_findings_with_the_same_event_ids():
    ds = head_ct()
    service, _, _, publisher = _service([ds])
    event = _event(ds.StudyInstanceUID, [_series(ds)])
    service.handle(event)
    service.handle(event)
    assert len(publisher.events) == 2
    assert publisher.events[0][2] == publisher.events[1][2]
    assert publisher.events[0][3] == ds.StudyInstanceUID


def test_analyse_study_on_demand_returns_results_without_storing_or_publishing():
    ds = head_ct()
    service, _, web, publisher = _service([ds])
    web.studies[ds.StudyInstanceUID] = StudyLocator(ds.StudyInstanceUID, (_series(ds),))

    async def run():
        study = await service.find_study(ds.StudyInstanceUID)
        return await service.analyse_study(study, model_names=("head_ct_hyperdensity",))

    results = asyncio.run(run())
    assert [r.analysis.model.name for r in results] == ["head_ct_hyperdensity"]
    assert results[0].report is not None
    assert web.stored == [] and publisher.events == []


def test_unknown_model_name_is_refused():
    service, *_ = _service([])
    with pytest.raises(KeyError):
        service.entries(("no_such_model",))


# ---- gRPC AnalyzeStudy (a real grpc server on a free port, our ports faked) ---------------------


class GrpcClient:
    """The stub (``AnalyzeStudy``) and its channel (for raw bytes) of the test server."""

    def __init__(self, stub: Any, channel: Any) -> None:
        self.AnalyzeStudy = stub.AnalyzeStudy
        self.channel = channel


@pytest.fixture
def grpc_stub():
    import socket

    import grpc

    from radcds_inference.adapters.grpc.gen import inference_pb2_grpc
    from radcds_inference.api.grpc_server import GrpcEndpoint, InferenceServicer

    ds, _ = head_ct_with_hyperdense_disc()
    models = InProcessModels()
    service, models, web, _ = _service([ds], models)
    web.studies[ds.StudyInstanceUID] = StudyLocator(ds.StudyInstanceUID, (_series(ds),))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = GrpcEndpoint(
        host="127.0.0.1",
        port=port,
        ready=lambda: True,
        servicer=InferenceServicer(service, asyncio.run, timeout_s=60),
    )
    endpoint.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield GrpcClient(inference_pb2_grpc.InferenceStub(channel), channel), ds, models
    finally:
        channel.close()
        endpoint.stop()


def test_analyze_study_returns_the_coded_critical_finding(grpc_stub):
    from radcds_inference.adapters.grpc.gen import inference_pb2

    stub, ds, _ = grpc_stub
    response = stub.AnalyzeStudy(inference_pb2.AnalyzeStudyRequest(study_instance_uid=ds.StudyInstanceUID), timeout=60)
    (analysis,) = response.analyses
    assert analysis.model_name == "head_ct_hyperdensity" and analysis.critical
    assert [(c.system, c.code) for c in analysis.findings] == [(codes.SNOMED_CT, "1386000")]
    assert analysis.sop_instance_uid == ds.SOPInstanceUID and analysis.key_image_frame_number == 1
    assert any(m.code.code == "hyperdense-region-area" and m.ucum_unit == "mm2" for m in analysis.measurements)


@pytest.mark.parametrize(
    ("uid", "models", "status"),
    [
        ("not-a-uid", (), "INVALID_ARGUMENT"),
        ("1.2.3", ("no_such_model",), "INVALID_ARGUMENT"),
        ("1.2.3", (), "NOT_FOUND"),
    ],
)
def test_analyze_study_with_bad_request_or_unknown_study_returns_the_status(grpc_stub, uid, models, status):
    import grpc

    from radcds_inference.adapters.grpc.gen import inference_pb2

    stub, _, _ = grpc_stub
    with pytest.raises(grpc.RpcError) as error:
        stub.AnalyzeStudy(inference_pb2.AnalyzeStudyRequest(study_instance_uid=uid, model_names=models), timeout=30)
    assert error.value.code().name == status


def test_analyze_study_while_triton_is_unavailable_returns_unavailable(grpc_stub):
    import grpc

    from radcds_inference.adapters.grpc.gen import inference_pb2

    stub, ds, models = grpc_stub
    models.unavailable = True
    with pytest.raises(grpc.RpcError) as error:
        stub.AnalyzeStudy(inference_pb2.AnalyzeStudyRequest(study_instance_uid=ds.StudyInstanceUID), timeout=30)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE


# ---- gRPC AnalyzeStudy against hostile requests (issue #15: the gRPC door fuzzed) ----------------
#
# One server answers every example: whatever a request holds, the answer is a status of the API's contract
# (proto/radcds/v1/inference.proto), never UNKNOWN (an exception escaping the servicer), and the server still
# answers a good request afterwards. Bytes that are no AnalyzeStudyRequest are refused by gRPC itself while
# deserialising (INTERNAL, "Exception deserializing request"), before any radcds code runs.

_CONTRACT = {"INVALID_ARGUMENT", "NOT_FOUND"}
_KNOWN_MODELS = sorted(entry.name for entry in MANIFEST.active())
_uids = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"\A[0-9]{1,8}(\.[0-9]{1,8}){0,12}\Z"),
    st.from_regex(r"\A\s*[0-9.]{0,70}[^0-9.]?[0-9.]{0,10}\s*\Z"),
)
_model_lists = st.lists(st.one_of(st.sampled_from(_KNOWN_MODELS), st.text(max_size=40)), max_size=4)
_SHARED_SERVER = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _status(call: Any, request: Any) -> str:
    import grpc

    try:
        call(request, timeout=60)
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


@pytest.mark.properties
@_SHARED_SERVER
@given(uid=_uids, models=_model_lists)
def test_any_analyze_study_request_gets_a_contract_status_and_the_server_keeps_answering(grpc_stub, uid, models):
    from radcds_inference.adapters.grpc.gen import inference_pb2

    client, ds, _ = grpc_stub
    status = _status(client.AnalyzeStudy, inference_pb2.AnalyzeStudyRequest(study_instance_uid=uid, model_names=models))
    if uid.strip() == ds.StudyInstanceUID and set(models) <= set(_KNOWN_MODELS):
        assert status == "OK"
    else:
        assert status in _CONTRACT, (uid, models, status)
    good = inference_pb2.AnalyzeStudyRequest(study_instance_uid=ds.StudyInstanceUID)
    assert _status(client.AnalyzeStudy, good) == "OK"


@pytest.mark.properties
@_SHARED_SERVER
@given(body=st.binary(max_size=300))
def test_any_bytes_sent_to_analyze_study_get_a_status_and_the_server_keeps_answering(grpc_stub, body):
    from radcds_inference.adapters.grpc.gen import inference_pb2

    client, ds, _ = grpc_stub
    raw = client.channel.unary_unary("/radcds.v1.Inference/AnalyzeStudy")
    status = _status(raw, body)
    assert status in _CONTRACT | {"INTERNAL", "OK"}, status
    if status == "INTERNAL":  # only gRPC's own refusal of bytes that are no AnalyzeStudyRequest
        with pytest.raises(DecodeError):
            inference_pb2.AnalyzeStudyRequest.FromString(body)
    good = inference_pb2.AnalyzeStudyRequest(study_instance_uid=ds.StudyInstanceUID)
    assert _status(client.AnalyzeStudy, good) == "OK"
