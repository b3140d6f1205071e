"""Structured findings a radiologist sends with the report: pulmonary nodules as FHIR R4 Observations contained in
the PUT of the DiagnosticReport (R4 2.36 "References to contained resources", referenced from
``DiagnosticReport.result`` as ``#id``), stored as stand-alone Observations and announced to fusion with
:class:`~radcds.domain.events.StructuredFindingsEntered` through the outbox, in the sign-off's transaction.

Why ``contained`` (docs/reporting.md, "Structured findings"): an R4 Observation has no element that points to a
DiagnosticReport (``partOf`` and ``derivedFrom`` do not allow one; the link is ``DiagnosticReport.result``), so
findings POSTed on their own could not say which report they belong to; sent inside the report they are signed or
amended with it, in one request and one transaction.

One nodule (the codes fusion's TID 1500 reader accepts, :mod:`radcds.domain.codes`):

- ``code``: SNOMED CT 427359005 Solitary nodule of lung (or 786838002, 27925004);
- ``bodySite``: a lobe (or lung) in SNOMED CT, e.g. 45653009 Upper lobe of right lung;
- ``valueQuantity``: the long-axis diameter in UCUM ``mm``;
- ``component``: Short Axis (SCT 103340004, mm), ``nodule-composition`` (Solid 35702001, Ground glass 1217294009 /
  50196008, radcds ``part-solid``; required), ``solid-part-mean-diameter`` (mm; required for, and only for, a
  part-solid nodule).

The server sets ``status`` (it follows the report's), ``category`` imaging, ``subject``, ``derivedFrom`` (the
ImagingStudy), ``effectiveDateTime``, ``issued``, ``performer`` (the signing Practitioner) and ``method``
(radcds ``observation-method#radiologist-entered``: a radiologist's finding, not an algorithm's); ``note`` is kept.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.fhir.report import coding, resource_id
from radcds.adapters.fhir.resources import InvalidResource, validate_resource
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.events import FINDINGS_ENTERED, EnteredNodule, StructuredFindingsEntered
from radcds_reporting.adapters.repository import FhirRepository, fhir_instant

FINDINGS_EVENT_NAMESPACE = uuid.UUID("6f1d3c2a-8b4e-4a7d-9e21-3c5b7a9d0f64")
_FINDINGS = {c.code: c for c in codes.NODULE_FINDINGS}
_SITES = {c.code: c for c in codes.LUNG_SITES}
_BY_COMPOSITION = {name: (system, code) for (system, code), name in codes.NODULE_COMPOSITIONS.items()}
_COMPOSITION_DISPLAY = {"solid": "Solid", "ground-glass": "Ground glass opacity", "part-solid": "Part-solid"}


class InvalidFinding(ValueError):
    """A structured finding the server cannot take (HTTP ``status``: 400 not valid R4, 422 a rule broken), naming
    the element at fault (``expression``, FHIRPath) and the OperationOutcome issue ``code``."""

    def __init__(self, message: str, *, expression: str, code: str = "value", status: int = 422) -> None:
        super().__init__(message)
        self.expression = expression
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class SentFinding:
    """One checked nodule of the request, and the radiologist's notes on it."""

    nodule: EnteredNodule
    notes: tuple[dict[str, Any], ...] = ()


def observation_id(report_id: str, local_id: str) -> str:
    """The stand-alone Observation a contained one becomes: the same local id of the same report is the same
    Observation (a resent finding is a new version of it, never a copy)."""
    return resource_id("Observation", report_id, "radiologist-entered", local_id)


