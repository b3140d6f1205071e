"""FHIR R4 JSON → the parts of fusion's :class:`ClinicalContext` (pure: dicts in, domain values out).

Each function reads one kind of resource (FHIR R4 §8.1 Patient, §9.2 Condition, §10.1 Observation with the
US Core smoking status and pack-years observations, §8.x Device, §9.4 Procedure, §12.1 ImagingStudy, §10.3
DiagnosticReport) and is tolerant: a resource it cannot use (entered-in-error, refuted, an unknown code, a value
without a number or in an unknown unit) is left out, never guessed. A source that was read and holds nothing
gives ``False`` / empty (the chart was read); a source that could not be read stays ``None`` and is named in
``ClinicalContext.missing`` by the caller (adapters/ehr.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from radcds.adapters.fhir.datatypes import parse_date
from radcds.domain.codes import LOINC, SNOMED_CT
from radcds_fusion.adapters import ehr_codes as codes
from radcds_fusion.domain.comparison import MeasuredFinding
from radcds_fusion.domain.context import ImplantedDevice, PriorStudy, SmokingStatus
from radcds_fusion.domain.nodules import Composition, Nodule, site_name

JSON = Mapping[str, Any]
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_OBS_OK = frozenset({"final", "amended", "corrected", "preliminary"})
_DEVICE_INACTIVE = frozenset({"inactive", "entered-in-error"})
_PROCEDURE_OK = frozenset({"completed", "in-progress"})
_STUDY_EXCLUDED = frozenset({"cancelled", "entered-in-error"})
_REPORT_EXCLUDED = frozenset({"cancelled", "entered-in-error"})
_COMPOSITIONS = {
    (SNOMED_CT, "35702001"): Composition.SOLID,
    (SNOMED_CT, "1217294009"): Composition.GROUND_GLASS,
    (SNOMED_CT, "50196008"): Composition.GROUND_GLASS,
    (codes.RADCDS_MEASUREMENT, "part-solid"): Composition.PART_SOLID,
}
_LENGTH_TO_MM = {"mm": 1.0, "cm": 10.0}


# ------------------------------------------------------------------------------------------- helpers


def codings(concept: object) -> list[tuple[str, str, str]]:
    """(system, code, display) of a CodeableConcept's codings that have both a system and a code."""
    if not isinstance(concept, Mapping):
        return []
    out = []
    for c in concept.get("coding") or []:
        if isinstance(c, Mapping) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.append((c["system"], c["code"], str(c.get("display") or "")))
    return out


def _has_code(concept: object, system: str, values: Iterable[str]) -> bool:
    wanted = set(values)
    return any(s == system and c in wanted for s, c, _ in codings(concept))


def _status_code(concept: object) -> str | None:
    if isinstance(concept, Mapping):
        for c in concept.get("coding") or []:
            if isinstance(c, Mapping) and isinstance(c.get("code"), str):
                return str(c["code"])
    return None


def _effective(resource: JSON) -> date | None:
    for key in ("effectiveDateTime", "issued", "effectiveInstant"):
        d = parse_date(resource.get(key))
        if d is not None:
            return d
    period = resource.get("effectivePeriod")
    if isinstance(period, Mapping):
        return parse_date(period.get("end")) or parse_date(period.get("start"))
    return None


def _quantity(value: object) -> tuple[float, str] | None:
    if not isinstance(value, Mapping):
        return None
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    unit = value.get("code") or value.get("unit") or ""
    return float(number), str(unit)


def _usable_observations(resources: Iterable[JSON]) -> list[JSON]:
    """Observations with a usable status, newest first (undated ones last)."""
    usable = [r for r in resources if r.get("resourceType") == "Observation" and r.get("status") in _OBS_OK]
    return sorted(usable, key=lambda r: _effective(r) or date.min, reverse=True)


def _reference_id(reference: object, resource_type: str) -> str | None:
    """The id in ``{"reference": "ImagingStudy/123"}`` (also a full URL ending so), for ``resource_type``."""
    if not isinstance(reference, Mapping) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].rstrip("/").split("/")
    for i in range(len(parts) - 1):
        if parts[i] == resource_type:
            return str(parts[i + 1])
    return None


