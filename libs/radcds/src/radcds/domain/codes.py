"""Coded concepts used across radcds, as constants rather than scattered strings.

Systems follow the FHIR R4 terminology page (https://hl7.org/fhir/R4/terminologies-systems.html).
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED_CT = "http://snomed.info/sct"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
DICOM_UID_SYSTEM = "urn:dicom:uid"
#: Our own code system for quantitative image measurements that have no LOINC code yet.
RADCDS_MEASUREMENT = "https://radcds.example.org/fhir/CodeSystem/image-measurement"
#: Identifier system for patients keyed by DICOM PatientID when no issuer is known.
RADCDS_PATIENT_ID = "https://radcds.example.org/fhir/sid/dicom-patient-id"


@dataclass(frozen=True, slots=True)
class Coding:
    """A code from a code system (FHIR R4 Coding, section 2.24.0.3)."""

    system: str
    code: str
    display: str


#: LOINC part LP29684-5 "Radiology": the US Core DiagnosticReport category for imaging.
CATEGORY_RADIOLOGY = Coding(LOINC, "LP29684-5", "Radiology")
#: LOINC 18748-4 "Diagnostic imaging study": report code when no study-specific code is known.
REPORT_DIAGNOSTIC_IMAGING_STUDY = Coding(LOINC, "18748-4", "Diagnostic imaging study")
#: v2-0074 "RAD": the HL7 diagnostic service section for radiology.
SECTION_RADIOLOGY = Coding(V2_0074, "RAD", "Radiology")
#: observation-category "imaging".
OBSERVATION_IMAGING = Coding(OBSERVATION_CATEGORY, "imaging", "Imaging")

#: Pixel statistics measured by the `pixel_statistics` model (no LOINC code exists for them).
MEAN_PIXEL_VALUE = Coding(RADCDS_MEASUREMENT, "mean-pixel-value", "Mean pixel value")
PIXEL_VALUE_SD = Coding(RADCDS_MEASUREMENT, "pixel-value-sd", "Pixel value standard deviation")
PIXEL_VALUE_P05 = Coding(RADCDS_MEASUREMENT, "pixel-value-p05", "Pixel value 5th percentile")
PIXEL_VALUE_P95 = Coding(RADCDS_MEASUREMENT, "pixel-value-p95", "Pixel value 95th percentile")
OTSU_THRESHOLD = Coding(RADCDS_MEASUREMENT, "otsu-threshold", "Otsu foreground threshold")
FOREGROUND_FRACTION = Coding(RADCDS_MEASUREMENT, "foreground-fraction", "Fraction of pixels above the Otsu threshold")

#: UCUM units used by measurements.
UNIT_HOUNSFIELD = "[hnsf'U]"
UNIT_PIXEL_VALUE = "{pixel_value}"
UNIT_PERCENT = "%"

# ---- quantitative imaging models (models/*/MODEL_CARD.md) --------------------------------
# No LOINC code exists for these image-derived measurements (checked for the CTR and the
# widths), so they use the radcds measurement system. Findings use SNOMED CT.

#: SNOMED CT 8186001 |Cardiomegaly (disorder)|: chest_ctr, cardiothoracic ratio > 0.5 on a PA view.
CARDIOMEGALY = Coding(SNOMED_CT, "8186001", "Cardiomegaly")
#: SNOMED CT 1386000 |Intracranial hemorrhage (disorder)|: head_ct_hyperdensity candidate, critical.
INTRACRANIAL_HEMORRHAGE = Coding(SNOMED_CT, "1386000", "Intracranial hemorrhage")
#: Findings that must be flagged critical (priority) when reported.
CRITICAL_FINDINGS = frozenset({INTRACRANIAL_HEMORRHAGE})

#: chest_ctr measurements.
CARDIOTHORACIC_RATIO = Coding(RADCDS_MEASUREMENT, "cardiothoracic-ratio", "Cardiothoracic ratio")
CARDIAC_WIDTH = Coding(RADCDS_MEASUREMENT, "cardiac-width", "Maximal horizontal cardiac width")
THORACIC_WIDTH = Coding(RADCDS_MEASUREMENT, "thoracic-width", "Maximal internal thoracic width")

#: head_ct_hyperdensity measurements.
HYPERDENSE_REGION_COUNT = Coding(RADCDS_MEASUREMENT, "hyperdense-region-count", "Number of acute-blood-density regions")
HYPERDENSE_REGION_AREA = Coding(
    RADCDS_MEASUREMENT, "hyperdense-region-area", "Total area of acute-blood-density regions"
)
HYPERDENSE_REGION_VOLUME = Coding(
    RADCDS_MEASUREMENT, "hyperdense-region-volume", "Total volume of acute-blood-density regions"
)
HYPERDENSE_LARGEST_AREA = Coding(
    RADCDS_MEASUREMENT, "hyperdense-largest-region-area", "Area of the largest acute-blood-density region"
)
HYPERDENSE_MAX_HU = Coding(RADCDS_MEASUREMENT, "hyperdense-region-max-hu", "Maximum CT number in the regions")
HYPERDENSE_MEAN_HU = Coding(RADCDS_MEASUREMENT, "hyperdense-region-mean-hu", "Mean CT number in the regions")
BRAIN_AREA = Coding(RADCDS_MEASUREMENT, "intracranial-area", "Intracranial area analysed")

UNIT_RATIO = "{ratio}"
UNIT_MILLIMETRE = "mm"
UNIT_SQUARE_MILLIMETRE = "mm2"
UNIT_CUBIC_MILLIMETRE = "mm3"
UNIT_COUNT = "{count}"

# ---- pulmonary nodules entered by a radiologist (docs/reporting.md "Structured findings") -----
# The codes fusion's TID 1500 reader accepts (services/fusion/.../sr_nodules.py, docs/fusion.md).

#: Finding codes of a pulmonary nodule: SNOMED CT 427359005 |Solitary nodule of lung|, 786838002 |Pulmonary
#: nodule|, 27925004 |Nodule| (DICOM PS3.16 CID 6104).
NODULE_FINDINGS = (
    Coding(SNOMED_CT, "427359005", "Solitary nodule of lung"),
    Coding(SNOMED_CT, "786838002", "Pulmonary nodule"),
    Coding(SNOMED_CT, "27925004", "Nodule"),
)
#: Where a nodule lies: the five lobes, either lung, the lung (SNOMED CT body structures; the code meanings of
#: DICOM PS3.16 CID 6116/CID 4031 as written in a TID 1500 Finding Site).
LUNG_SITES = (
    Coding(SNOMED_CT, "45653009", "Upper lobe of right lung"),
    Coding(SNOMED_CT, "72481006", "Middle lobe of right lung"),
    Coding(SNOMED_CT, "266005", "Lower lobe of right lung"),
    Coding(SNOMED_CT, "44714003", "Upper lobe of left lung"),
    Coding(SNOMED_CT, "90572001", "Lower lobe of left lung"),
    Coding(SNOMED_CT, "3341006", "Right lung"),
    Coding(SNOMED_CT, "44029006", "Left lung"),
    Coding(SNOMED_CT, "39607008", "Lung"),
)
#: DICOM PS3.16 TID 300 size measurements: SNOMED CT 103339001 |Long axis|, 103340004 |Short axis|.
LONG_AXIS = Coding(SNOMED_CT, "103339001", "Long Axis")
SHORT_AXIS = Coding(SNOMED_CT, "103340004", "Short Axis")
#: A component whose value is the nodule's composition (as fusion reads prior nodule Observations).
NODULE_COMPOSITION = Coding(RADCDS_MEASUREMENT, "nodule-composition", "Nodule composition")
#: The mean diameter of the solid part of a part-solid nodule (Fleischner 2017, Lung-RADS v2022): no standard code.
SOLID_PART_DIAMETER = Coding(RADCDS_MEASUREMENT, "solid-part-mean-diameter", "Solid part mean diameter")
#: Compositions by the words both guidelines use: SNOMED CT 35702001 |Solid|, 1217294009 and 50196008 |Ground glass
#: opacity|; no SNOMED CT concept for a part-solid nodule could be confirmed, so radcds's own code stands for it.
NODULE_COMPOSITIONS: dict[tuple[str, str], str] = {
    (SNOMED_CT, "35702001"): "solid",
    (SNOMED_CT, "1217294009"): "ground-glass",
    (SNOMED_CT, "50196008"): "ground-glass",
    (RADCDS_MEASUREMENT, "part-solid"): "part-solid",
}
#: Our code system for how an Observation was made; ``radiologist-entered``: entered by a radiologist with the
#: report, not produced by an algorithm.
RADCDS_OBSERVATION_METHOD = "https://radcds.example.org/fhir/CodeSystem/observation-method"
RADIOLOGIST_ENTERED = Coding(RADCDS_OBSERVATION_METHOD, "radiologist-entered", "Entered by a radiologist")
