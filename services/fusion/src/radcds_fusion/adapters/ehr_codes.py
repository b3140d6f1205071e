"""The code lists fusion reads the patient's context by (data, not logic), each with where it comes from.

Matching is by exact code (SNOMED CT) or by code prefix (ICD-10-CM categories, dots ignored): fusion has no
terminology server, so a SNOMED CT descendant that is not listed here is not recognised (listed in
docs/fusion.md, "Context sources and auth").
"""

from __future__ import annotations

from collections.abc import Mapping

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
#: radcds's code system for context values without a standard code (shared with referral's clinical context).
RADCDS_CONTEXT = "https://radcds.example.org/fhir/CodeSystem/clinical-context"
#: radcds's code system for image measurements (libs/radcds/src/radcds/domain/codes.py).
RADCDS_MEASUREMENT = "https://radcds.example.org/fhir/CodeSystem/image-measurement"

# ----------------------------------------------------------------------------------------------- Condition
#: Known cancer (Fleischner 2017 does not apply). SNOMED CT 363346000 "Malignant neoplastic disease" (as in the
#: FHIR R4 example Condition-f202), 93880001 "Primary malignant neoplasm of lung", 254637007 "Non-small cell
#: lung cancer", 254632001 "Small cell carcinoma of lung"; ICD-10-CM chapter 2 C00-C96 "Malignant neoplasms"
#: (every C code) and Z85 "Personal history of malignant neoplasm".
CANCER_SNOMED = frozenset({"363346000", "93880001", "254637007", "254632001"})
CANCER_ICD10CM_PREFIXES = ("C", "Z85")
#: COPD (a Fleischner "other known risk factor"). SNOMED CT 13645005 "Chronic obstructive lung disease" (OHDSI
#: chronic lung disease concept set), 87433001 "Pulmonary emphysema"; ICD-10-CM J44 "Other chronic obstructive
#: pulmonary disease" and J43 "Emphysema".
COPD_SNOMED = frozenset({"13645005", "87433001"})
COPD_ICD10CM_PREFIXES = ("J44", "J43")
#: Immunosuppression (Fleischner 2017 does not apply). SNOMED CT 370391006 "Patient immunosuppressed" and
#: 370388006 "Patient immunocompromised" (WHO SMART immunizations value set), 86406008 "Human
#: immunodeficiency virus infection", 234532001 "Immunodeficiency disorder"; ICD-10-CM B20 "HIV disease",
#: D80-D84 "Certain disorders involving the immune mechanism" (immunodeficiencies), Z94 "Transplanted organ
#: and tissue status" and D84.821 "Immunodeficiency due to drugs" (within D84).
IMMUNOSUPPRESSION_SNOMED = frozenset({"370391006", "370388006", "86406008", "234532001"})
IMMUNOSUPPRESSION_ICD10CM_PREFIXES = ("B20", "D80", "D81", "D82", "D83", "D84", "Z94")
#: Conditions that do not count (FHIR R4 condition-ver-status / condition-clinical value sets).
VERIFICATION_EXCLUDED = frozenset({"refuted", "entered-in-error"})
CLINICAL_ACTIVE = frozenset({"active", "recurrence", "relapse"})