# ------------------------------------------------------------------------------------------- Patient


def patient_demographics(resource: JSON) -> tuple[date | None, str | None]:
    """Birth date and administrative gender (FHIR R4 Patient.birthDate, Patient.gender)."""
    gender = resource.get("gender")
    return parse_date(resource.get("birthDate")), gender if gender in _GENDERS else None


# ------------------------------------------------------------------------------------------- Condition


@dataclass(frozen=True, slots=True)
class ConditionFlags:
    """What the problem list says for the guidelines."""

    known_cancer: bool
    copd: bool
    immunosuppressed: bool


def _matches(concept: object, snomed: frozenset[str], icd_prefixes: tuple[str, ...]) -> bool:
    for system, code, _ in codings(concept):
        if system == SNOMED_CT and code in snomed:
            return True
        if system == codes.ICD10CM and code.replace(".", "").upper().startswith(icd_prefixes):
            return True
    return False


def condition_flags(resources: Iterable[JSON]) -> ConditionFlags:
    """Known cancer, COPD and immunosuppression from Conditions (code lists in ``ehr_codes``).

    Refuted or entered-in-error Conditions never count. A cancer counts whatever its clinical status (a history
    of cancer is "known cancer" for Fleischner 2017); COPD and immunosuppression count only while active
    (active, recurrence, relapse) or when no clinical status is given.
    """
    cancer = copd = immuno = False
    for r in resources:
        if r.get("resourceType") != "Condition":
            continue
        if _status_code(r.get("verificationStatus")) in codes.VERIFICATION_EXCLUDED:
            continue
        clinical = _status_code(r.get("clinicalStatus"))
        active = clinical is None or clinical in codes.CLINICAL_ACTIVE
        code = r.get("code")
        cancer = cancer or _matches(code, codes.CANCER_SNOMED, codes.CANCER_ICD10CM_PREFIXES)
        if active:
            copd = copd or _matches(code, codes.COPD_SNOMED, codes.COPD_ICD10CM_PREFIXES)
            immuno = immuno or _matches(code, codes.IMMUNOSUPPRESSION_SNOMED, codes.IMMUNOSUPPRESSION_ICD10CM_PREFIXES)
    return ConditionFlags(known_cancer=cancer, copd=copd, immunosuppressed=immuno)


# ------------------------------------------------------------------------------------------- Observation


@dataclass(frozen=True, slots=True)
class SmokingHistory:
    """The latest smoking status, pack-years and years since quitting."""

    status: SmokingStatus | None
    pack_years: float | None
    years_since_quit: float | None


def smoking_history(resources: Iterable[JSON], *, today: date) -> SmokingHistory:
    """From US Core smoking status (LOINC 72166-2, SNOMED CT answers), pack-years (SNOMED CT 401201003) and
    date ceased smoking (SNOMED CT 160625004) or radcds ``years-since-quit``; the latest of each wins."""
    status: SmokingStatus | None = None
    pack_years: float | None = None
    years_since_quit: float | None = None
    seen_status = False
    for r in _usable_observations(resources):
        code = r.get("code")
        if not seen_status and _has_code(code, LOINC, [codes.SMOKING_STATUS_LOINC]):
            seen_status = True  # the latest status decides, even when its value is "unknown"
            for system, value, _ in codings(r.get("valueCodeableConcept")):
                if system == SNOMED_CT and value in codes.SMOKING_STATUS_VALUES:
                    status = SmokingStatus(codes.SMOKING_STATUS_VALUES[value])
                    break
        elif pack_years is None and _has_code(code, SNOMED_CT, [codes.PACK_YEARS_SNOMED]):
            q = _quantity(r.get("valueQuantity"))
            if q is not None and q[0] >= 0:
                pack_years = q[0]
        elif years_since_quit is None and _has_code(code, SNOMED_CT, [codes.DATE_CEASED_SMOKING_SNOMED]):
            ceased = parse_date(r.get("valueDateTime"))
            if ceased is not None and ceased <= today:
                years_since_quit = round((today - ceased).days / 365.25, 1)
        elif years_since_quit is None and _has_code(code, codes.RADCDS_CONTEXT, [codes.YEARS_SINCE_QUIT_RADCDS]):
            q = _quantity(r.get("valueQuantity"))
            if q is not None and q[0] >= 0:
                years_since_quit = q[0]
    return SmokingHistory(status=status, pack_years=pack_years, years_since_quit=years_since_quit)


