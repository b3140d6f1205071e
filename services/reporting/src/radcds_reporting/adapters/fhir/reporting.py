"""FHIR R4 resources of the reporting workflow: order, report, sign-off, critical-result messages.

- ServiceRequest from an :class:`~radcds_reporting.domain.service_request.OrderDetails` (HL7 v2-to-FHIR
  ORC/OBR -> ServiceRequest: placer ``PLAC``, filler ``FILL``, accession ``ACSN``).
- Patient from the order's PID demographics (HL7 v2-to-FHIR PID -> Patient), :func:`order_patient`.
- DiagnosticReport per US Core DiagnosticReport Profile for Report and Note exchange.
- Provenance of the report (models, inputs, rules) and of each sign-off (FHIR R4 Provenance 6.3).
- Communication of a critical result (FHIR R4 Communication 13.1; ACR Practice Parameter for
  Communication of Diagnostic Imaging Findings) and of its escalation.
"""

from __future__ import annotations

from typing import Any

from radcds.adapters.fhir import report
from radcds.adapters.fhir.report import RULE_CRITICAL_RESULT, coding, operator_reference, resource_id
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.events import ImagingOrderReceived
from radcds.domain.findings import StudyContext
from radcds_reporting.domain.orders import PatientDemographics
from radcds_reporting.domain.report_codes import report_code
from radcds_reporting.domain.service_request import OrderDetails

#: Extension carrying the DICOM Study Instance UID on a ServiceRequest (IHE RAD / v2 ZDS-1, IPC-3).
STUDY_INSTANCE_UID_EXTENSION = "https://radcds.example.org/fhir/StructureDefinition/study-instance-uid"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
RULE_REPORT_ASSEMBLY = "https://radcds.example.org/fhir/rules/diagnostic-report-assembly/v1"
RULE_ESCALATION = "https://radcds.example.org/fhir/rules/critical-result-escalation/v1"
SOFTWARE = "radcds reporting"


def _identifier(type_code: str, value: str, system: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": {"coding": [{"system": codes.V2_0203, "code": type_code}]}, "value": value}
    if system:
        out["system"] = system
    return out


def service_request_id(order: OrderDetails) -> str:
    """Id of an order's ServiceRequest, from its first known key (placer, filler, accession)."""
    if order.placer_order_number:
        return resource_id("ServiceRequest", "placer", order.placer_assigning_authority, order.placer_order_number)
    if order.filler_order_number:
        return resource_id("ServiceRequest", "filler", order.filler_assigning_authority, order.filler_order_number)
    return resource_id("ServiceRequest", "accession", order.accession_number)


def service_request(order: OrderDetails, *, patient_reference: str) -> dict[str, Any]:
    """The ServiceRequest of an imaging order (status active, or revoked when cancelled)."""
    identifiers = []
    if order.placer_order_number:
        identifiers.append(_identifier("PLAC", order.placer_order_number, _system(order.placer_assigning_authority)))
    if order.filler_order_number:
        identifiers.append(_identifier("FILL", order.filler_order_number, _system(order.filler_assigning_authority)))
    if order.accession_number:
        identifiers.append(_identifier("ACSN", order.accession_number))
    if order.study_instance_uid:
        identifiers.append({"system": codes.DICOM_UID_SYSTEM, "value": f"urn:oid:{order.study_instance_uid}"})
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": service_request_id(order),
        "identifier": identifiers,
        "status": order.status,
        "intent": "order",
        "category": [{"coding": [{"system": codes.SNOMED_CT, "code": "363679005", "display": "Imaging"}]}],
        "priority": order.priority,
        "code": {"text": order.code_text or (order.code.display if order.code else "Imaging study")},
        "subject": {"reference": patient_reference},
    }
    if order.code is not None:
        sr["code"]["coding"] = [coding(order.code)]
    if order.study_instance_uid:
        sr["extension"] = [{"url": STUDY_INSTANCE_UID_EXTENSION, "valueId": order.study_instance_uid[:64]}]
    if order.encounter:
        sr["encounter"] = {"reference": order.encounter}
    if order.authored_on:
        sr["authoredOn"] = order.authored_on
    if order.requester:
        sr["requester"] = {"reference": order.requester}
        if order.requester_display:
            sr["requester"]["display"] = order.requester_display
    if order.performers:
        sr["performer"] = [{"reference": p} for p in order.performers]
    if order.reason_text:
        sr["reasonCode"] = [{"text": order.reason_text}]
    return sr


