"""The EHR's test patients, as one FHIR R4 transaction Bundle (FHIR R4 §3.1.0.11 batch/transaction).

Four synthetic patients (no real person; names invented) for fusion's EHR context tests. Every resource has a
client-assigned id and is written with PUT, so loading the Bundle twice changes nothing. Where each value comes
from:

- codes: the code lists in services/fusion/src/radcds_fusion/adapters/ehr_codes.py (each cited there);
- clinical values: typical of the patients they stand for (30 pack-years, current smoker: the USPSTF 2021 lung
  cancer screening population is 50-80 years with >= 20 pack-years; a 6 mm solid nodule in the right upper lobe is
  a Fleischner 2017 "6-8 mm" nodule; eGFR and creatinine in normal adult ranges);
- the prior chest CT is dated 180 days before the day the Bundle is built (``today``), so that it is always a
  prior of "months before" whatever day the tests run;
- study UIDs are UUID-derived UIDs (DICOM PS3.5 §B.2, root 2.25) fixed here.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
RADCDS_MEASUREMENT = "https://radcds.example.org/fhir/CodeSystem/image-measurement"

SMOKER = "ehr-smoker-copd"
PACEMAKER = "ehr-pacemaker"
YOUNG = "ehr-young"
CANCER = "ehr-cancer"
PRIOR_CT_UID = "2.25.185331725403924530926105913385407466201"
PRIOR_CT_DAYS_BEFORE = 180


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _patient(pid: str, family: str, given: str, gender: str, birth: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "https://radcds.example.org/fhir/sid/test-mrn", "value": f"MRN-{pid}"}],
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
    }


def _condition(cid: str, pid: str, codings: list[dict[str, str]], text: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}
                ]
            }
        ],
        "code": {"coding": codings, "text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def _obs(oid: str, pid: str, category: str, code: dict[str, Any], when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def resources(today: date) -> list[dict[str, Any]]:
    """Every resource of the four patients."""
    prior = (today - timedelta(days=PRIOR_CT_DAYS_BEFORE)).isoformat()
    recent = (today - timedelta(days=30)).isoformat()
    smoking_status = _cc(LOINC, "72166-2", "Tobacco smoking status")
    out: list[dict[str, Any]] = []

    # 1. A 64-year-old current smoker with COPD, 30 pack-years, and a prior chest CT with a 6 mm solid RUL nodule.
    out.append(_patient(SMOKER, "Hale", "Walter", "male", "1962-03-14"))
    out.append(
        _condition(
            f"{SMOKER}-copd",
            SMOKER,
            [
                {"system": SCT, "code": "13645005", "display": "Chronic obstructive lung disease"},
                {"system": ICD10CM, "code": "J44.9", "display": "Chronic obstructive pulmonary disease, unspecified"},
            ],
            "COPD",
            "2019-05-02",
        )
    )
    out.append(
        _obs(
            f"{SMOKER}-smoking",
            SMOKER,
            "social-history",
            smoking_status,
            recent,
            valueCodeableConcept=_cc(SCT, "449868002", "Current every day smoker"),
        )
    )
    out.append(
        _obs(
            f"{SMOKER}-pack-years",
            SMOKER,
            "social-history",
            _cc(SCT, "401201003", "Cigarette pack-years"),
            recent,
            valueQuantity=_qty(30, "{pack-years}"),
        )
    )
    out.append(
        _obs(
            f"{SMOKER}-egfr",
            SMOKER,
            "laboratory",
            _cc(LOINC, "98979-8", "eGFR by CKD-EPI 2021"),
            recent,
            valueQuantity=_qty(78, "mL/min/{1.73_m2}"),
        )
    )
    out.append(
        _obs(
            f"{SMOKER}-creatinine",
            SMOKER,
            "laboratory",
            _cc(LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
            recent,
            valueQuantity=_qty(1.0, "mg/dL"),
        )
    )
    out.append(
        {
            "resourceType": "ImagingStudy",
            "id": f"{SMOKER}-prior-ct",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{PRIOR_CT_UID}"}],
            "status": "available",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "subject": {"reference": f"Patient/{SMOKER}"},
            "started": f"{prior}T09:30:00Z",
            "description": "CT chest without contrast",
            "numberOfSeries": 1,
            "series": [
                {
                    "uid": f"{PRIOR_CT_UID}.1",
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                    "bodySite": {"system": SCT, "code": "51185008", "display": "Thoracic structure"},
                }
            ],
        }
    )
    out.append(
        _obs(
            f"{SMOKER}-prior-nodule",
            SMOKER,
            "imaging",
            _cc(SCT, "786838002", "Pulmonary nodule"),
            f"{prior}T09:30:00Z",
            bodySite=_cc(SCT, "45653009", "Upper lobe of right lung"),
            valueQuantity=_qty(6, "mm"),
            derivedFrom=[{"reference": f"ImagingStudy/{SMOKER}-prior-ct"}],
            component=[
                {"code": _cc(SCT, "103339001", "Long axis"), "valueQuantity": _qty(6.4, "mm")},
                {"code": _cc(SCT, "103340004", "Short axis"), "valueQuantity": _qty(5.6, "mm")},
                {
                    "code": {"coding": [{"system": RADCDS_MEASUREMENT, "code": "nodule-composition"}]},
                    "valueCodeableConcept": _cc(SCT, "35702001", "Solid"),
                },
            ],
        )
    )
    out.append(
        {
            "resourceType": "DiagnosticReport",
            "id": f"{SMOKER}-prior-ct-report",
            "status": "final",
            "category": [_cc(LOINC, "LP29684-5", "Radiology")],
            "code": _cc(LOINC, "18748-4", "Diagnostic imaging study"),
            "subject": {"reference": f"Patient/{SMOKER}"},
            "effectiveDateTime": f"{prior}T09:30:00Z",
            "imagingStudy": [{"reference": f"ImagingStudy/{SMOKER}-prior-ct"}],
            "result": [{"reference": f"Observation/{SMOKER}-prior-nodule"}],
            "conclusion": "6 mm solid nodule in the right upper lobe.",
        }
    )

    # 2. A 78-year-old woman with a cardiac pacemaker (Device and the implant Procedure), never smoker.
    out.append(_patient(PACEMAKER, "Moreau", "Helene", "female", "1948-09-30"))
    out.append(
        {
            "resourceType": "Device",
            "id": f"{PACEMAKER}-device",
            "status": "active",
            "type": _cc(SCT, "14106009", "Cardiac pacemaker"),
            "patient": {"reference": f"Patient/{PACEMAKER}"},
        }
    )
    out.append(
        {
            "resourceType": "Procedure",
            "id": f"{PACEMAKER}-implant",
            "status": "completed",
            "code": _cc(SCT, "25267002", "Insertion of intracardiac pacemaker"),
            "subject": {"reference": f"Patient/{PACEMAKER}"},
            "performedDateTime": "2019-04-05",
            "focalDevice": [{"manipulated": {"reference": f"Device/{PACEMAKER}-device"}}],
        }
    )
    out.append(
        _obs(
            f"{PACEMAKER}-smoking",
            PACEMAKER,
            "social-history",
            smoking_status,
            recent,
            valueCodeableConcept=_cc(SCT, "266919005", "Never smoker"),
        )
    )

    # 3. A patient under 35 (born 1997: Fleischner 2017 does not apply below 35), former smoker who quit in 2022.
    out.append(_patient(YOUNG, "Okafor", "Ada", "female", "1997-06-02"))
    out.append(
        _obs(
            f"{YOUNG}-smoking",
            YOUNG,
            "social-history",
            smoking_status,
            recent,
            valueCodeableConcept=_cc(SCT, "8517006", "Former smoker"),
        )
    )
    out.append(
        _obs(
            f"{YOUNG}-quit",
            YOUNG,
            "social-history",
            _cc(SCT, "160625004", "Date ceased smoking"),
            recent,
            valueDateTime="2022-01-15",
        )
    )

    # 4. A patient with known lung cancer (ICD-10-CM C34.11 and SNOMED CT 93880001), creatinine in umol/L.
    out.append(_patient(CANCER, "Lind", "Erik", "male", "1955-11-20"))
    out.append(
        _condition(
            f"{CANCER}-lung-cancer",
            CANCER,
            [
                {"system": SCT, "code": "93880001", "display": "Primary malignant neoplasm of lung"},
                {
                    "system": ICD10CM,
                    "code": "C34.11",
                    "display": "Malignant neoplasm of upper lobe, right bronchus or lung",
                },
            ],
            "Lung cancer, right upper lobe",
            "2024-02-10",
        )
    )
    out.append(
        _obs(
            f"{CANCER}-creatinine",
            CANCER,
            "laboratory",
            _cc(LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
            recent,
            valueQuantity=_qty(97, "umol/L"),
        )
    )
    return out


def transaction_bundle(today: date) -> dict[str, Any]:
    """The transaction Bundle that loads every test patient (PUT by id: idempotent)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources(today)
        ],
    }
