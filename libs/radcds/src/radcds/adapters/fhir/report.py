"""Mapping an :class:`~radcds.domain.findings.ImageAnalysis` to FHIR R4 resources.

- Patient keyed by PatientID (+ IssuerOfPatientID), FHIR R4 Patient (8.1).
- ImagingStudy per the R4 DICOM mapping (imagingstudy-mappings.html).
- One Observation per measurement (US Core Observation Clinical Result), ``derivedFrom`` the
  ImagingStudy; an analysis that did not run becomes one Observation with
  ``dataAbsentReason`` ``not-performed`` and the reason in ``note``.
- Provenance naming the model and version and the input study (FHIR R4 Provenance, 6.3).
- DiagnosticReport (US Core DiagnosticReport Profile for Report and Note exchange), built by
  the reporting service from all Observations of the study.

Ids are name-based UUIDs, so a redelivered event rewrites the same resources.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from radcds.domain import codes
from radcds.domain.findings import ImageAnalysis, StudyContext

RESOURCE_NAMESPACE = uuid.UUID("3c0d5b8e-2f4b-4b4f-9a55-0d7e8a1b6c21")
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#: v3 ObservationInterpretation AA "Critical abnormal": how a critical result is flagged (v2 OBX-8 AA).
CRITICAL_ABNORMAL = {"system": OBSERVATION_INTERPRETATION, "code": "AA", "display": "Critical abnormal"}
#: SNOMED CT 52101004 "Present": the value of a coded finding Observation (its code is the finding).
FINDING_PRESENT = {"system": codes.SNOMED_CT, "code": "52101004", "display": "Present"}
#: Our code for "an analysis by a model" (an Observation that says a model did not run).
MODEL_ANALYSIS = codes.Coding(codes.RADCDS_MEASUREMENT, "model-analysis", "Analysis by an imaging model")
#: Rules (Provenance.policy) that turn model output into FHIR resources.
RULE_FINDINGS_TO_OBSERVATIONS = "https://radcds.example.org/fhir/rules/findings-to-observations/v1"
RULE_VALIDATED_ENVELOPE = "https://radcds.example.org/fhir/rules/model-validated-envelope/v1"
RULE_CRITICAL_RESULT = "https://radcds.example.org/fhir/rules/critical-result-flag/v1"


def resource_id(*parts: str) -> str:
    """Deterministic id for the resource named by ``parts``."""
    return str(uuid.uuid5(RESOURCE_NAMESPACE, "|".join(parts)))


def coding(c: codes.Coding) -> dict[str, str]:
    """FHIR Coding JSON for a domain code."""
    return {"system": c.system, "code": c.code, "display": c.display}


def dicom_datetime(date: str, time: str) -> str | None:
    """FHIR dateTime from DICOM DA + TM (PS3.5 6.2), or None if the date is absent."""
    if len(date) != 8 or not date.isdigit():
        return None
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    digits = time.split(".")[0]
    if len(digits) >= 4 and digits[:4].isdigit():
        ss = digits[4:6] if len(digits) >= 6 else "00"
        out += f"T{digits[:2]}:{digits[2:4]}:{ss}Z"
    return out


def patient_id_for(context: StudyContext) -> str:
    """Patient resource id from PatientID and its issuer."""
    return resource_id("Patient", context.issuer_of_patient_id, context.patient_id)


def imaging_study_id(study_instance_uid: str) -> str:
    """ImagingStudy resource id from the Study Instance UID."""
    return resource_id("ImagingStudy", study_instance_uid)


def diagnostic_report_id(study_instance_uid: str) -> str:
    """Id of the preliminary DiagnosticReport of a study."""
    return resource_id("DiagnosticReport", study_instance_uid)


@dataclass(frozen=True, slots=True)
class AnalysisResources:
    """The resources one analysis contributes (the DiagnosticReport is assembled separately)."""

    patient: dict[str, Any]
    imaging_study: dict[str, Any]
    observations: list[dict[str, Any]]
    provenance: dict[str, Any]


def patient(context: StudyContext) -> dict[str, Any]:
    """A Patient holding only the identifier from the DICOM Patient module (PS3.3 C.7.1.1)."""
    system = (
        f"urn:radcds:issuer:{context.issuer_of_patient_id}" if context.issuer_of_patient_id else codes.RADCDS_PATIENT_ID
    )
    return {
        "resourceType": "Patient",
        "id": patient_id_for(context),
        "identifier": [
            {
                "type": {"coding": [{"system": codes.V2_0203, "code": "MR"}]},
                "system": system,
                "value": context.patient_id or "UNKNOWN",
            }
        ],
    }


def imaging_study(analysis: ImageAnalysis, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The ImagingStudy, merged with what was already known of the study's series and instances."""
    inst, ctx = analysis.instance, analysis.context
    study: dict[str, Any] = existing or {
        "resourceType": "ImagingStudy",
        "id": imaging_study_id(inst.study_instance_uid),
        "identifier": [{"system": codes.DICOM_UID_SYSTEM, "value": f"urn:oid:{inst.study_instance_uid}"}],
        "status": "available",
        "subject": {"reference": f"Patient/{patient_id_for(ctx)}"},
        "series": [],
    }
    if ctx.accession_number and not any(
        i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN" for i in study["identifier"]
    ):
        study["identifier"].append(
            {"type": {"coding": [{"system": codes.V2_0203, "code": "ACSN"}]}, "value": ctx.accession_number}
        )
    started = dicom_datetime(ctx.study_date, ctx.study_time)
    if started:
        study["started"] = started
    if ctx.study_description:
        study["description"] = ctx.study_description
    series = next((s for s in study["series"] if s["uid"] == inst.series_instance_uid), None)
    if series is None:
        series = {
            "uid": inst.series_instance_uid,
            "modality": {"system": codes.DICOM_DCM, "code": ctx.modality or "OT"},
            "instance": [],
        }
        study["series"].append(series)
    if not any(i["uid"] == inst.sop_instance_uid for i in series["instance"]):
        series["instance"].append(
            {
                "uid": inst.sop_instance_uid,
                "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{inst.sop_class_uid}"},
            }
        )
    modalities = sorted({s["modality"]["code"] for s in study["series"]})
    study["modality"] = [{"system": codes.DICOM_DCM, "code": m} for m in modalities]
    study["numberOfSeries"] = len(study["series"])
    study["numberOfInstances"] = sum(len(s["instance"]) for s in study["series"])
    return study


