"""Inference use case with fakes of our own ports (model, retriever, publisher)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radcds.adapters.dicom.pixels import prepare_image
from radcds.adapters.kafka.consumer import RetryableError
from radcds.adapters.triton.client import TritonUnavailable
from radcds.domain.events import FINDINGS_PRODUCED, ImagingInstanceStored
from radcds.domain.findings import InstanceReference, StudyContext
from radcds_inference.handlers import InferenceService

ROOT = Path(__file__).resolve().parents[3]
# pydicom's CT_small.dcm (128x128 CT) and pydicom-data's US1_UNCR.dcm (colour ultrasound).
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def _model_module():
    spec = importlib.util.spec_from_file_location("pixel_statistics_model", ROOT / "models/pixel_statistics/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class InProcessModel:
    """Fake of ImageModelPort that runs the model's own numpy code in process."""

    def __init__(self, unavailable: bool = False) -> None:
        self.compute = _model_module().compute_statistics
        self.unavailable = unavailable
        self.calls = 0

    def infer_image(self, model: str, image: np.ndarray, *, version: str = "") -> np.ndarray:
        self.calls += 1
        if self.unavailable:
            raise TritonUnavailable("down")
        return self.compute(image)


class FileRetriever:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self, url: str) -> bytes:
        return self.path.read_bytes()


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[tuple[Any, dict[str, Any], str]] = []

    def publish(self, kind, payload, *, event_id, subject):
        self.events.append((kind, payload, event_id))


def _stored(path: Path) -> ImagingInstanceStored:
    ds = pydicom.dcmread(path)
    return ImagingInstanceStored(
        InstanceReference(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID),
        StudyContext(patient_id=str(ds.PatientID), modality=ds.Modality),
        "1.2.840.10008.1.2.1",
        "http://imaging/x",
        path.stat().st_size,
    )


def test_ct_slice_is_measured_in_hounsfield_units_matching_the_model():
    model = InProcessModel()
    service = InferenceService(
        models=model,
        retriever=FileRetriever(CT_SMALL),
        publisher=RecordingPublisher(),
        model_version="1",
        max_image_size=512,
    )
    analysis = service.analyse(_stored(CT_SMALL))
    expected = model.compute(prepare_image(pydicom.dcmread(CT_SMALL)))
    assert analysis.analysed
    assert analysis.measurements[0].unit == "[hnsf'U]"
    assert analysis.measurements[0].value == pytest.approx(float(expected[0]), abs=1e-3)


def test_colour_image_is_not_analysed_and_says_why():
    us = Path(get_testdata_file("US1_UNCR.dcm"))
    model = InProcessModel()
    service = InferenceService(
        models=model, retriever=FileRetriever(us), publisher=RecordingPublisher(), model_version="1", max_image_size=512
    )
    analysis = service.analyse(_stored(us))
    assert not analysis.analysed
    assert analysis.not_analysed_reason.startswith("not analysed:")
    assert model.calls == 0


def test_triton_unavailable_becomes_retryable_error():
    service = InferenceService(
        models=InProcessModel(unavailable=True),
        retriever=FileRetriever(CT_SMALL),
        publisher=RecordingPublisher(),
        model_version="1",
        max_image_size=512,
    )
    with pytest.raises(RetryableError):
        service.analyse(_stored(CT_SMALL))


def test_redelivered_event_publishes_findings_with_the_same_event_id():
    from radcds.adapters.kafka.codec import decode, encode
    from radcds.domain.events import INSTANCE_STORED

    publisher = RecordingPublisher()
    service = InferenceService(
        models=InProcessModel(),
        retriever=FileRetriever(CT_SMALL),
        publisher=publisher,
        model_version="1",
        max_image_size=512,
    )
    stored = _stored(CT_SMALL)
    msg = encode(
        INSTANCE_STORED, stored.to_payload(), event_id="in-1", source="/t", subject=stored.instance.study_instance_uid
    )
    event = decode(list(msg.headers.items()), None, msg.value)
    service.handle(event)
    service.handle(event)
    assert [e[0] for e in publisher.events] == [FINDINGS_PRODUCED, FINDINGS_PRODUCED]
    assert publisher.events[0][2] == publisher.events[1][2]