# ----------------------------------------------------------------------------------------------- Observation
#: LOINC 72166-2 "Tobacco smoking status" (US Core Smoking Status Observation Codes value set, STU3.1.1-STU8).
SMOKING_STATUS_LOINC = "72166-2"
#: Its SNOMED CT answers (the ONC 2015 Edition / US Core smoking status value set, as listed by ONC's
#: Interoperability Standards Advisory "Representing Patient Tobacco Use"), reduced to current/former/never.
#: 77176002 "Smoker, current status unknown" and 266927001 "Unknown if ever smoked" stay unknown.
SMOKING_STATUS_VALUES: Mapping[str, str] = {
    "449868002": "current",  # Current every day smoker
    "428041000124106": "current",  # Current some day smoker
    "428071000124103": "current",  # Heavy tobacco smoker
    "428061000124105": "current",  # Light tobacco smoker
    "8517006": "former",  # Former smoker (ex-smoker)
    "266919005": "never",  # Never smoker
}
#: SNOMED CT 401201003 "Cigarette pack-years" (valueQuantity, UCUM {pack-years}): US Core STU7 example
#: Observation "pack-years-example" and mCODE's smoking pack-years example.
PACK_YEARS_SNOMED = "401201003"
#: SNOMED CT 160625004 "Date ceased smoking" (valueDateTime; AU Primary Care tobacco profile): years since quitting.
DATE_CEASED_SMOKING_SNOMED = "160625004"
#: radcds context code "years-since-quit" (valueQuantity in years), for EHRs that record the number itself.
YEARS_SINCE_QUIT_RADCDS = "years-since-quit"
#: eGFR (mL/min/1.73 m2): LOINC 98979-8 CKD-EPI 2021 (race-free), 62238-1 CKD-EPI, 33914-3 MDRD, 48642-3 and
#: 48643-1 (MDRD with normals for non-black / black); checked against HL7 Switzerland's lab report IG and the
#: OHDSI reduced-eGFR phenotype.
EGFR_LOINC = ("98979-8", "62238-1", "33914-3", "48642-3", "48643-1")
#: Creatinine in serum or plasma: LOINC 2160-0 [Mass/volume] (mg/dL), 38483-4 in blood [Mass/volume] (mg/dL),
#: 14682-9 [Moles/volume] (umol/L, divided by 88.4 to give mg/dL).
CREATININE_MASS_LOINC = ("2160-0", "38483-4")
CREATININE_MOLAR_LOINC = ("14682-9",)
CREATININE_UMOL_PER_MG_DL = 88.4

# ----------------------------------------------------------------------------------------------- devices
#: Device types recognised as implanted devices worth naming (any active Device is reported; these give the
#: display a standard name). SNOMED CT 14106009 "Cardiac pacemaker", 72506001 "Implantable defibrillator",
#: 52124006 "Central venous catheter".
DEVICE_NAMES: Mapping[str, str] = {
    "14106009": "Cardiac pacemaker",
    "72506001": "Implantable defibrillator",
    "52124006": "Central venous catheter",
}
#: Procedures that leave a device in the patient: SNOMED CT 25267002 "Insertion of intracardiac pacemaker"
#: (FHIR R4 example Procedure-example-implant) → 14106009 Cardiac pacemaker.
IMPLANT_PROCEDURES: Mapping[str, tuple[str, str]] = {
    "25267002": ("14106009", "Cardiac pacemaker"),
}

# ----------------------------------------------------------------------------------------------- imaging
#: Body regions (SNOMED CT body structures) whose prior imaging is read. "chest": 51185008 Thoracic structure
#: (DICOM PS3.16 CID 4031 CHEST), 67734004 Upper trunk structure (as the FHIR R4 ImagingStudy example codes a
#: chest CT), 39607008 Lung structure, 3341006 Right lung, 44029006 Left lung, and the lobes
#: 45653009 (right upper, as in docs/fusion.md), 72481006 (right middle), 266005 (right lower), 44714003 (left
#: upper), 90572001 (left lower).
BODY_REGIONS: Mapping[str, frozenset[str]] = {
    "chest": frozenset(
        {
            "51185008",
            "67734004",
            "39607008",
            "3341006",
            "44029006",
            "45653009",
            "72481006",
            "266005",
            "44714003",
            "90572001",
        }
    ),
}
#: DICOM Body Part Examined values (PS3.16 Annex L) accepted for a region when a study codes its site that way.
BODY_PART_EXAMINED: Mapping[str, frozenset[str]] = {"chest": frozenset({"CHEST", "LUNG", "THORAX"})}
#: Imaging report codes (LOINC) of a region, for a DiagnosticReport that names no ImagingStudy (e.g. an outside
#: study): LOINC 24627-2 "CT Chest" (as in the FHIR R4 ServiceRequest examples) and 36643-5 "XR Chest 2 Views",
#: with the modality each implies.
REGION_REPORT_LOINC: Mapping[str, Mapping[str, str]] = {"chest": {"24627-2": "CT", "36643-5": "DX"}}
#: Pulmonary nodule finding codes of a prior imaging Observation (as in adapters/sr_nodules.py).
NODULE_FINDINGS_SNOMED = frozenset({"427359005", "786838002", "27925004"})
#: Nodule composition: a component coded ``RADCDS_MEASUREMENT#nodule-composition`` whose value is SNOMED CT
#: 35702001 Solid, 1217294009 / 50196008 Ground glass opacity, or radcds ``part-solid``.
COMPOSITION_COMPONENT = "nodule-composition"
LONG_AXIS_SNOMED = "103339001"
SHORT_AXIS_SNOMED = "103340004"
