"""A model's result as a DICOM SR: TID 1500 Measurement Report in a Comprehensive 3D SR (highdicom).

Content (PS3.16 TID 1500 "Measurement Report"):

- observation context (TID 1001/1004): the observer is a **device**, the algorithm: name
  ``radcds <model>``, manufacturer ``radcds``, model name and version (the algorithm's version);
- one measurement group (TID 1501 "Measurement and Qualitative Evaluation Group") with a
  tracking identifier, the **key image** as its source image (SELECTED FROM IMAGE), each
  measurement (TID 300) with its UCUM unit and algorithm identification (TID 4019), and each
  finding as a qualitative evaluation "Finding" (DCM 121071) = SNOMED CT code;
- a TEXT item "Comment" (DCM 121106) saying **NOT FOR DIAGNOSTIC USE** and where the result lies.

The SR's Series and SOP Instance UIDs are derived from the analysed series, model and version
(``2.25.<uuid5>``), so re-running the same analysis yields the same instance (imaging stores a
SOP Instance once; a second STOW of it is a duplicate, not a new study update).
"""

from __future__ import annotations

import io
import uuid
import warnings
from collections.abc import Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import ExplicitVRLittleEndian

from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.findings import ImageAnalysis

#: Text of every SR radcds writes, in the SR content and its Series Description.
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
MANUFACTURER = "radcds"
#: Private coding scheme designator (PS3.16 8.2: "99" prefix) for the radcds measurement system.
RADCDS_SCHEME = "99RADCDS"
_SCHEMES = {codes.SNOMED_CT: "SCT", codes.LOINC: "LN", codes.DICOM_DCM: "DCM", codes.RADCDS_MEASUREMENT: RADCDS_SCHEME}
_UNIT_MEANINGS = {
    codes.UNIT_RATIO: "ratio",
    codes.UNIT_MILLIMETRE: "millimeter",
    codes.UNIT_SQUARE_MILLIMETRE: "square millimeter",
    codes.UNIT_CUBIC_MILLIMETRE: "cubic millimeter",
    codes.UNIT_COUNT: "count",
    codes.UNIT_HOUNSFIELD: "Hounsfield unit",
    codes.UNIT_PERCENT: "percent",
}
#: SNOMED CT 363679005 |Imaging (procedure)|: the procedure reported when none more specific is known.
IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")
SR_UID_NAMESPACE = uuid.UUID("5c1d0f3e-8a9b-4f27-9d0e-2b7c6a4e1f90")
SR_SERIES_NUMBER = 9900


def derived_uid(*parts: str) -> str:
    """A UID under the ``2.25`` root (PS3.5 B.2) from a UUID v5 of ``parts``: the same parts, the same UID."""
    return f"2.25.{uuid.uuid5(SR_UID_NAMESPACE, '|'.join(parts)).int}"


def coded_concept(coding: Coding) -> hd.sr.CodedConcept:
    """A FHIR-style Coding as a DICOM code (Coding Scheme Designator per PS3.16 Table 8-1)."""
    scheme = _SCHEMES.get(coding.system)
    if scheme is None:
        raise ValueError(f"no DICOM coding scheme designator for {coding.system}")
    return hd.sr.CodedConcept(coding.code, scheme, coding.display)


def unit_concept(unit: str) -> hd.sr.CodedConcept:
    """A UCUM unit as a DICOM code (scheme ``UCUM``)."""
    return hd.sr.CodedConcept(unit, "UCUM", _UNIT_MEANINGS.get(unit, unit))


def measurement_report(
    analysis: ImageAnalysis, evidence: Sequence[Dataset], *, series_uid: str, sop_instance_uid: str
) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) of ``analysis``; ``evidence`` are the analysed instances' headers.

    ``series_uid`` and ``sop_instance_uid`` are the SR's own UIDs (use :func:`derived_uid` so that
    the same analysis always yields the same instance).

    Raises:
        ValueError: the analysis did not run, has no key image, or a code has no DICOM scheme.
    """
    if not analysis.analysed or analysis.key_image is None:
        raise ValueError("only an analysis that ran, with a key image, becomes a measurement report")
    model = analysis.model
    key = analysis.key_image
    algorithm = hd.sr.AlgorithmIdentification(name=f"radcds {model.name}", version=model.version)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", model.name, model.version),
        name=f"radcds {model.name}",
        manufacturer_name=MANUFACTURER,
        model_name=model.name,
        serial_number=model.version,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=dcm_codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    key_dataset = next((ds for ds in evidence if ds.SOPInstanceUID == key.sop_instance_uid), None)
    if key_dataset is None:
        raise ValueError(f"the key image {key.sop_instance_uid} is not among the evidence")
    frames = int(key_dataset.get("NumberOfFrames", 1) or 1)
    source = hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=key.sop_class_uid,
        referenced_sop_instance_uid=key.sop_instance_uid,
        referenced_frame_numbers=[key.frame_number] if frames > 1 else None,
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("tracking", sop_instance_uid),
            identifier=f"{model.name} v{model.version}",
        ),
        algorithm_id=algorithm,
        source_images=[source],
        measurements=[
            hd.sr.Measurement(
                name=coded_concept(m.code),
                value=m.value,
                unit=unit_concept(m.unit),
                algorithm_id=algorithm,
            )
            for m in analysis.measurements
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=dcm_codes.DCM.Finding, value=coded_concept(f)) for f in analysis.findings
        ]
        or None,
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=[group],
    )
    note = f"{NOT_FOR_DIAGNOSTIC_USE}. Produced by radcds {model.name} version {model.version}."
    if analysis.location is not None:
        note += f" Location: {analysis.location.description}."
    if analysis.critical:
        note += " CRITICAL finding: notify the responsible clinician."
    root = report[0]
    root.ContentSequence.append(
        hd.sr.TextContentItem(
            name=dcm_codes.DCM.Comment, value=note[:1024], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
    )
    with warnings.catch_warnings():
        # highdicom warns about single-component Patient's Names copied from the evidence: not ours to fix.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        return hd.sr.Comprehensive3DSR(
            evidence=list(evidence),
            content=root,
            series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=sop_instance_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=model.name,
            software_versions=model.version,
            series_description=f"radcds {model.name} ({NOT_FOR_DIAGNOSTIC_USE})"[:64],
            is_complete=True,
            is_final=False,
            is_verified=False,
        )


def part10_bytes(dataset: Dataset) -> bytes:
    """The data set as a Part 10 file (Explicit VR Little Endian), ready for STOW-RS or C-STORE."""
    out = io.BytesIO()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
