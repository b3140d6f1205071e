"""Build the appropriateness domain objects from FHIR R4 JSON (CDS Hooks ``draftOrders`` and prefetch).

Tolerant by design: resources are plain JSON dicts; what cannot be used (unknown codes, missing dates,
entered-in-error records, OperationOutcome prefetch entries) is ignored, never guessed. A list argument
given as ``None`` means "not fetched" and stays *unknown* in the context; an empty list means "fetched,
nothing there".

How decision-rule findings arrive (documented in docs/referral.md, section Rules):

1. An Observation coded in :data:`RADCDS_FINDING` (code = the flag key, e.g. ``vomiting-2-or-more``) with
   ``valueBoolean`` (or ``valueCodeableConcept`` SNOMED CT 373066001 Yes / 373067005 No). This is the
   route for rule-specific items (a questionnaire or order-entry form writes them).
2. An Observation coded with a SNOMED CT finding of :data:`SNOMED_FINDING_FLAGS` and ``valueBoolean``.
3. Active, confirmed Conditions of :data:`CONDITION_FLAGS` (ICD-10-CM prefix or SNOMED CT): these can only
   set a flag *present* (a problem list never proves absence).
Numeric context values without a standard code (Wells score, years since quitting, symptom duration) use an
Observation coded in :data:`RADCDS_CONTEXT` (code = the context key).
Findings from Observations older than ``findings_window_days`` are ignored (they describe another episode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from radcds.adapters.fhir.datatypes import parse_date as _date
from radcds.domain.codes import LOINC, SNOMED_CT, Coding
from radcds_referral.domain.appropriateness import (
    ICD10CM,
    ConditionRecord,
    DraftImagingOrder,
    ObservedValue,
    PatientContext,
    PriorRecommendation,
    PriorStudy,
)
from radcds_referral.domain.appropriateness.model import Scalar

JSON = Mapping[str, Any]

#: Our code system for decision-rule findings (Observation.code, valueBoolean): code = flag key.
RADCDS_FINDING = "https://radcds.example.org/fhir/CodeSystem/decision-rule-finding"
#: Our code system for context values with no standard code (Observation.code): code = context key.
RADCDS_CONTEXT = "https://radcds.example.org/fhir/CodeSystem/clinical-context"

EGFR_LOINC = ("33914-3", "48642-3", "48643-1", "62238-1", "98979-8")
D_DIMER_FEU_LOINC = "48065-7"
D_DIMER_DDU_LOINC = "48066-5"
#: LOINC code → context key for numeric Observations (UCUM units as given: GCS score, mL/min/1.73m2, /min, %).
LOINC_NUMERIC_KEYS: Mapping[str, str] = {
    "9269-2": "gcs",  # Glasgow coma score total
    **dict.fromkeys(EGFR_LOINC, "egfr"),
    "8867-4": "heart-rate",
    "59408-5": "oxygen-saturation",  # SpO2 by pulse oximetry
    "2708-6": "oxygen-saturation",  # SaO2 arterial
    "8664-7": "pack-years",  # as given in the brief; see the report on code uncertainty
}
#: SNOMED CT 401201003 "Cigarette pack-years" as an Observation code.
SNOMED_NUMERIC_KEYS: Mapping[str, str] = {"401201003": "pack-years"}
#: D-dimer cut-off in ng/mL FEU when the result carries no interpretation (common fixed cut-off; assay-specific).
D_DIMER_FEU_CUTOFF_NG_ML = 500.0

PREGNANCY_STATUS_LOINC = "82810-3"
HCG_QUALITATIVE_LOINC = ("2106-3", "2118-8")  # urine / serum-plasma hCG presence
HCG_QUANTITATIVE_LOINC = "21198-7"  # beta-hCG, mIU/mL
PREGNANT_SNOMED = "77386006"
NOT_PREGNANT_SNOMED = "60001007"
POSITIVE_SNOMED = "10828004"
NEGATIVE_SNOMED = "260385009"
YES_SNOMED = "373066001"
NO_SNOMED = "373067005"

SMOKING_STATUS_LOINC = "72166-2"
#: SNOMED CT smoking-status answers (US Core smoking status value set) → normalised token.
SMOKING_STATUS: Mapping[str, str] = {
    "449868002": "current",  # smokes tobacco daily
    "428041000124106": "current",  # occasional tobacco smoker
    "428071000124103": "current",  # heavy tobacco smoker
    "428061000124105": "current",  # light tobacco smoker
    "65568007": "current",  # cigarette smoker
    "8517006": "former",  # ex-smoker
    "266919005": "never",  # never smoked tobacco
}  # 77176002 "smoker, current status unknown" and 266927001 "unknown" stay unknown
#: SNOMED CT 160625004 "Date ceased smoking" (valueDateTime) → years-since-quit.
DATE_CEASED_SMOKING_SNOMED = "160625004"

#: SNOMED CT finding (Observation.code with valueBoolean) → (flag, whether a "false" also counts as absent).
SNOMED_FINDING_FLAGS: Mapping[str, tuple[str, bool]] = {
    "422400008": ("vomiting", True),
    "66857006": ("hemoptysis", True),
    "419045004": ("loss-of-consciousness", True),
    "386661006": ("red-flag-infection-risk", False),  # fever: only one part of the flag
}
#: Conditions that set flags present: (system, code prefix) → flags.
CONDITION_FLAGS: Mapping[tuple[str, str], tuple[str, ...]] = {
    (ICD10CM, "C"): ("malignancy", "red-flag-cancer-history"),
    (SNOMED_CT, "363346000"): ("malignancy", "red-flag-cancer-history"),
    (ICD10CM, "Z85"): ("red-flag-cancer-history",),
    (ICD10CM, "I26"): ("prior-dvt-pe",),
    (ICD10CM, "I824"): ("prior-dvt-pe",),
    (ICD10CM, "I825"): ("prior-dvt-pe",),
    (ICD10CM, "Z8671"): ("prior-dvt-pe",),
    (SNOMED_CT, "128053003"): ("prior-dvt-pe",),
    (SNOMED_CT, "59282003"): ("prior-dvt-pe",),
    (ICD10CM, "Z7901"): ("anticoagulation-or-coagulopathy",),
    (ICD10CM, "D65"): ("anticoagulation-or-coagulopathy",),
    (ICD10CM, "D66"): ("anticoagulation-or-coagulopathy",),
    (ICD10CM, "D67"): ("anticoagulation-or-coagulopathy",),
    (ICD10CM, "D68"): ("anticoagulation-or-coagulopathy",),
    (ICD10CM, "M80"): ("red-flag-osteoporosis-or-steroid-use",),
    (ICD10CM, "M81"): ("red-flag-osteoporosis-or-steroid-use",),
    (ICD10CM, "Z7952"): ("red-flag-osteoporosis-or-steroid-use",),
}
#: Conditions meaning "currently pregnant" (used only when no pregnancy Observation is documented).
PREGNANCY_CONDITIONS: tuple[tuple[str, str], ...] = ((ICD10CM, "Z331"), (ICD10CM, "Z3A"), (SNOMED_CT, PREGNANT_SNOMED))
#: AllergyIntolerance codes for iodinated contrast (SNOMED CT 293637006 "Allergy to contrast media").
CONTRAST_ALLERGY_SNOMED = frozenset({"293637006"})
#: Words that mark an allergy's text as iodinated contrast when no known code is present.
CONTRAST_ALLERGY_WORDS = ("contrast", "iohexol", "iopamidol", "iodixanol", "ioversol", "iopromide", "iomeprol")

_NUMERIC_KEYS: Mapping[tuple[str, str], str] = {
    **{(LOINC, code): key for code, key in LOINC_NUMERIC_KEYS.items()},
    **{(SNOMED_CT, code): key for code, key in SNOMED_NUMERIC_KEYS.items()},
}
_OBS_STATUS_OK = frozenset({"final", "amended", "corrected", "preliminary", "registered"})
_CONDITION_ACTIVE = frozenset({"active", "recurrence", "relapse"})
_VERIFICATION_EXCLUDED = frozenset({"refuted", "entered-in-error", "provisional", "differential"})
_RECOMMENDATION_STATUS = frozenset({"active", "draft", "on-hold"})


# ------------------------------------------------------------------------------------------- helpers


def resources(prefetched: object, resource_type: str | None = None) -> list[JSON] | None:
    """Resources of a prefetch value: a Bundle (entries), a list, or one resource.

    Returns ``None`` for an absent/``null`` key or an OperationOutcome (CDS Hooks: the data is unknown).
    """
    if prefetched is None or not isinstance(prefetched, Mapping | list):
        return None
    if isinstance(prefetched, Mapping):
        if prefetched.get("resourceType") == "OperationOutcome":
            return None
        if prefetched.get("resourceType") == "Bundle":
            items = [e.get("resource") for e in prefetched.get("entry") or [] if isinstance(e, Mapping)]
        else:
            items = [prefetched]
    else:
        items = list(prefetched)
    return [
        r for r in items if isinstance(r, Mapping) and (resource_type is None or r.get("resourceType") == resource_type)
    ]


def _codings(concept: object) -> tuple[Coding, ...]:
    if not isinstance(concept, Mapping):
        return ()
    out = []
    for c in concept.get("coding") or []:
        if isinstance(c, Mapping) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.append(Coding(c["system"], c["code"], str(c.get("display", ""))))
    return tuple(out)


def _norm(code: str) -> str:
    return code.replace(".", "").upper()


def _status_code(concept: object) -> str | None:
    """First code of a status CodeableConcept (clinicalStatus, verificationStatus), system not required."""
    if not isinstance(concept, Mapping):
        return None
    for c in concept.get("coding") or []:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


# ------------------------------------------------------------------------------------------- order


def imaging_order_from_service_request(resource: JSON) -> DraftImagingOrder:
    """DraftImagingOrder from a FHIR R4 ServiceRequest (``id``, ``code.coding``, ``reasonCode[].coding``)."""
    reasons: list[Coding] = []
    for concept in resource.get("reasonCode") or []:
        reasons.extend(_codings(concept))
    code = resource.get("code")
    display = ""
    if isinstance(code, Mapping):
        display = str(code.get("text") or next((c.display for c in _codings(code) if c.display), ""))
    rid = resource.get("id")
    return DraftImagingOrder(
        id=rid if isinstance(rid, str) else None, codes=_codings(code), reason_codes=tuple(reasons), display=display
    )


# ------------------------------------------------------------------------------------------- context


def _effective(obs: JSON) -> date | None:
    period = obs.get("effectivePeriod")
    end_or_start = (period.get("end") or period.get("start")) if isinstance(period, Mapping) else None
    return (
        _date(obs.get("effectiveDateTime"))
        or _date(obs.get("effectiveInstant"))
        or _date(end_or_start)
        or _date(obs.get("issued"))
    )


def _quantity(obs: JSON) -> tuple[float, str] | None:
    q = obs.get("valueQuantity")
    if isinstance(q, Mapping) and isinstance(q.get("value"), int | float) and not isinstance(q.get("value"), bool):
        return float(q["value"]), str(q.get("code") or q.get("unit") or "")
    if isinstance(obs.get("valueInteger"), int) and not isinstance(obs.get("valueInteger"), bool):
        return float(obs["valueInteger"]), ""
    return None


def _yes_no(obs: JSON) -> bool | None:
    """A boolean from valueBoolean, a Yes/No/Positive/Negative code, a string, or the interpretation."""
    value = obs.get("valueBoolean")
    if isinstance(value, bool):
        return value
    for c in _codings(obs.get("valueCodeableConcept")):
        if c.code in (YES_SNOMED, POSITIVE_SNOMED, PREGNANT_SNOMED, "POS", "Y"):
            return True
        if c.code in (NO_SNOMED, NEGATIVE_SNOMED, NOT_PREGNANT_SNOMED, "NEG", "N"):
            return False
    text = obs.get("valueString")
    if isinstance(text, str) and text.strip().lower() in ("positive", "pos", "yes", "detected"):
        return True
    if isinstance(text, str) and text.strip().lower() in ("negative", "neg", "no", "not detected"):
        return False
    for concept in obs.get("interpretation") or []:
        for c in _codings(concept):
            if c.code in ("POS", "DET", "H", "HH", "A", "AA"):
                return True
            if c.code in ("NEG", "ND", "N"):
                return False
    return None


def _d_dimer(obs: JSON, loinc: str) -> tuple[float | None, bool | None]:
    """(value in ng/mL FEU, positive) — interpretation wins over the fixed cut-off."""
    q = _quantity(obs)
    ng_ml: float | None = None
    if q is not None:
        value, unit = q
        unit = unit.replace("µ", "u").lower()
        factor = {"ng/ml": 1.0, "ug/l": 1.0, "mg/l": 1000.0, "ug/ml": 1000.0, "mg/l{feu}": 1000.0}.get(unit)
        if factor is None and "feu" in unit:
            factor = 1000.0 if unit.startswith(("mg", "ug/ml")) else 1.0
        if factor is not None:
            ng_ml = value * factor * (2.0 if loinc == D_DIMER_DDU_LOINC else 1.0)  # DDU ≈ FEU / 2
    positive = _yes_no({"interpretation": obs.get("interpretation")}) if obs.get("interpretation") else None
    if positive is None and ng_ml is not None:
        positive = ng_ml >= D_DIMER_FEU_CUTOFF_NG_ML
    return ng_ml, positive


def _observation_values(obs: JSON, today: date) -> list[tuple[str, Scalar]]:
    """(context key, value) pairs one Observation contributes (findings excluded)."""
    out: list[tuple[str, Scalar]] = []
    for c in _codings(obs.get("code")):
        if c.system == RADCDS_CONTEXT:
            q = _quantity(obs)
            if q is not None:
                out.append((c.code, q[0]))
            elif isinstance(obs.get("valueBoolean"), bool):
                out.append((c.code, bool(obs["valueBoolean"])))
            elif isinstance(obs.get("valueString"), str):
                out.append((c.code, str(obs["valueString"])))
        elif (c.system, c.code) in _NUMERIC_KEYS:
            q = _quantity(obs)
            if q is not None:
                out.append((_NUMERIC_KEYS[(c.system, c.code)], q[0]))
        elif c.system == LOINC and c.code in (D_DIMER_FEU_LOINC, D_DIMER_DDU_LOINC):
            ng_ml, positive = _d_dimer(obs, c.code)
            if ng_ml is not None:
                out.append(("d-dimer", ng_ml))
            if positive is not None:
                out.append(("d-dimer-positive", positive))
        elif c.system == LOINC and c.code in (PREGNANCY_STATUS_LOINC, *HCG_QUALITATIVE_LOINC):
            pregnant = _yes_no(obs)
            if pregnant is not None:
                out.append(("pregnancy-status", pregnant))
        elif c.system == LOINC and c.code == HCG_QUANTITATIVE_LOINC:
            q = _quantity(obs)
            if q is not None and (q[0] >= 25 or q[0] < 5):  # 5-25 mIU/mL is equivocal: stays unknown
                out.append(("pregnancy-status", q[0] >= 25))
        elif c.system == LOINC and c.code == SMOKING_STATUS_LOINC:
            token = next(
                (SMOKING_STATUS[v.code] for v in _codings(obs.get("valueCodeableConcept")) if v.code in SMOKING_STATUS),
                None,
            )
            if token is not None:
                out.append(("smoking-status", token))
        elif c.system == SNOMED_CT and c.code == DATE_CEASED_SMOKING_SNOMED:
            quit_on = _date(obs.get("valueDateTime"))
            if quit_on is not None and quit_on <= today:
                out.append(("years-since-quit", (today - quit_on).days / 365.25))
    return out


def _observation_findings(obs: JSON) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    value = _yes_no(obs)
    if value is None:
        return out
    for c in _codings(obs.get("code")):
        if c.system == RADCDS_FINDING:
            out.append((c.code, value))
        elif c.system == SNOMED_CT and c.code in SNOMED_FINDING_FLAGS:
            flag, both_ways = SNOMED_FINDING_FLAGS[c.code]
            if value or both_ways:
                out.append((flag, value))
    return out


def _condition_ok(cond: JSON) -> bool:
    clinical = _status_code(cond.get("clinicalStatus"))
    verification = _status_code(cond.get("verificationStatus"))
    return (clinical is None or clinical in _CONDITION_ACTIVE) and verification not in _VERIFICATION_EXCLUDED


def _matches(coding: Coding, table: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    code = _norm(coding.code)
    return [(s, p) for s, p in table if s == coding.system and code.startswith(p)]


def _is_contrast_allergy(allergy: JSON) -> bool:
    codes = _codings(allergy.get("code"))
    if any(c.system == SNOMED_CT and c.code in CONTRAST_ALLERGY_SNOMED for c in codes):
        return True
    code = allergy.get("code")
    text = " ".join(
        [str(code.get("text", "")) if isinstance(code, Mapping) else ""] + [c.display for c in codes]
    ).lower()
    return any(word in text for word in CONTRAST_ALLERGY_WORDS) and ("iod" in text or "contrast" in text)


def _prior_studies(imaging_studies: list[JSON] | None, procedures: list[JSON] | None) -> tuple[PriorStudy, ...] | None:
    if imaging_studies is None and procedures is None:
        return None
    out: list[PriorStudy] = []
    for study in imaging_studies or []:
        performed = _date(study.get("started"))
        if performed is None or study.get("status") in ("cancelled", "entered-in-error"):
            continue
        codes = tuple(c for concept in study.get("procedureCode") or [] for c in _codings(concept))
        out.append(PriorStudy(codes, performed, study.get("id")))
    for proc in procedures or []:
        period = proc.get("performedPeriod")
        performed = _date(proc.get("performedDateTime")) or _date(
            period.get("start") if isinstance(period, Mapping) else None
        )
        if performed is None or proc.get("status") != "completed":
            continue
        out.append(PriorStudy(_codings(proc.get("code")), performed, proc.get("id")))
    return tuple(out)


def _recommendations(service_requests: list[JSON] | None) -> tuple[PriorRecommendation, ...] | None:
    if service_requests is None:
        return None
    out: list[PriorRecommendation] = []
    for sr in service_requests:
        if sr.get("status") not in _RECOMMENDATION_STATUS:
            continue
        period = sr.get("occurrencePeriod")
        due = _date(sr.get("occurrenceDateTime")) or _date(period.get("end") if isinstance(period, Mapping) else None)
        if due is None:
            continue
        reasons = tuple(c for concept in sr.get("reasonCode") or [] for c in _codings(concept))
        order = imaging_order_from_service_request(sr)
        out.append(PriorRecommendation(order.codes, due, _date(sr.get("authoredOn")), reasons, order.id, order.display))
    return tuple(out)


def patient_context_from_fhir(
    *,
    today: date,
    patient: JSON | None = None,
    conditions: Iterable[JSON] | None = None,
    observations: Iterable[JSON] | None = None,
    allergies: Iterable[JSON] | None = None,
    imaging_studies: Iterable[JSON] | None = None,
    procedures: Iterable[JSON] | None = None,
    service_requests: Iterable[JSON] | None = None,
    findings_window_days: int = 3,
) -> PatientContext:
    """PatientContext on ``today`` from R4 JSON resources (``None`` for a list that was not fetched).

    ``service_requests`` are the open follow-up recommendations (status active/draft/on-hold with a due
    ``occurrenceDateTime``); do not pass the draft orders being signed.
    """
    birth = _date(patient.get("birthDate")) if patient else None
    sex = patient.get("gender") if patient and isinstance(patient.get("gender"), str) else None

    latest: dict[str, ObservedValue] = {}
    findings: dict[str, tuple[date | None, bool]] = {}
    for obs in observations or []:
        if obs.get("status") not in _OBS_STATUS_OK:
            continue
        effective = _effective(obs)
        if effective is not None and effective > today:
            continue
        for key, value in _observation_values(obs, today):
            held = latest.get(key)
            if held is None or (effective is not None and (held.effective is None or effective >= held.effective)):
                latest[key] = ObservedValue(value, effective)
        if effective is not None and (today - effective).days > findings_window_days:
            continue
        for flag, present in _observation_findings(obs):
            seen = findings.get(flag)
            if seen is None or (effective is not None and (seen[0] is None or effective >= seen[0])):
                findings[flag] = (effective, present)
    flags = {k: v for k, (_, v) in findings.items()}

    records: list[ConditionRecord] = []
    for cond in conditions or []:
        if not _condition_ok(cond):
            continue
        onset_period = cond.get("onsetPeriod")
        onset = _date(cond.get("onsetDateTime")) or _date(
            onset_period.get("start") if isinstance(onset_period, Mapping) else None
        )
        for coding in _codings(cond.get("code")):
            records.append(ConditionRecord(coding, onset))
            for match in _matches(coding, CONDITION_FLAGS):
                for flag in CONDITION_FLAGS[match]:
                    flags[flag] = True  # a problem list can prove presence, never absence
            if _matches(coding, PREGNANCY_CONDITIONS) and "pregnancy-status" not in latest:
                latest["pregnancy-status"] = ObservedValue(True, onset)

    allergy_codes: tuple[Coding, ...] | None = None
    if allergies is not None:
        usable = [
            a
            for a in allergies
            if _status_code(a.get("verificationStatus")) not in ("refuted", "entered-in-error")
            and _status_code(a.get("clinicalStatus")) in (None, "active")
        ]
        allergy_codes = tuple(c for a in usable for c in _codings(a.get("code")))
        flags["iodinated-contrast-allergy"] = flags.get("iodinated-contrast-allergy", False) or any(
            _is_contrast_allergy(a) for a in usable
        )

    return PatientContext(
        as_of=today,
        birth_date=birth,
        sex=sex,
        conditions=tuple(records),
        observations=latest,
        findings=flags,
        allergies=allergy_codes,
        prior_studies=_prior_studies(
            None if imaging_studies is None else list(imaging_studies), None if procedures is None else list(procedures)
        ),
        prior_recommendations=_recommendations(None if service_requests is None else list(service_requests)),
        patient_id=patient.get("id") if patient and isinstance(patient.get("id"), str) else None,
    )