def order_received_event(sr: dict[str, Any], *, order_control: str) -> ImagingOrderReceived:
    """The ``ImagingOrderReceived`` event of a stored ServiceRequest, its keys read back from the resource.

    The inverse of :func:`service_request`: identifiers by type (v2-0203 PLAC, FILL, ACSN) with their
    ``urn:radcds:assigning-authority:`` systems, the Study Instance UID extension, ``subject``, the first
    ``code.coding`` and ``priority``.
    """
    keys: dict[str, tuple[str, str]] = {}
    for ident in sr.get("identifier", []):
        for c in ident.get("type", {}).get("coding", []):
            if c.get("system") == codes.V2_0203 and c.get("code") in ("PLAC", "FILL", "ACSN"):
                authority = str(ident.get("system", "")).removeprefix("urn:radcds:assigning-authority:")
                keys.setdefault(c["code"], (str(ident.get("value", "")), authority))
    study = next(
        (str(e.get("valueId", "")) for e in sr.get("extension", []) if e.get("url") == STUDY_INSTANCE_UID_EXTENSION), ""
    )
    code = next(iter(sr.get("code", {}).get("coding", [])), None)
    return ImagingOrderReceived(
        service_request_id=sr["id"],
        status=sr["status"],
        order_control=order_control,
        placer_order_number=keys.get("PLAC", ("", ""))[0],
        placer_assigning_authority=keys.get("PLAC", ("", ""))[1],
        filler_order_number=keys.get("FILL", ("", ""))[0],
        filler_assigning_authority=keys.get("FILL", ("", ""))[1],
        accession_number=keys.get("ACSN", ("", ""))[0],
        study_instance_uid=study,
        patient_id=str(sr.get("subject", {}).get("reference", "")).removeprefix("Patient/"),
        procedure_code=Coding(code["system"], code["code"], code.get("display", "")) if code else None,
        priority=str(sr.get("priority", "")),
    )


#: HL7 table 0001 (PID-8) -> FHIR administrative-gender (v2-to-FHIR IG, table 0001 -> AdministrativeGender).
V2_SEX_TO_GENDER = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


def fhir_date(v2_date: str) -> str:
    """FHIR ``date`` from an HL7 DT/TS date part ``YYYY[MM[DD]]`` (``YYYY-MM-DD`` and shorter forms)."""
    parts = [v2_date[:4], v2_date[4:6], v2_date[6:8]]
    return "-".join(p for p in parts if p)