def take_contained(report: dict[str, Any], *, report_id: str) -> list[SentFinding]:
    """Take the contained Observations out of ``report`` (a PUT body), check each nodule, and point ``result`` at the
    stand-alone Observations they become. Raises :class:`InvalidFinding`."""
    contained = report.pop("contained", [])
    results = report.get("result") or []
    if not contained and not any(str(r.get("reference", "")).startswith("#") for r in results if isinstance(r, dict)):
        return []
    if not isinstance(contained, list):
        raise InvalidFinding("contained must be an array", expression="DiagnosticReport.contained", code="structure")
    referenced = {r.get("reference") for r in results if isinstance(r, dict)}
    sent: dict[str, SentFinding] = {}
    for i, resource in enumerate(contained):
        where = f"DiagnosticReport.contained[{i}]"
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            raise InvalidFinding(
                "only Observations (structured findings) may be contained", expression=where, code="not-supported"
            )
        local = resource.get("id")
        if not isinstance(local, str) or not local:
            raise InvalidFinding("a contained Observation needs an id", expression=f"{where}.id", code="required")
        if f"#{local}" not in referenced or local in sent:
            raise InvalidFinding(
                f"contained Observation {local} must be referenced once from result as #{local} (R4 dom-3)",
                expression=f"{where}.id",
                code="invariant",
            )
        sent[local] = read_nodule(resource, where=where, observation_id=observation_id(report_id, local))
    rewritten = []
    for j, ref in enumerate(results):
        target = str(ref.get("reference", "")) if isinstance(ref, dict) else ""
        if target.startswith("#"):
            if target[1:] not in sent:
                raise InvalidFinding(
                    f"result {target} names no contained Observation",
                    expression=f"DiagnosticReport.result[{j}]",
                    code="not-found",
                )
            ref = {"reference": f"Observation/{sent[target[1:]].nodule.observation_id}"}
        rewritten.append(ref)
    report["result"] = rewritten
    return list(sent.values())


def read_nodule(resource: dict[str, Any], *, where: str, observation_id: str) -> SentFinding:
    """One nodule Observation (sent, or as stored) checked against the rules of the module docstring."""
    try:
        obs = validate_resource({"status": "preliminary", **resource})  # the server sets the status
    except InvalidResource as exc:
        raise InvalidFinding(str(exc), expression=where, code="structure", status=400) from None
    finding = _coded(obs.get("code"), _FINDINGS)
    if finding is None:
        allowed = ", ".join(c.code for c in codes.NODULE_FINDINGS)
        raise InvalidFinding(
            f"code must be a pulmonary nodule (SNOMED CT {allowed})", expression=f"{where}.code", code="code-invalid"
        )
    if "bodySite" not in obs:
        raise InvalidFinding(
            "bodySite (the lobe, SNOMED CT) is required", expression=f"{where}.bodySite", code="required"
        )
    site = _coded(obs["bodySite"], _SITES)
    if site is None:
        allowed = ", ".join(c.code for c in codes.LUNG_SITES)
        raise InvalidFinding(
            f"bodySite must be a lobe or lung in SNOMED CT ({allowed})",
            expression=f"{where}.bodySite",
            code="code-invalid",
        )
    long_axis = _millimetres(obs.get("valueQuantity"), f"{where}.valueQuantity", "the long-axis diameter")
    short_axis = solid_part = None
    composition = None
    places: dict[str, str] = {}
    for k, component in enumerate(obs.get("component", [])):
        at = f"{where}.component[{k}]"
        if _coded(component.get("code"), {codes.SHORT_AXIS.code: codes.SHORT_AXIS}):
            short_axis = _millimetres(component.get("valueQuantity"), f"{at}.valueQuantity", "the short axis")
            places["short"] = at
        elif _has(component.get("code"), codes.SOLID_PART_DIAMETER):
            solid_part = _millimetres(component.get("valueQuantity"), f"{at}.valueQuantity", "the solid part")
            places["solid"] = at
        elif _has(component.get("code"), codes.NODULE_COMPOSITION):
            composition = _composition(component.get("valueCodeableConcept"), f"{at}.valueCodeableConcept")
        else:
            raise InvalidFinding(
                "component must be the short axis (SCT 103340004), the composition (nodule-composition) or the "
                "solid part (solid-part-mean-diameter)",
                expression=f"{at}.code",
                code="code-invalid",
            )
    if composition is None:
        raise InvalidFinding(
            "the composition (a component nodule-composition: solid, part-solid or ground-glass) is required",
            expression=f"{where}.component",
            code="required",
        )
    if short_axis is not None and short_axis > long_axis:
        raise InvalidFinding(
            "the short axis cannot exceed the long axis (valueQuantity)",
            expression=f"{places['short']}.valueQuantity",
            code="invariant",
        )
    if composition == "part-solid" and solid_part is None:
        raise InvalidFinding(
            "a part-solid nodule needs the size of its solid part (component solid-part-mean-diameter)",
            expression=f"{where}.component",
            code="required",
        )
    if solid_part is not None and (composition != "part-solid" or solid_part > long_axis):
        raise InvalidFinding(
            "only a part-solid nodule has a solid part, and it cannot exceed the long axis",
            expression=f"{places['solid']}.valueQuantity",
            code="invariant",
        )
    nodule = EnteredNodule(observation_id, finding, site, long_axis, composition, short_axis, solid_part)
    return SentFinding(nodule, tuple(obs.get("note", [])))