def observations(analysis: ImageAnalysis, *, effective: str) -> list[dict[str, Any]]:
    """One Observation per measurement, or one ``not-performed`` Observation."""
    inst, model = analysis.instance, analysis.model
    base = {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [{"coding": [coding(codes.OBSERVATION_IMAGING)]}],
        "subject": {"reference": f"Patient/{patient_id_for(analysis.context)}"},
        "effectiveDateTime": effective,
        "derivedFrom": [{"reference": f"ImagingStudy/{imaging_study_id(inst.study_instance_uid)}"}],
        "method": {"text": f"{model.name} v{model.version} (not for diagnostic use)"},
    }
    if not analysis.analysed:
        return [
            {
                **base,
                "id": resource_id("Observation", inst.sop_instance_uid, model.name, "not-analysed"),
                "code": {"coding": [coding(MODEL_ANALYSIS)], "text": f"Analysis by {model.name}"},
                "dataAbsentReason": {
                    "coding": [{"system": DATA_ABSENT_REASON, "code": "not-performed", "display": "Not Performed"}]
                },
                "note": [{"text": analysis.not_analysed_reason}],
            }
        ]
    out = []
    for m in analysis.measurements:
        obs = {
            **base,
            "id": resource_id("Observation", inst.sop_instance_uid, model.name, m.code.code),
            "code": {"coding": [coding(m.code)], "text": m.code.display},
            "valueQuantity": {"value": m.value, "unit": m.unit, "system": codes.UCUM, "code": m.unit},
        }
        if m.critical:
            obs["interpretation"] = [{"coding": [dict(CRITICAL_ABNORMAL)], "text": "Critical result"}]
        out.append(obs)
    for finding in analysis.findings:
        obs = {
            **base,
            "id": resource_id("Observation", inst.sop_instance_uid, model.name, "finding", finding.code),
            "code": {"coding": [coding(finding)], "text": finding.display},
            "valueCodeableConcept": {"coding": [dict(FINDING_PRESENT)], "text": "Present"},
        }
        notes = []
        if analysis.location is not None:
            notes.append(f"Location: {analysis.location.description}")
        if analysis.key_image is not None:
            key = analysis.key_image
            notes.append(f"Key image: SOP Instance {key.sop_instance_uid}, frame {key.frame_number}")
        if analysis.structured_report is not None:
            notes.append(f"DICOM SR (TID 1500): SOP Instance {analysis.structured_report.sop_instance_uid}")
        if notes:
            obs["note"] = [{"text": n} for n in notes]
        if analysis.critical:
            obs["interpretation"] = [{"coding": [dict(CRITICAL_ABNORMAL)], "text": "Critical result"}]
        out.append(obs)
    return out


def provenance(analysis: ImageAnalysis, targets: list[str], *, recorded: datetime) -> dict[str, Any]:
    """Which model (name, version) produced ``targets`` from which study."""
    inst, model = analysis.instance, analysis.model
    return {
        "resourceType": "Provenance",
        "id": resource_id("Provenance", inst.sop_instance_uid, model.name, model.version),
        "target": [{"reference": t} for t in targets],
        "recorded": recorded.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "activity": {"coding": [{"system": codes.DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": [
            {
                "type": {
                    "coding": [
                        {"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}
                    ]
                },
                "who": {"display": f"radcds model {model.name} version {model.version} (not for diagnostic use)"},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "reference": f"ImagingStudy/{imaging_study_id(inst.study_instance_uid)}",
                    "identifier": {"system": codes.DICOM_UID_SYSTEM, "value": f"urn:oid:{inst.sop_instance_uid}"},
                },
            }
        ],
        "policy": [RULE_FINDINGS_TO_OBSERVATIONS, RULE_VALIDATED_ENVELOPE]
        + ([RULE_CRITICAL_RESULT] if analysis.critical or any(m.critical for m in analysis.measurements) else []),
    }


def analysis_resources(
    analysis: ImageAnalysis, *, existing_study: dict[str, Any] | None, now: datetime
) -> AnalysisResources:
    """All resources one analysis contributes, except the DiagnosticReport."""
    ctx = analysis.context
    effective = dicom_datetime(ctx.study_date, ctx.study_time) or now.astimezone(UTC).isoformat()
    obs = observations(analysis, effective=effective)
    return AnalysisResources(
        patient=patient(ctx),
        imaging_study=imaging_study(analysis, existing_study),
        observations=obs,
        provenance=provenance(analysis, [f"Observation/{o['id']}" for o in obs], recorded=now),
    )