def order_patient(demographics: PatientDemographics, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The Patient after an order: the order's PID demographics are authoritative (HL7 v2-to-FHIR PID -> Patient).

    Starts from the stored Patient (``existing``) or a new one keyed like the DICOM path's
    (:func:`radcds.adapters.fhir.report.patient`: PatientID + issuer), then sets what the order
    carries: the MR identifier with PID-3.4 as ``system`` (``urn:radcds:issuer:<CX.4>``) and
    ``assigner.display``, PID-5 as the ``official`` HumanName, PID-8 as ``gender``, PID-7 as
    ``birthDate``. What the order does not carry (e.g. no PID-7) stays as stored.
    """
    ident = demographics.identifier
    context = StudyContext(patient_id=ident.value, issuer_of_patient_id=ident.issuer)
    fresh = report.patient(context)
    patient: dict[str, Any] = dict(existing) if existing is not None else fresh
    mr = dict(fresh["identifier"][0])
    if ident.issuer:
        mr["assigner"] = {"display": ident.issuer}
    others = [i for i in patient.get("identifier", []) if i.get("system") != mr["system"]]
    patient["identifier"] = [mr, *others]
    name = demographics.name
    if name is not None and name.family:
        human: dict[str, Any] = {"use": "official", "family": name.family}
        given = [g for g in (name.given, name.middle) if g]
        if given:
            human["given"] = given
        # The order's name replaces the official one and a name marked data-absent (no name in the header).
        kept = [
            n for n in patient.get("name", []) if n.get("use") != "official" and (n.get("family") or n.get("given"))
        ]
        patient["name"] = [human, *kept]
    if demographics.sex:
        patient["gender"] = V2_SEX_TO_GENDER[demographics.sex]
    if demographics.birth_date:
        patient["birthDate"] = fhir_date(demographics.birth_date)
    return patient


def _system(authority: str) -> str:
    return f"urn:radcds:assigning-authority:{authority}" if authority else ""


def _body_parts(study: dict[str, Any]) -> list[str]:
    parts = [
        str(s.get("bodySite", {}).get(k, ""))
        for s in study.get("series", [])
        for k in ("display", "code")
        if s.get("bodySite")
    ]
    return [*parts, str(study.get("description", ""))]


def study_report_code(study: dict[str, Any]) -> codes.Coding:
    """The LOINC report code for an ImagingStudy (modality and body part), else 18748-4."""
    modalities = [m.get("code", "") for m in study.get("modality", [])]
    return report_code(modalities, _body_parts(study))


def diagnostic_report(
    *,
    report_id: str,
    study: dict[str, Any],
    observations: list[dict[str, Any]],
    accession_number: str,
    service_request: dict[str, Any] | None,
    conclusion: str,
    presented_form: list[dict[str, Any]],
    issued: str,
) -> dict[str, Any]:
    """A preliminary DiagnosticReport (US Core DiagnosticReport for Report and Note exchange)."""
    conclusion_codes: dict[str, dict[str, Any]] = {}
    for o in observations:
        for c in o.get("code", {}).get("coding", []):
            if c.get("system") == codes.SNOMED_CT and ("valueQuantity" in o or "valueCodeableConcept" in o):
                conclusion_codes.setdefault(c["code"], c)
    dr: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": "preliminary",
        "category": [
            {"coding": [coding(codes.CATEGORY_RADIOLOGY)]},
            {"coding": [coding(codes.SECTION_RADIOLOGY)]},
        ],
        "code": {"coding": [coding(study_report_code(study))]},
        "subject": dict(study["subject"]),
        "effectiveDateTime": study.get("started") or issued,
        "issued": issued,
        "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "conclusion": conclusion,
        "presentedForm": presented_form,
        # US Core DiagnosticReport performer (must support): the organization operating radcds.
        "performer": [operator_reference()],
    }
    if accession_number:
        dr["identifier"] = [_identifier("ACSN", accession_number)]
    if service_request is not None:
        dr["basedOn"] = [{"reference": f"ServiceRequest/{service_request['id']}"}]
        if service_request.get("encounter"):
            dr["encounter"] = dict(service_request["encounter"])
    if conclusion_codes:
        dr["conclusionCode"] = [{"coding": [c]} for _, c in sorted(conclusion_codes.items())]
    return dr


def report_provenance(
    dr: dict[str, Any], *, models: list[str], recorded: str, devices: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Provenance of an AI-assembled DiagnosticReport: models, inputs (study, Observations), rules.

    The assembler is the Organization operating radcds; each model is a performer, as the Device of
    its version (``devices``, from the Observations) acting for that Organization, or by name for
    Observations stored before models had Devices.
    """
    agents: list[dict[str, Any]] = [
        {
            "type": {"coding": [{"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": "assembler"}]},
            "who": {**operator_reference(), "display": f"{SOFTWARE} (not for diagnostic use)"},
        }
    ]
    performer = {"coding": [{"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": "performer"}]}
    if devices:
        agents += [{"type": performer, "who": dict(d), "onBehalfOf": operator_reference()} for d in devices]
    else:
        agents += [
            {"type": performer, "who": {"display": f"radcds model {m} (not for diagnostic use)"}} for m in models
        ]
    entities = [{"role": "source", "what": ref} for ref in dr.get("imagingStudy", [])] + [
        {"role": "derivation", "what": ref} for ref in dr.get("result", [])
    ]
    rules = [RULE_REPORT_ASSEMBLY]
    if dr.get("conclusion", "").find("CRITICAL RESULT") >= 0:
        rules.append(RULE_CRITICAL_RESULT)
    return {
        "resourceType": "Provenance",
        "id": resource_id("Provenance", "DiagnosticReport", dr["id"]),
        "target": [{"reference": f"DiagnosticReport/{dr['id']}"}],
        "recorded": recorded,
        "activity": {"coding": [{"system": codes.DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": agents,
        "entity": entities,
        "policy": rules,
    }


def signing_provenance(dr: dict[str, Any], *, author: str, recorded: str) -> dict[str, Any]:
    """Provenance of a radiologist's sign-off or amendment of one report version."""
    version = dr["meta"]["versionId"]
    first = version == "1"
    return {
        "resourceType": "Provenance",
        "id": resource_id("Provenance", "DiagnosticReport", dr["id"], "version", version),
        "target": [{"reference": f"DiagnosticReport/{dr['id']}/_history/{version}"}],
        "recorded": recorded,
        "activity": {
            "coding": [
                {"system": codes.DATA_OPERATION, "code": "CREATE" if first else "UPDATE"},
            ],
            "text": f"DiagnosticReport status set to {dr['status']}",
        },
        "agent": [
            {
                "type": {"coding": [{"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": "verifier"}]},
                "role": [{"coding": [{"system": PARTICIPATION_TYPE, "code": "AUTHEN", "display": "authenticator"}]}],
                "who": {"reference": author},
            }
        ],
        "entity": [{"role": "revision", "what": {"reference": f"DiagnosticReport/{dr['id']}"}}],
    }


def critical_communication(
    *,
    dr: dict[str, Any],
    observation: dict[str, Any],
    recipients: list[dict[str, Any]],
    sent: str,
) -> dict[str, Any]:
    """The Communication of one critical result to the ordering clinician's team."""
    finding = observation.get("code", {}).get("text") or "critical finding"
    return {
        "resourceType": "Communication",
        "id": resource_id("Communication", "critical", dr["id"], observation["id"]),
        "status": "in-progress",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}]}],
        "priority": "stat",
        "subject": dict(dr["subject"]),
        "about": [{"reference": f"DiagnosticReport/{dr['id']}"}, {"reference": f"Observation/{observation['id']}"}],
        **({"basedOn": list(dr["basedOn"])} if dr.get("basedOn") else {}),
        **({"encounter": dict(dr["encounter"])} if dr.get("encounter") else {}),
        "sent": sent,
        "recipient": recipients,
        "sender": {"display": SOFTWARE},
        "reasonCode": [{"coding": observation.get("code", {}).get("coding", []), "text": finding}],
        "payload": [
            {
                "contentString": f"CRITICAL RESULT (AI-generated, preliminary, not for diagnostic use): {finding}."
                " Please acknowledge."
            }
        ],
    }


def escalation_communication(
    original: dict[str, Any], *, recipient: dict[str, Any], sent: str, waited: str
) -> dict[str, Any]:
    """A new Communication to the escalation recipient for an unacknowledged critical result."""
    return {
        "resourceType": "Communication",
        "id": resource_id("Communication", "escalation", original["id"]),
        "partOf": [{"reference": f"Communication/{original['id']}"}],
        "status": "in-progress",
        "category": list(original["category"]),
        "priority": "stat",
        "subject": dict(original["subject"]),
        "about": list(original["about"]),
        "sent": sent,
        "recipient": [recipient],
        "sender": {"display": SOFTWARE},
        "reasonCode": list(original.get("reasonCode", [])),
        "payload": [
            {
                "contentString": f"ESCALATION: critical result not acknowledged within {waited}. "
                + original["payload"][0]["contentString"]
            }
        ],
    }


def recipient_reference(text: str) -> dict[str, Any]:
    """A Reference from a setting: ``Type/id`` becomes a reference, anything else a display."""
    text = text.strip()
    if "/" in text and text.split("/")[0][:1].isupper():
        return {"reference": text}
    return {"display": text}
