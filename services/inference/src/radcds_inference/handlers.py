"""Use case: analyse a stored instance with the models that apply, publish the findings."""

from __future__ import annotations

import io
import logging
import uuid
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pydicom

from radcds.adapters.dicom.pixels import modality_unit, prepare_image
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.adapters.kafka.consumer import RetryableError
from radcds.adapters.triton.client import TritonUnavailable
from radcds.domain.events import (
    FINDINGS_PRODUCED,
    INSTANCE_STORED,
    ImagingFindingsProduced,
    ImagingInstanceStored,
)
from radcds.domain.findings import ImageAnalysis, ModelIdentity
from radcds.domain.models import PIXEL_STATISTICS, pixel_statistics_measurements
from radcds.domain.ports import EventPublisher

log = logging.getLogger(__name__)
#: Namespace of findings event ids: redelivery of the same input yields the same id.
FINDINGS_NAMESPACE = uuid.UUID("0b8f3a52-64c1-4c4e-a1d4-3f0f2f1f7c11")


class ImageModelPort(Protocol):
    """Port: run a model on one image."""

    def infer_image(self, model: str, image: npt.NDArray[np.int16], *, version: str = "") -> npt.NDArray[np.float32]:
        """Return the model's output vector for ``image``."""


class InstanceRetriever(Protocol):
    """Port: fetch a Part 10 instance (WADO-RS)."""

    def fetch(self, url: str) -> bytes:
        """Return the instance bytes; raise ``RetryableError`` when the source is unavailable."""


class InferenceService:
    """Runs ``pixel_statistics`` on each stored instance and publishes one findings event."""

    def __init__(
        self,
        *,
        models: ImageModelPort,
        retriever: InstanceRetriever,
        publisher: EventPublisher,
        model_version: str,
        max_image_size: int,
    ) -> None:
        self._models = models
        self._retriever = retriever
        self._publisher = publisher
        self._model = ModelIdentity(PIXEL_STATISTICS, model_version)
        self._max_image_size = max_image_size

    def handle(self, event: DecodedEvent) -> None:
        """Handle one ``ImagingInstanceStored`` event (others are ignored)."""
        if event.kind is not INSTANCE_STORED:
            return
        stored = ImagingInstanceStored.from_payload(event.payload)
        analysis = self.analyse(stored)
        self._publisher.publish(
            FINDINGS_PRODUCED,
            ImagingFindingsProduced(analysis).to_payload(),
            event_id=str(uuid.uuid5(FINDINGS_NAMESPACE, f"{event.id}:{self._model.name}:{self._model.version}")),
            subject=stored.instance.study_instance_uid,
        )

    def analyse(self, stored: ImagingInstanceStored) -> ImageAnalysis:
        """Retrieve, preprocess once, and run the model; out-of-envelope input says why."""
        data = self._retriever.fetch(stored.retrieve_url)
        ds = pydicom.dcmread(io.BytesIO(data))
        try:
            image = prepare_image(ds, max_size=self._max_image_size)
            unit = modality_unit(ds)
        except ValueError as exc:
            return ImageAnalysis(
                stored.instance, stored.context, self._model, not_analysed_reason=f"not analysed: {exc}"
            )
        try:
            values = self._models.infer_image(self._model.name, image, version=self._model.version)
        except TritonUnavailable as exc:
            raise RetryableError(str(exc)) from exc
        return ImageAnalysis(
            stored.instance,
            stored.context,
            self._model,
            measurements=pixel_statistics_measurements([float(v) for v in values], pixel_unit=unit),
        )