@dataclass(frozen=True, slots=True)
class RenalFunction:
    """The latest eGFR (mL/min/1.73 m2) and serum creatinine (mg/dL)."""

    egfr_ml_min_173m2: float | None
    creatinine_mg_dl: float | None


def renal_function(resources: Iterable[JSON]) -> RenalFunction:
    """Latest eGFR (LOINC ``EGFR_LOINC``) and creatinine (mg/dL, or umol/L converted) from Observations."""
    egfr: float | None = None
    creatinine: float | None = None
    for r in _usable_observations(resources):
        code = r.get("code")
        q = _quantity(r.get("valueQuantity"))
        if q is None or q[0] < 0:
            continue
        if egfr is None and _has_code(code, LOINC, codes.EGFR_LOINC):
            egfr = q[0]
        elif creatinine is None and _has_code(code, LOINC, codes.CREATININE_MASS_LOINC) and q[1] in ("mg/dL", ""):
            creatinine = q[0]
        elif creatinine is None and _has_code(code, LOINC, codes.CREATININE_MOLAR_LOINC) and q[1] in ("umol/L", ""):
            creatinine = round(q[0] / codes.CREATININE_UMOL_PER_MG_DL, 2)
    return RenalFunction(egfr_ml_min_173m2=egfr, creatinine_mg_dl=creatinine)


# ------------------------------------------------------------------------------------------- Device, Procedure


def _device_from_concept(concept: object) -> ImplantedDevice | None:
    found = codings(concept)
    for system, code, display in found:
        if system == SNOMED_CT:
            return ImplantedDevice(code=code, display=codes.DEVICE_NAMES.get(code, display or code))
    if found:
        system, code, display = found[0]
        return ImplantedDevice(code=code, display=display or code)
    if isinstance(concept, Mapping) and isinstance(concept.get("text"), str):
        return ImplantedDevice(code="", display=concept["text"])
    return None


def implanted_devices(devices: Iterable[JSON], procedures: Iterable[JSON]) -> tuple[ImplantedDevice, ...]:
    """Active Devices (FHIR R4 Device.type) and the devices that implant Procedures leave (``IMPLANT_PROCEDURES``),
    one per code."""
    out: dict[str, ImplantedDevice] = {}
    for r in devices:
        if r.get("resourceType") != "Device" or r.get("status") in _DEVICE_INACTIVE:
            continue
        device = _device_from_concept(r.get("type"))
        if device is not None:
            out.setdefault(device.code or device.display, device)
    for r in procedures:
        if r.get("resourceType") != "Procedure" or r.get("status") not in _PROCEDURE_OK:
            continue
        for system, code, _ in codings(r.get("code")):
            if system == SNOMED_CT and code in codes.IMPLANT_PROCEDURES:
                device_code, name = codes.IMPLANT_PROCEDURES[code]
                site = next((c for s, c, _ in codings(_first(r.get("bodySite"))) if s == SNOMED_CT), None)
                out.setdefault(device_code, ImplantedDevice(code=device_code, display=name, body_site=site))
    return tuple(out.values())


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else None


def procedure_names(resources: Iterable[JSON]) -> tuple[str, ...]:
    """Completed or ongoing Procedures as "display (SCT code)" or their text, newest first."""
    usable = [r for r in resources if r.get("resourceType") == "Procedure" and r.get("status") in _PROCEDURE_OK]
    usable.sort(key=lambda r: parse_date(r.get("performedDateTime")) or date.min, reverse=True)
    names: list[str] = []
    for r in usable:
        code = r.get("code")
        found = codings(code)
        snomed = [(c, d) for s, c, d in found if s == SNOMED_CT]
        if snomed:
            c, d = snomed[0]
            name = f"{d or (code or {}).get('text') or c} (SCT {c})"
        elif isinstance(code, Mapping) and isinstance(code.get("text"), str):
            name = code["text"]
        elif found:
            name = found[0][2] or found[0][1]
        else:
            continue
        if name not in names:
            names.append(name)
    return tuple(names)


