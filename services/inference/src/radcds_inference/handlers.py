"""Use case: analyse an announced (or requested) study with the models whose envelope fits each series.

For each series and each active manifest model (``models/manifest.json``):

1. the series' modality is outside every model's envelope (e.g. an SR): nothing is retrieved;
2. the instances are retrieved over WADO-RS once, and the envelope (:mod:`radcds_inference.domain.envelope`)
   decides per model: ``NOT_APPLICABLE`` → nothing; ``NOT_ANALYSED`` → a finding saying
   ``not analysed: <reason>``; ``RUN`` → preprocess once per series and preprocessing spec
   (modality/VOI LUT, MONOCHROME1, resampling, INT16), call Triton with the slices batched,
   interpret the outputs (:func:`radcds_inference.domain.model_outputs.interpret_series`), build the DICOM SR
   (TID 1500) and store it in imaging over STOW-RS;
3. one ``ImagingFindingsProduced`` per (series, model), with a deterministic event id.

An SR that this service stored for the same series, instances, model and version is in later
announcements of the study: that (series, model) is skipped, so storing the SR never loops.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from radcds.adapters.kafka.codec import DecodedEvent
from radcds.adapters.kafka.consumer import RetryableError
from radcds.domain.events import FINDINGS_PRODUCED, STUDY_AVAILABLE, ImagingFindingsProduced, ImagingStudyAvailable
from radcds.domain.findings import (
    ImageAnalysis,
    InstanceReference,
    KeyImageReference,
    ModelIdentity,
    StudyContext,
)
from radcds.domain.ports import EventPublisher
from radcds_inference.adapters.dicom.preprocess import PreparedSeries, prepare_series, series_attributes
from radcds_inference.adapters.dicom.sr import derived_uid, measurement_report, part10_bytes
from radcds_inference.adapters.study_codec import study_from_imaging_study
from radcds_inference.adapters.triton.errors import TritonUnavailable
from radcds_inference.domain.envelope import Decision, ManifestEntry, ModelManifest, PreprocessingSpec
from radcds_inference.domain.model_outputs import SeriesOutputs, interpret_series
from radcds_inference.domain.study import SeriesLocator, StudyLocator

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Namespace of findings event ids: redelivery of the same input yields the same id.
FINDINGS_NAMESPACE = uuid.UUID("0b8f3a52-64c1-4c4e-a1d4-3f0f2f1f7c11")
#: Outputs every analysing model returns (models/*/config.pbtxt).
MODEL_OUTPUTS = ("STATUS", "MEASUREMENTS", "LOCATIONS")


class ModelPort(Protocol):
    """Port: run a model on a batch of inputs (Triton in production)."""

    async def infer(
        self, model: str, version: str, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """Outputs by name, first axis = batch; raise ``TritonUnavailable`` when the server is not there."""


class DicomWebPort(Protocol):
    """Port: imaging's DICOMweb (WADO-RS, QIDO-RS, STOW-RS)."""

    async def retrieve_instance(self, url: str) -> bytes:
        """Part 10 bytes; ``RetryableError`` when imaging is unavailable."""

    async def find_study(self, study_instance_uid: str) -> StudyLocator:
        """The study's series and instances; ``LookupError`` when imaging has none."""

    async def store(self, part10: bytes, *, study_instance_uid: str) -> None:
        """Store one instance (a duplicate counts as stored)."""


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """One (series, model) result: the analysis and, when the model ran, its SR."""

    analysis: ImageAnalysis
    series_instance_uid: str
    event_key: str
    report: Dataset | None = None


def study_context(ds: Dataset) -> StudyContext:
    """Patient and order context from an instance's header (PS3.3 C.7.1.1, C.7.2.1)."""

    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "").strip()

    return StudyContext(
        patient_id=text("PatientID"),
        issuer_of_patient_id=text("IssuerOfPatientID"),
        accession_number=text("AccessionNumber")[:16],
        modality=text("Modality"),
        study_date=text("StudyDate") if len(text("StudyDate")) == 8 else "",
        study_time=text("StudyTime"),
        study_description=text("StudyDescription")[:64],
        # Patient's Name (PN: the alphabetic group before any '='), Sex and Birth Date (PS3.3 C.7.1.1).
        patient_name=text("PatientName").split("=")[0][:324],
        patient_sex=text("PatientSex").upper() if text("PatientSex").upper() in {"M", "F", "O"} else "",
        patient_birth_date=text("PatientBirthDate") if re.fullmatch(r"[0-9]{8}", text("PatientBirthDate")) else "",
    )


