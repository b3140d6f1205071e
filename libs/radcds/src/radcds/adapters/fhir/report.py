"""Mapping an :class:`~radcds.domain.findings.ImageAnalysis` to FHIR R4 resources.

- Patient keyed by PatientID (+ IssuerOfPatientID), FHIR R4 Patient (8.1), with name, gender and
  birthDate from the DICOM Patient module (US Core Patient).
- A Device per model and version (``Observation.device``, Provenance agent) and the Organization
  operating radcds (``Observation.performer``: R4 Observation.performer does not allow Device).
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
from radcds.domain.findings import ImageAnalysis, ModelIdentity, StudyContext

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
    #: The model's Device and the operating Organization the Observations reference.
    device: dict[str, Any]
    organization: dict[str, Any]


#: FHIR R4 extension data-absent-reason (US Core Patient us-core-6: a name with neither family nor given).
DATA_ABSENT_REASON_EXTENSION = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
#: Patient's Sex (0010,0040) -> FHIR AdministrativeGender (PS3.3 C.7.1.1; R4 administrative-gender).
DICOM_SEX_TO_GENDER = {"M": "male", "F": "female", "O": "other"}
#: The organization that operates radcds: performer of its Observations, owner of its model Devices.
OPERATOR_NAME = "radcds imaging analysis service"
OPERATOR_ID = "radcds"
ORGANIZATION_SYSTEM = "https://radcds.example.org/fhir/sid/organization"
#: Identifier system of a model Device: value ``name|version`` (one Device per model and version).
MODEL_SYSTEM = "https://radcds.example.org/fhir/sid/model"


def human_name(pn: str) -> dict[str, Any] | None:
    """FHIR HumanName from a DICOM PN alphabetic group ``family^given^middle^prefix^suffix`` (PS3.5 6.2.1.1)."""
    parts = [p.strip() for p in pn.split("=")[0].split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    givens = [g for g in (given, *middle.split(" ")) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = prefix.split(" ")
    if suffix:
        name["suffix"] = suffix.split(" ")
    if not name:
        return None
    name["text"] = " ".join([*name.get("prefix", []), *givens, family, *name.get("suffix", [])]).strip()
    return name


def patient_identifier_system(issuer: str) -> str:
    """Identifier.system from Issuer of Patient ID (0010,0021): an OID as ``urn:oid:``, a URI as is, else ours."""
    if not issuer:
        return codes.RADCDS_PATIENT_ID
    if all(p.isdigit() for p in issuer.split(".")) and "." in issuer:
        return f"urn:oid:{issuer}"
    if issuer.startswith(("http://", "https://", "urn:")):
        return issuer
    return f"urn:radcds:issuer:{issuer}"


def patient(context: StudyContext) -> dict[str, Any]:
    """The Patient from the DICOM Patient module (PS3.3 C.7.1.1), shaped for US Core Patient.

    identifier from Patient ID (0010,0020) and its issuer (0010,0021); name from Patient's Name
    (0010,0010), or a name carrying data-absent-reason ``unknown`` when the header has none (us-core-6);
    gender from Patient's Sex (0010,0040) M/F/O, else ``unknown``; birthDate from (0010,0030).
    """
    identifier: dict[str, Any] = {
        "use": "usual",
        "type": {"coding": [{"system": codes.V2_0203, "code": "MR", "display": "Medical record number"}]},
        "system": patient_identifier_system(context.issuer_of_patient_id),
        "value": context.patient_id or "UNKNOWN",
    }
    if context.issuer_of_patient_id:
        identifier["assigner"] = {"display": context.issuer_of_patient_id}
    name = human_name(context.patient_name)
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id_for(context),
        "identifier": [identifier],
        "name": [name or {"extension": [{"url": DATA_ABSENT_REASON_EXTENSION, "valueCode": "unknown"}]}],
        "gender": DICOM_SEX_TO_GENDER.get(context.patient_sex.upper(), "unknown"),
    }
    birth = context.patient_birth_date
    if len(birth) == 8 and birth.isdigit():
        out["birthDate"] = f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"
    return out


def _has_name(p: dict[str, Any]) -> bool:
    return any(n.get("family") or n.get("given") or n.get("text") for n in p.get("name", []))


def merge_patient(existing: dict[str, Any] | None, from_header: dict[str, Any]) -> dict[str, Any]:
    """The Patient to store: the stored one (e.g. from the EHR order, authoritative) filled from the DICOM header.

    name, gender and birthDate are taken from the header only when the stored Patient has none
    (a data-absent name and gender ``unknown`` count as none); identifiers are added, never removed.
    """
    if existing is None:
        return from_header
    merged = {k: v for k, v in existing.items() if k != "meta"}
    if not _has_name(merged) and _has_name(from_header):
        merged["name"] = from_header["name"]
    merged.setdefault("name", from_header["name"])
    if merged.get("gender", "unknown") == "unknown":
        merged["gender"] = from_header["gender"]
    if "birthDate" not in merged and "birthDate" in from_header:
        merged["birthDate"] = from_header["birthDate"]
    known = {(i.get("system"), i.get("value")) for i in merged.get("identifier", [])}
    merged["identifier"] = list(merged.get("identifier", [])) + [
        i for i in from_header["identifier"] if (i.get("system"), i.get("value")) not in known
    ]
    return merged


def organization_id() -> str:
    """Id of the Organization that operates radcds."""
    return resource_id("Organization", OPERATOR_ID)


def operator_organization() -> dict[str, Any]:
    """The Organization operating radcds (US Core Organization: active, name, identifier)."""
    return {
        "resourceType": "Organization",
        "id": organization_id(),
        "identifier": [{"system": ORGANIZATION_SYSTEM, "value": OPERATOR_ID}],
        "active": True,
        "name": OPERATOR_NAME,
    }


def operator_reference() -> dict[str, str]:
    """Reference to :func:`operator_organization`."""
    return {"reference": f"Organization/{organization_id()}", "display": OPERATOR_NAME}


def device_id(model: ModelIdentity) -> str:
    """Id of the Device standing for one model version."""
    return resource_id("Device", model.name, model.version)


def model_label(model: ModelIdentity) -> str:
    """How a model version is named in displays: ``radcds model NAME version V (not for diagnostic use)``."""
    return f"radcds model {model.name} version {model.version} (not for diagnostic use)"


def model_device(model: ModelIdentity) -> dict[str, Any]:
    """A Device per model and version (FHIR R4 Device 8.10: software; referenced by Observation.device)."""
    return {
        "resourceType": "Device",
        "id": device_id(model),
        "identifier": [{"system": MODEL_SYSTEM, "value": f"{model.name}|{model.version}"}],
        "status": "active",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": "Image analysis software (radcds model)"},
        "version": [{"value": model.version}],
        "owner": operator_reference(),
        "note": [{"text": "Quantitative image analysis; not for diagnostic use."}],
    }


def device_reference(model: ModelIdentity) -> dict[str, str]:
    """Reference to :func:`model_device`."""
    return {"reference": f"Device/{device_id(model)}", "display": model_label(model)}


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
        # R4 Observation.performer allows no Device: the model is Observation.device, the operator the performer.
        "performer": [operator_reference()],
        "device": device_reference(model),
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
                "who": device_reference(model),
                "onBehalfOf": operator_reference(),
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
        device=model_device(analysis.model),
        organization=operator_organization(),
    )