def observation(
    sent: SentFinding, *, report: dict[str, Any], author: str, status: str, now: datetime
) -> dict[str, Any]:
    """The stand-alone Observation of a radiologist's nodule (US Core Observation Clinical Result)."""
    n = sent.nodule
    components = []
    if n.short_axis_mm is not None:
        components.append({"code": {"coding": [coding(codes.SHORT_AXIS)]}, "valueQuantity": _quantity(n.short_axis_mm)})
    system, code = _BY_COMPOSITION[n.composition]
    value = {"coding": [{"system": system, "code": code, "display": _COMPOSITION_DISPLAY[n.composition]}]}
    components.append({"code": {"coding": [coding(codes.NODULE_COMPOSITION)]}, "valueCodeableConcept": value})
    if n.solid_part_mm is not None:
        components.append(
            {"code": {"coding": [coding(codes.SOLID_PART_DIAMETER)]}, "valueQuantity": _quantity(n.solid_part_mm)}
        )
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": n.observation_id,
        "status": status,
        "category": [{"coding": [coding(codes.OBSERVATION_IMAGING)]}],
        "code": {"coding": [coding(n.finding)], "text": n.finding.display},
        "subject": report["subject"],
        "derivedFrom": list(report.get("imagingStudy", [])),
        "issued": fhir_instant(now),
        "performer": [{"reference": author}],
        "method": {"coding": [coding(codes.RADIOLOGIST_ENTERED)]},
        "bodySite": {"coding": [coding(n.body_site)], "text": n.body_site.display},
        "valueQuantity": _quantity(n.long_axis_mm),
        "component": components,
    }
    if report.get("effectiveDateTime"):
        obs["effectiveDateTime"] = report["effectiveDateTime"]
    if sent.notes:
        obs["note"] = list(sent.notes)
    return obs


def any_changed(repo: FhirRepository, sent: list[SentFinding]) -> bool:
    """True when a sent nodule is new or differs from the Observation stored for it (a report content change)."""
    for finding in sent:
        stored = repo.read("Observation", finding.nodule.observation_id)
        if stored is None or read_nodule(stored, where="Observation", observation_id=stored["id"]) != finding:
            return True
    return False


def withdraw_dropped(repo: FhirRepository, *, previous: dict[str, Any], stored: dict[str, Any], now: datetime) -> None:
    """A radiologist's Observation the new version no longer lists in ``result`` is withdrawn (``entered-in-error``,
    R4 observation-status: withdrawn following a previous release)."""
    kept = {_id(ref) for ref in stored.get("result", [])}
    for obs in _entered(repo, previous):
        if obs["id"] not in kept and obs["status"] != "entered-in-error":
            repo.upsert({**obs, "status": "entered-in-error"}, now=now)


def is_radiologist_entered(obs: dict[str, Any]) -> bool:
    """True for an Observation a radiologist entered (``method`` radiologist-entered), not an algorithm's."""
    return _has(obs.get("method"), codes.RADIOLOGIST_ENTERED)


