"""A model's result as a DICOM SR: TID 1500 Measurement Report in a Comprehensive 3D SR (highdicom).

Content (PS3.16 TID 1500 "Measurement Report"):

- observation context (TID 1001/1004): the observer is a **device**, the algorithm: name
  ``radcds <model>``, manufacturer ``radcds``, model name and version (the algorithm's version);
- one measurement group (TID 1501 "Measurement and Qualitative Evaluation Group") with a
  tracking identifier, the **key image** as its source image (SELECTED FROM IMAGE), each
  measurement (TID 300) with its UCUM unit and algorithm identification (TID 4019), and each
  finding as a qualitative evaluation "Finding" (DCM 121071) = SNOMED CT code;
- a "Qualitative Evaluations" container (UMLS C0034375, TID 1500 row 12) holding one TEXT item
  "Comment" (DCM 121106, TID 1500 row 14) saying **NOT FOR DIAGNOSTIC USE** and where the result
  lies. TID 1500 has no TEXT row directly under its root; rows 12-14 are where the template puts
  report-level free-text evaluations (PixelMed's DicomSRValidator checks this).

Header attributes beyond highdicom's defaults:

- **Coding Scheme Identification Sequence** (0008,0110), PS3.3 C.12.1 (SOP Common Module): one item
  (designator, name, responsible organization) for each private coding scheme ("99" prefix,
  PS3.16 8.2) used in the content tree; the standard schemes (DCM, SCT, LN, UCUM, UMLS) need none.
- **De-identification Method** (0012,0063) / **De-identification Method Code Sequence**
  (0012,0064), PS3.3 C.7.1.1 (Patient Module), Type 1C when Patient Identity Removed (0012,0062)
  is YES: highdicom copies Patient Identity Removed from the evidence, so both are copied from the
  evidence too; evidence that says YES without either gets a method text saying so.

The SR's Series and SOP Instance UIDs are derived from the analysed series, model and version
(``2.25.<uuid5>``), so re-running the same analysis yields the same instance (imaging stores a
SOP Instance once; a second STOW of it is a duplicate, not a new study update).
"""

from __future__ import annotations

import copy
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
#: The private schemes' Coding Scheme Identification Sequence items (PS3.3 C.12.1, Table C.12-1):
#: designator -> (Coding Scheme Name, Responsible Organization).
PRIVATE_SCHEMES = {RADCDS_SCHEME: ("radcds measurement codes", "radcds project")}
#: De-identification Method (LO, at most 64 characters) written when the evidence says Patient
#: Identity Removed YES but names no method (PS3.3 C.7.1.1: one of 0012,0063 / 0012,0064 is then Type 1).
DEIDENTIFICATION_METHOD_NOT_STATED = "identity removed upstream; method not stated in source images"
#: TID 1500 row 12 "Qualitative Evaluations" (pydicom's code dictionary lacks this UMLS code).
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
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
    # TID 1500 rows 12-14: CONTAINS CONTAINER "Qualitative Evaluations" > CONTAINS TEXT (any concept name).
    evaluations = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    evaluations.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=dcm_codes.DCM.Comment, value=note[:1024], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        ]
    )
    root.ContentSequence.append(evaluations)
    with warnings.catch_warnings():
        # highdicom warns about single-component Patient's Names copied from the evidence: not ours to fix.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        sr = hd.sr.Comprehensive3DSR(
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
    _identify_private_schemes(sr)
    _copy_deidentification_method(sr, evidence)
    return sr


def _designators(items: Sequence[Dataset]) -> set[str]:
    """Every Coding Scheme Designator in a content tree (concept names, code values, units)."""
    found: set[str] = set()
    for item in items:
        for element in item:
            if element.VR == "SQ":
                found |= _designators(element.value)
            elif element.tag == 0x00080102:  # Coding Scheme Designator
                found.add(str(element.value))
    return found


def _identify_private_schemes(sr: Dataset) -> None:
    """Add a Coding Scheme Identification Sequence (0008,0110) item for each private scheme in the
    content (PS3.3 C.12.1: designator; name and responsible organization, Type 3, given as well)."""
    used = _designators(sr.ContentSequence) | _designators(sr.get("ConceptNameCodeSequence", []))
    ours = sorted(used & PRIVATE_SCHEMES.keys())
    items = []
    for designator in ours:
        item = Dataset()
        item.CodingSchemeDesignator = designator
        item.CodingSchemeName, item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEMES[designator]
        items.append(item)
    if items:
        existing = [i for i in sr.get("CodingSchemeIdentificationSequence", []) if i.CodingSchemeDesignator not in ours]
        sr.CodingSchemeIdentificationSequence = existing + items


def _copy_deidentification_method(sr: Dataset, evidence: Sequence[Dataset]) -> None:
    """PS3.3 C.7.1.1: with Patient Identity Removed (0012,0062) YES, De-identification Method
    (0012,0063) or its Code Sequence (0012,0064) is Type 1C. Copied from the first evidence
    instance that has either; if none has, a method text saying the source did not state it."""
    if str(sr.get("PatientIdentityRemoved", "")).upper() != "YES":
        return
    source = next(
        (
            ds
            for ds in evidence
            if ds.get("DeidentificationMethod") or len(ds.get("DeidentificationMethodCodeSequence", [])) > 0
        ),
        None,
    )
    if source is None:
        sr.DeidentificationMethod = DEIDENTIFICATION_METHOD_NOT_STATED
        return
    if source.get("DeidentificationMethod"):
        sr.DeidentificationMethod = source.DeidentificationMethod
    if len(source.get("DeidentificationMethodCodeSequence", [])) > 0:
        sr.DeidentificationMethodCodeSequence = copy.deepcopy(source.DeidentificationMethodCodeSequence)


def part10_bytes(dataset: Dataset) -> bytes:
    """The data set as a Part 10 file (Explicit VR Little Endian), ready for STOW-RS or C-STORE."""
    out = io.BytesIO()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