def model_inputs(entry: ManifestEntry, series: PreparedSeries) -> dict[str, npt.NDArray[Any]]:
    """The model's input tensors (manifest ``inputs.tensors``) for every slice of ``series``."""
    n = series.pixels.shape[0]
    row, column = series.pixel_spacing_mm or (0.0, 0.0)
    known: dict[str, Callable[[], npt.NDArray[Any]]] = {
        "IMAGE": lambda: series.pixels,
        "PIXEL_SPACING": lambda: np.tile(series.spacing_vector(), (n, 1)),
        "SPACING": lambda: np.tile(np.array([row, column, series.slice_thickness_mm or 0.0], np.float32), (n, 1)),
    }
    out = {}
    for tensor in entry.inputs:
        if tensor.name not in known:
            raise ValueError(f"{entry.name}: no preprocessing produces input {tensor.name}")
        out[tensor.name] = known[tensor.name]()
    return out


def sr_uids(study: str, series: SeriesLocator, model: ModelIdentity) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the SR of one (series, instances, model, version)."""
    return (
        derived_uid("sr-series", study, model.name, model.version),
        derived_uid("sr", series.series_instance_uid, series.instances_digest, model.name, model.version),
    )


class InferenceService:
    """Analyses studies (async core) and handles ``ImagingStudyAvailable`` events (sync, for the consumer)."""

    def __init__(
        self,
        *,
        manifest: ModelManifest,
        models: ModelPort,
        dicomweb: DicomWebPort,
        publisher: EventPublisher,
        run: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
        store_reports: bool = True,
    ) -> None:
        self._manifest = manifest
        self._models = models
        self._dicomweb = dicomweb
        self._publisher = publisher
        self._run = run or asyncio.run
        self._store_reports = store_reports

    @property
    def manifest(self) -> ModelManifest:
        """The model manifest in use."""
        return self._manifest

    # ---- Kafka entrypoint ------------------------------------------------------------
    def handle(self, event: DecodedEvent) -> None:
        """Handle one ``ImagingStudyAvailable`` event (others are ignored); Triton down → ``RetryableError``."""
        if event.kind is not STUDY_AVAILABLE:
            return
        available = ImagingStudyAvailable.from_payload(event.payload)
        study = study_from_imaging_study(available.imaging_study, study_instance_uid=available.study_instance_uid)
        try:
            results: list[SeriesResult] = self._run(
                self.analyse_study(study, store_reports=self._store_reports, skip_reported=True)
            )
        except TritonUnavailable as exc:
            raise RetryableError(str(exc)) from exc
        for result in results:
            self._publisher.publish(
                FINDINGS_PRODUCED,
                ImagingFindingsProduced(result.analysis).to_payload(),
                event_id=str(uuid.uuid5(FINDINGS_NAMESPACE, result.event_key)),
                subject=study.study_instance_uid,
            )
        log.info(
            "study analysed",
            extra={"event_id": event.id, "findings_events": len(results), "version": available.version},
        )

    # ---- use case ----------------------------------------------------------------------
    async def find_study(self, study_instance_uid: str) -> StudyLocator:
        """The series and instances imaging holds for a study (QIDO-RS); LookupError when none."""
        return await self._dicomweb.find_study(study_instance_uid)

    def entries(self, model_names: Sequence[str] = ()) -> tuple[ManifestEntry, ...]:
        """Active models, or those named (KeyError for a name the manifest lacks or that is not active)."""
        active = self._manifest.active()
        if not model_names:
            return active
        by_name = {e.name: e for e in active}
        missing = [n for n in model_names if n not in by_name]
        if missing:
            raise KeyError(", ".join(missing))
        return tuple(by_name[n] for n in model_names)

    async def analyse_study(
        self,
        study: StudyLocator,
        *,
        model_names: Sequence[str] = (),
        store_reports: bool = False,
        skip_reported: bool = False,
    ) -> list[SeriesResult]:
        """Every series of ``study`` with the models that apply; series are analysed concurrently."""
        entries = self.entries(model_names)
        existing = study.sop_instance_uids if skip_reported else frozenset()
        per_series = await asyncio.gather(
            *(
                self.analyse_series(study.study_instance_uid, s, entries, existing, store_reports=store_reports)
                for s in study.series
            )
        )
        return [r for results in per_series for r in results]

    async def analyse_series(
        self,
        study_uid: str,
        series: SeriesLocator,
        entries: Sequence[ManifestEntry],
        existing: frozenset[str] = frozenset(),
        *,
        store_reports: bool = False,
    ) -> list[SeriesResult]:
        """One series with each of ``entries`` (see the module docstring)."""
        modality = series.modality.strip().upper()
        candidates = []
        for entry in entries:
            if modality not in entry.envelope.modalities or not series.instances:
                continue  # NOT_APPLICABLE: another modality (SR, SEG, ...), nothing to retrieve
            if sr_uids(study_uid, series, ModelIdentity(entry.name, entry.version))[1] in existing:
                continue  # this service already analysed these instances with this model version
            candidates.append(entry)
        if not candidates:
            return []
        datasets = await self._retrieve(series)
        attributes = series_attributes(datasets[0])
        context = study_context(datasets[0])
        prepared: dict[tuple[PreprocessingSpec, str], PreparedSeries | ValueError] = {}
        results = []
        for entry in candidates:
            decision = entry.assess(attributes)
            if decision.decision is Decision.NOT_APPLICABLE:
                continue
            model = ModelIdentity(entry.name, entry.version)
            key = f"{study_uid}:{series.series_instance_uid}:{series.instances_digest}:{model.name}:{model.version}"
            first = _reference(datasets[0])
            if not decision.run:
                analysis = ImageAnalysis(first, context, model, not_analysed_reason=decision.reason)
                results.append(SeriesResult(analysis, series.series_instance_uid, key))
                continue
            spec = (entry.preprocessing, entry.per)
            if spec not in prepared:
                prepared[spec] = _prepare(datasets, entry.preprocessing, entry.per)
            ready = prepared[spec]
            if isinstance(ready, ValueError):
                reason = f"not analysed: {entry.name}: {ready}"
                results.append(
                    SeriesResult(
                        ImageAnalysis(first, context, model, not_analysed_reason=reason),
                        series.series_instance_uid,
                        key,
                    )
                )
                continue
            analysis = await self._run_model(entry, ready, datasets, context, attributes.view_position)
            report = None
            if analysis.analysed:
                sr_series, sr_sop = sr_uids(study_uid, series, model)
                report = measurement_report(analysis, datasets, series_uid=sr_series, sop_instance_uid=sr_sop)
                if store_reports:
                    await self._dicomweb.store(part10_bytes(report), study_instance_uid=study_uid)
                    analysis = replace(
                        analysis,
                        structured_report=InstanceReference(study_uid, sr_series, sr_sop, Comprehensive3DSRStorage),
                    )
            results.append(SeriesResult(analysis, series.series_instance_uid, key, report))
        return results

    async def _retrieve(self, series: SeriesLocator) -> list[Dataset]:
        blobs = await asyncio.gather(*(self._dicomweb.retrieve_instance(i.retrieve_url) for i in series.instances))
        return [pydicom.dcmread(io.BytesIO(b)) for b in blobs]

    async def _run_model(
        self,
        entry: ManifestEntry,
        series: PreparedSeries,
        datasets: Sequence[Dataset],
        context: StudyContext,
        view_position: str,
    ) -> ImageAnalysis:
        outputs = await self._models.infer(entry.name, entry.version, model_inputs(entry, series), MODEL_OUTPUTS)
        interpretation = interpret_series(
            entry,
            SeriesOutputs(
                status=tuple(int(s) for s in np.asarray(outputs["STATUS"]).reshape(-1)),
                measurements=tuple(tuple(float(v) for v in row) for row in np.asarray(outputs["MEASUREMENTS"])),
                locations=tuple(tuple(int(v) for v in row) for row in np.asarray(outputs["LOCATIONS"])),
                downsampling_factor=series.downsampling_factor,
            ),
            view_position=view_position,
        )
        model = ModelIdentity(entry.name, entry.version)
        by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
        if interpretation.not_analysed_reason:
            first = _reference(by_uid[series.sop_instance_uids[0]])
            return ImageAnalysis(first, context, model, not_analysed_reason=interpretation.not_analysed_reason)
        key = by_uid[series.sop_instance_uids[interpretation.key_slice]]
        reference = _reference(key)
        return ImageAnalysis(
            reference,
            context,
            model,
            measurements=interpretation.measurements,
            findings=interpretation.findings,
            critical=interpretation.critical,
            location=interpretation.location,
            key_image=KeyImageReference(reference.sop_instance_uid, reference.sop_class_uid, 1),
        )


def _reference(ds: Dataset) -> InstanceReference:
    return InstanceReference(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    )


def _prepare(datasets: Sequence[Dataset], spec: PreprocessingSpec, per: str) -> PreparedSeries | ValueError:
    """Preprocess once; ``per == "instance"`` keeps the first instance (one image per analysis)."""
    try:
        return prepare_series(list(datasets) if per == "slice" else [datasets[0]], spec)
    except ValueError as exc:
        return exc