def enqueue_in(
    conn: Connection,
    repo: FhirRepository,
    *,
    previous: dict[str, Any],
    stored: dict[str, Any],
    sent: bool,
    study_uid: str,
    author: str,
) -> None:
    """Write ``findings.entered`` to the outbox when this version brought findings or dropped some: the version's
    complete set of radiologist-entered nodules (fusion replaces what the same report gave before)."""
    before = {o["id"] for o in _entered(repo, previous)}
    now_entered = _entered(repo, stored)
    if not sent and before == {o["id"] for o in now_entered}:
        return
    nodules = tuple(read_nodule(o, where="Observation", observation_id=o["id"]).nodule for o in now_entered)
    patient_id = str(stored["subject"]["reference"]).removeprefix("Patient/")
    study = next(
        (s for ref in stored.get("imagingStudy", []) if (s := repo.read("ImagingStudy", _id(ref))) is not None), {}
    )
    event = StructuredFindingsEntered(
        diagnostic_report_id=stored["id"],
        version_id=stored["meta"]["versionId"],
        report_status=stored["status"],
        study_instance_uid=study_uid,
        patient_id=patient_id,
        entered_by=author,
        findings=nodules,
        study_date=str(study.get("started") or stored.get("effectiveDateTime") or "")[:10],
        modalities=tuple(m["code"] for m in study.get("modality", []) if m.get("code")),
        patient_identifier=_mrn(repo.read("Patient", patient_id) or {}),
    )
    event_id = str(uuid.uuid5(FINDINGS_EVENT_NAMESPACE, f"{stored['id']}/{stored['meta']['versionId']}"))
    enqueue(conn, FINDINGS_ENTERED, [(event.to_payload(), event_id, study_uid)])


def _entered(repo: FhirRepository, report: dict[str, Any]) -> list[dict[str, Any]]:
    found = (repo.read("Observation", _id(ref)) for ref in report.get("result", []))
    return [o for o in found if o is not None and is_radiologist_entered(o)]


def _id(ref: dict[str, Any]) -> str:
    return str(ref.get("reference", "")).split("/")[-1]


def _mrn(patient: dict[str, Any]) -> tuple[str, str] | None:
    """The Patient's MR identifier (v2-0203 MR), else its first identifier with a value."""
    idents = [i for i in patient.get("identifier", []) if i.get("value")]
    mr = [i for i in idents if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", []))]
    chosen = (mr or idents or [None])[0]
    return None if chosen is None else (str(chosen.get("system", "")), str(chosen["value"]))


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    return [
        (str(c.get("system", "")), str(c.get("code", ""))) for c in concept.get("coding", []) if isinstance(c, dict)
    ]


def _has(concept: Any, wanted: Coding) -> bool:
    return (wanted.system, wanted.code) in _codings(concept)


def _coded(concept: Any, table: dict[str, Coding]) -> Coding | None:
    """The table's coding (SNOMED CT) that ``concept`` carries, with the table's display."""
    return next(
        (table[code] for system, code in _codings(concept) if system == codes.SNOMED_CT and code in table), None
    )


def _composition(concept: Any, where: str) -> str:
    found = next((codes.NODULE_COMPOSITIONS[k] for k in _codings(concept) if k in codes.NODULE_COMPOSITIONS), None)
    if found is None:
        raise InvalidFinding(
            "composition must be Solid (SCT 35702001), Ground glass opacity (SCT 1217294009 or 50196008) or "
            f"part-solid ({codes.RADCDS_MEASUREMENT}#part-solid)",
            expression=where,
            code="code-invalid",
        )
    return found


def _millimetres(quantity: Any, where: str, what: str) -> float:
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        raise InvalidFinding(f"{what} is required (a Quantity in mm)", expression=where, code="required")
    if quantity.get("system") != codes.UCUM or quantity.get("code") != codes.UNIT_MILLIMETRE:
        unit = quantity.get("code") or quantity.get("unit")
        raise InvalidFinding(
            f"{what} must be in millimetres (UCUM {codes.UCUM}, code mm), not {unit!r}",
            expression=f"{where}.code",
            code="value",
        )
    value = float(quantity["value"])
    if not math.isfinite(value) or value <= 0:
        raise InvalidFinding(f"{what} must be a positive size, not {value:g}", expression=f"{where}.value")
    return value


def _quantity(mm: float) -> dict[str, Any]:
    return {"value": mm, "unit": "mm", "system": codes.UCUM, "code": codes.UNIT_MILLIMETRE}