# ------------------------------------------------------------------------------------------- prior imaging


def _in_region(concepts: Iterable[object], region: str) -> str | None:
    """The first SNOMED CT body-site code of ``concepts`` in ``region`` (or a DICOM body part name), else None."""
    sites = codes.BODY_REGIONS.get(region, frozenset())
    parts = codes.BODY_PART_EXAMINED.get(region, frozenset())
    for concept in concepts:
        if isinstance(concept, Mapping) and "code" in concept and "coding" not in concept:
            concept = {"coding": [concept]}  # ImagingStudy.series.bodySite is a Coding
        for system, code, display in codings(concept):
            if system == SNOMED_CT and code in sites:
                return code
            if code.upper() in parts or display.upper() in parts:
                return code
    return None


def _study_uid(resource: JSON) -> str | None:
    for ident in resource.get("identifier") or []:
        if (
            isinstance(ident, Mapping)
            and ident.get("system") == "urn:dicom:uid"
            and isinstance(ident.get("value"), str)
        ):
            return str(ident["value"]).removeprefix("urn:oid:")
    return None


def _prior_finding(resource: JSON, study_date: date, region: str) -> MeasuredFinding | None:
    """A measured finding of an imaging Observation (a nodule with its size), or None when it has no number."""
    code = _in_region([resource.get("bodySite")], region)
    site = site_name(code, next((d for sy, c, d in codings(resource.get("bodySite")) if c == code and d), None))
    finding = next((c for s, c, _ in codings(resource.get("code")) if s == SNOMED_CT), None)
    if finding is None:
        return None
    q = _quantity(resource.get("valueQuantity"))
    long_axis = short_axis = None
    composition = Composition.SOLID
    for comp in resource.get("component") or []:
        if not isinstance(comp, Mapping):
            continue
        cq = _quantity(comp.get("valueQuantity"))
        if _has_code(comp.get("code"), SNOMED_CT, [codes.LONG_AXIS_SNOMED]) and cq:
            long_axis = cq[0] * _LENGTH_TO_MM.get(cq[1], float("nan"))
        elif _has_code(comp.get("code"), SNOMED_CT, [codes.SHORT_AXIS_SNOMED]) and cq:
            short_axis = cq[0] * _LENGTH_TO_MM.get(cq[1], float("nan"))
        elif _has_code(comp.get("code"), codes.RADCDS_MEASUREMENT, [codes.COMPOSITION_COMPONENT]):
            for system, code, _ in codings(comp.get("valueCodeableConcept")):
                composition = _COMPOSITIONS.get((system, code), composition)
    value_mm = q[0] * _LENGTH_TO_MM[q[1]] if q is not None and q[1] in _LENGTH_TO_MM else None
    nodule = None
    if finding in codes.NODULE_FINDINGS_SNOMED:
        try:
            nodule = Nodule(
                composition=composition,
                long_axis_mm=long_axis if long_axis is not None else value_mm,
                short_axis_mm=short_axis,
                location=site,
            )
        except ValueError:
            nodule = None
    if value_mm is not None and not value_mm > 0:
        value_mm = None  # an impossible size is left out, never passed on
    if value_mm is None and nodule is None:
        return None
    ref = f"Observation/{resource['id']}" if isinstance(resource.get("id"), str) else None
    mean = nodule.mean_diameter_mm if nodule is not None else value_mm
    return MeasuredFinding(
        code=finding, body_site=site, study_date=study_date, value=mean, unit="mm", nodule=nodule, reference=ref
    )


def prior_studies(
    studies: Iterable[JSON],
    reports: Iterable[JSON],
    observations: Iterable[JSON],
    *,
    region: str,
    before: date,
) -> tuple[PriorStudy, ...]:
    """Prior ImagingStudies of ``region`` started before ``before``, newest first, each with its report
    (DiagnosticReport.imagingStudy) and its measured findings (Observation.derivedFrom/partOf the study, or in
    the report's results).

    A study is of the region when a series' bodySite (or, without one, the study's or its report's code) is a
    body structure of the region (``BODY_REGIONS``)."""
    reports = [
        r for r in reports if r.get("resourceType") == "DiagnosticReport" and r.get("status") not in _REPORT_EXCLUDED
    ]
    obs_by_id = {
        r["id"]: r
        for r in observations
        if r.get("resourceType") == "Observation" and isinstance(r.get("id"), str) and r.get("status") in _OBS_OK
    }
    out: list[PriorStudy] = []
    used_reports: set[int] = set()
    for study in studies:
        if study.get("resourceType") != "ImagingStudy" or study.get("status") in _STUDY_EXCLUDED:
            continue
        started = parse_date(study.get("started"))
        if started is None or started >= before:
            continue
        study_id = study.get("id") if isinstance(study.get("id"), str) else None
        series = [s for s in study.get("series") or [] if isinstance(s, Mapping)]
        study_reports = [
            r
            for r in reports
            if study_id and any(_reference_id(x, "ImagingStudy") == study_id for x in r.get("imagingStudy") or [])
        ]
        site = _in_region([s.get("bodySite") for s in series], region)
        if site is None:
            site = _in_region([*(study.get("procedureCode") or []), *[r.get("code") for r in study_reports]], region)
        if site is None:
            continue
        modalities: list[str] = []
        for coding in [*(study.get("modality") or []), *[s.get("modality") for s in series]]:
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str) and coding["code"] not in modalities:
                modalities.append(coding["code"])
        report = study_reports[0] if study_reports else None
        linked: list[JSON] = []
        for obs in obs_by_id.values():
            refs = [*(obs.get("derivedFrom") or []), *(obs.get("partOf") or [])]
            if study_id and any(_reference_id(x, "ImagingStudy") == study_id for x in refs):
                linked.append(obs)
        for r in study_reports:
            for res in r.get("result") or []:
                oid = _reference_id(res, "Observation")
                if oid in obs_by_id and obs_by_id[oid] not in linked:
                    linked.append(obs_by_id[oid])
        findings = tuple(f for f in (_prior_finding(o, started, region) for o in linked) if f is not None)
        used_reports.update(id(r) for r in study_reports)
        out.append(
            PriorStudy(
                study_uid=_study_uid(study),
                started=started,
                modalities=tuple(modalities),
                body_site=site,
                description=study.get("description") if isinstance(study.get("description"), str) else None,
                report_reference=f"DiagnosticReport/{report['id']}"
                if report and isinstance(report.get("id"), str)
                else None,
                findings=findings,
            )
        )
    out.extend(_report_only_priors([r for r in reports if id(r) not in used_reports], obs_by_id, region, before))
    out.sort(key=lambda p: p.started or date.min, reverse=True)
    return tuple(out)


def _report_only_priors(
    reports: Iterable[JSON], obs_by_id: Mapping[str, JSON], region: str, before: date
) -> list[PriorStudy]:
    """Priors known only by their report: a DiagnosticReport naming no ImagingStudy, coded as an imaging report
    of the region (``REGION_REPORT_LOINC``), dated before ``before``; its findings are its results."""
    known = codes.REGION_REPORT_LOINC.get(region, {})
    out: list[PriorStudy] = []
    for report in reports:
        if report.get("imagingStudy"):
            continue  # it names a study: a prior only through that study
        match = next(((c, d) for s, c, d in codings(report.get("code")) if s == LOINC and c in known), None)
        started = _effective(report)
        if match is None or started is None or started >= before:
            continue
        result_ids = [_reference_id(x, "Observation") for x in report.get("result") or []]
        linked = [obs_by_id[i] for i in result_ids if i is not None and i in obs_by_id]
        findings = tuple(f for f in (_prior_finding(o, started, region) for o in linked) if f is not None)
        out.append(
            PriorStudy(
                study_uid=None,
                started=started,
                modalities=(known[match[0]],),
                body_site=None,
                description=match[1] or None,
                report_reference=f"DiagnosticReport/{report['id']}" if isinstance(report.get("id"), str) else None,
                findings=findings,
            )
        )
    return out
