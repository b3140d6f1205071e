"""Post-market monitoring of one model version: how radiologists judge its findings, and what it is given to read.

For one model and version, over each day and over the last N studies:

- **decisions**: of the AI findings the radiologists decided on, how many were accepted, edited or rejected, and
  the rejection reasons. A finding is one model's analysis of one series; each (finding, code) counts with its
  latest decision, and the finding's outcome is ``rejected`` when any of its items was rejected, else ``edited``
  when any was edited, else ``accepted``;
- **agreement** between the AI finding and the signed report: over the decided findings of signed studies (report
  ``final``, ``amended``, ``corrected`` or ``appended``), the share kept (accepted, or edited with the finding kept)
  against the share rejected;
- **validated envelope**: the share of analyses the model declined because the series lay outside the envelope its
  card declares, by reason;
- **input drift**: per attribute (Manufacturer (0008,0070), Manufacturer's Model Name (0008,1090), KVP (0018,0060),
  Slice Thickness (0018,0050), patient age (0010,1010) — DICOM PS3.3 C.7.5.1, C.8.7.2, C.7.6.2, C.7.2.2), the
  observed distribution and the share of analysed series outside what the model card declares (the manifest's
  ``declared_inputs``, else ``applies_to``).

Each rate is also a :class:`Metric`; crossing a configured threshold raises an alert. This is the real-world
performance monitoring the FDA asks AI-enabled device makers to plan (draft guidance *Artificial
Intelligence-Enabled Device Software Functions*, January 2025). Pure: no database, no HTTP.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from radcds.domain.findings import ModelIdentity

#: Report statuses after a radiologist signed (FHIR R4 DiagnosticReport.status).
SIGNED_STATUSES = frozenset({"final", "amended", "corrected", "appended"})


class Metric(StrEnum):
    """A monitored rate of a model version; every one is worse when higher, and alerts when above its threshold."""

    REJECTION_RATE = "rejection-rate"
    DISAGREEMENT_RATE = "disagreement-rate"
    OUTSIDE_ENVELOPE_RATE = "outside-envelope-rate"
    DRIFT_MANUFACTURER = "drift-manufacturer"
    DRIFT_MANUFACTURER_MODEL = "drift-manufacturer-model"
    DRIFT_KVP = "drift-kvp"
    DRIFT_SLICE_THICKNESS = "drift-slice-thickness"
    DRIFT_PATIENT_AGE = "drift-patient-age"


class Attribute(StrEnum):
    """An input attribute watched for drift (the DICOM attribute it is read from)."""

    MANUFACTURER = "manufacturer"  # (0008,0070)
    MANUFACTURER_MODEL = "manufacturer-model"  # (0008,1090)
    KVP = "kvp"  # (0018,0060)
    SLICE_THICKNESS = "slice-thickness"  # (0018,0050)
    PATIENT_AGE = "patient-age"  # (0010,1010), else from (0010,0030) and (0008,0020)

    @property
    def metric(self) -> Metric:
        """The drift metric of this attribute."""
        return Metric(f"drift-{self.value}")


# ---- what the model card declares ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """A closed numeric range; an open end is ``None``."""

    low: float | None = None
    high: float | None = None

    def contains(self, value: float) -> bool:
        """True when ``value`` lies within the range."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def label(self) -> str:
        """The range in words: ``2.5-5``, ``>= 18``, ``<= 140``."""
        if self.low is not None and self.high is not None:
            return f"{self.low:g}-{self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}" if self.high is not None else "any"


@dataclass(frozen=True, slots=True)
class DeclaredInputs:
    """The input distribution a model card declares; an empty set or ``None`` range means "not declared"."""

    manufacturers: frozenset[str] = frozenset()
    manufacturer_models: frozenset[str] = frozenset()
    kvp: Range | None = None
    slice_thickness_mm: Range | None = None
    patient_age_years: Range | None = None
    #: Where it came from: ``declared_inputs`` (the card's input block) or ``applies_to`` (its envelope only).
    source: str = "declared_inputs"


def _range(value: Any) -> Range | None:
    if not isinstance(value, Mapping):
        return None
    low, high = value.get("min"), value.get("max")
    if low is None and high is None:
        return None
    return Range(None if low is None else float(low), None if high is None else float(high))


def _names(value: Any) -> frozenset[str]:
    return frozenset(str(v).strip().casefold() for v in value or () if str(v).strip())


def declared_inputs(entry: Mapping[str, Any]) -> DeclaredInputs:
    """What one manifest model entry declares: its ``declared_inputs`` block when present, with ``applies_to``'s
    slice thickness and patient age as the fallback for what that block leaves out."""
    applies = entry.get("applies_to") or {}
    block = entry.get("declared_inputs")
    if not isinstance(block, Mapping):
        return DeclaredInputs(
            slice_thickness_mm=_range(applies.get("slice_thickness_mm")),
            patient_age_years=_range(applies.get("patient_age_years")),
            source="applies_to",
        )
    return DeclaredInputs(
        manufacturers=_names(block.get("manufacturers")),
        manufacturer_models=_names(block.get("manufacturer_models")),
        kvp=_range(block.get("kvp")),
        slice_thickness_mm=_range(
            block["slice_thickness_mm"] if "slice_thickness_mm" in block else applies.get("slice_thickness_mm")
        ),
        patient_age_years=_range(
            block["patient_age_years"] if "patient_age_years" in block else applies.get("patient_age_years")
        ),
    )


def declared_by_model(manifest: Mapping[str, Any]) -> dict[ModelIdentity, DeclaredInputs]:
    """Every model version of a manifest (``models/manifest.json``, docs/models.md) with what its card declares."""
    return {
        ModelIdentity(str(m["name"]), str(m["version"])): declared_inputs(m)
        for m in manifest.get("models", ())
        if m.get("name") and m.get("version")
    }


# ---- what the model was given ------------------------------------------------------------------------------------

#: DICOM Age String (PS3.5 6.2, VR AS): ``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``.
_AGE_STRING = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def _dicom_date(value: str) -> date | None:
    try:
        return date(int(value[0:4]), int(value[4:6]), int(value[6:8])) if len(value) == 8 else None
    except ValueError:
        return None


def patient_age_years(age: str, birth_date: str = "", study_date: str = "") -> float | None:
    """The patient's age in years: Patient's Age (0010,1010, VR AS) when valid, else from Patient's Birth Date
    (0010,0030) and Study Date (0008,0020) (VR DA ``YYYYMMDD``); ``None`` when neither gives one."""
    if m := _AGE_STRING.match(age.strip()):
        return round(int(m.group(1)) * _DAYS_PER_UNIT[m.group(2)], 2)
    born, studied = _dicom_date(birth_date.strip()), _dicom_date(study_date.strip())
    if born is None or studied is None or studied < born:
        return None
    years = studied.year - born.year - ((studied.month, studied.day) < (born.month, born.day))
    return float(years)


@dataclass(frozen=True, slots=True)
class Acquisition:
    """The attributes of one analysed instance that drift is watched on, as read from its DICOM header."""

    manufacturer: str = ""
    manufacturer_model: str = ""
    kvp: float | None = None
    slice_thickness_mm: float | None = None
    patient_age: str = ""
    patient_birth_date: str = ""
    study_date: str = ""


@dataclass(frozen=True, slots=True)
class InputProfile:
    """What one analysis (one series, one model) was given, and why the model declined it, if it did."""

    finding_id: str
    study_uid: str
    recorded_at: datetime
    manufacturer: str = ""
    manufacturer_model: str = ""
    kvp: float | None = None
    slice_thickness_mm: float | None = None
    patient_age_years: float | None = None
    outside_envelope_reason: str = ""


def input_profile(
    *, finding_id: str, study_uid: str, acquisition: Acquisition, not_analysed_reason: str, recorded_at: datetime
) -> InputProfile:
    """The profile of one analysis from its instance's attributes (empty when they could not be read)."""
    a = acquisition
    return InputProfile(
        finding_id=finding_id,
        study_uid=study_uid,
        recorded_at=recorded_at,
        manufacturer=a.manufacturer.strip()[:64],
        manufacturer_model=a.manufacturer_model.strip()[:64],
        kvp=a.kvp,
        slice_thickness_mm=a.slice_thickness_mm,
        patient_age_years=patient_age_years(a.patient_age, a.patient_birth_date, a.study_date),
        outside_envelope_reason=not_analysed_reason,
    )


# ---- the radiologists' decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One recorded decision, with whether its study's report is signed now."""

    finding_id: str
    study_uid: str
    finding_code: str
    action: str
    reason_code: str
    recorded_at: datetime
    signed: bool = False


@dataclass(frozen=True, slots=True)
class DecisionStats:
    """Outcomes of the decided AI findings, and the rejection reasons (code, count), most frequent first."""

    findings: int = 0
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    reasons: tuple[tuple[str, int], ...] = ()

    def _rate(self, n: int) -> float | None:
        return n / self.findings if self.findings else None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted as given, of the decided findings (``None`` before any decision)."""
        return self._rate(self.accepted)

    @property
    def edit_rate(self) -> float | None:
        """Edited, then signed, of the decided findings."""
        return self._rate(self.edited)

    @property
    def rejection_rate(self) -> float | None:
        """Rejected, of the decided findings."""
        return self._rate(self.rejected)


@dataclass(frozen=True, slots=True)
class Agreement:
    """The AI finding against the signed report, over the decided findings of signed studies."""

    signed_findings: int = 0
    kept: int = 0

    @property
    def rate(self) -> float | None:
        """Kept (accepted or edited), of the signed studies' decided findings."""
        return self.kept / self.signed_findings if self.signed_findings else None

    @property
    def disagreement_rate(self) -> float | None:
        """Rejected, of the signed studies' decided findings."""
        return None if self.rate is None else 1.0 - self.rate


@dataclass(frozen=True, slots=True)
class EnvelopeStats:
    """Analyses the model declined as outside its validated envelope, by reason (reason, count)."""

    analyses: int = 0
    outside: int = 0
    by_reason: tuple[tuple[str, int], ...] = ()

    @property
    def share(self) -> float | None:
        """Declined, of all analyses."""
        return self.outside / self.analyses if self.analyses else None


@dataclass(frozen=True, slots=True)
class AttributeDrift:
    """One input attribute: what was seen (label, count) against what the card declares (``declared`` in words,
    "" when it declares nothing); ``outside`` counts analysed series whose known value lies outside it."""

    attribute: Attribute
    declared: str
    distribution: tuple[tuple[str, int], ...]
    known: int
    unknown: int
    outside: int

    @property
    def outside_share(self) -> float | None:
        """Outside the declared set or range, of the series whose value is known (``None``: nothing to compare)."""
        return self.outside / self.known if self.declared and self.known else None


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Everything monitored over one window (a day, or the last N studies)."""

    label: str
    studies: int
    started_at: datetime | None
    decisions: DecisionStats
    agreement: Agreement
    envelope: EnvelopeStats
    drift: tuple[AttributeDrift, ...]

    def metrics(self) -> dict[Metric, float]:
        """The window's rates as metrics (those with something to measure)."""
        values: dict[Metric, float | None] = {
            Metric.REJECTION_RATE: self.decisions.rejection_rate,
            Metric.DISAGREEMENT_RATE: self.agreement.disagreement_rate,
            Metric.OUTSIDE_ENVELOPE_RATE: self.envelope.share,
            **{d.attribute.metric: d.outside_share for d in self.drift},
        }
        return {m: v for m, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class ModelMonitoring:
    """One model version over time: the last ``window_studies`` studies, and each day (oldest first)."""

    model: ModelIdentity
    declared: DeclaredInputs | None
    window_studies: int
    recent: WindowStats
    days: tuple[WindowStats, ...] = field(default=())


def _counted(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def decision_stats(feedback: Iterable[FeedbackRecord]) -> tuple[DecisionStats, Agreement]:
    """Outcomes per finding (each item's latest decision) and the agreement over signed studies."""
    latest: dict[tuple[str, str], FeedbackRecord] = {}
    for record in sorted(feedback, key=lambda r: r.recorded_at):
        latest[(record.finding_id, record.finding_code)] = record
    items: dict[str, list[FeedbackRecord]] = {}
    for record in latest.values():
        items.setdefault(record.finding_id, []).append(record)
    outcomes: dict[str, str] = {}
    signed: dict[str, bool] = {}
    for finding_id, records in items.items():
        actions = {r.action for r in records}
        outcomes[finding_id] = next(a for a in ("rejected", "edited", "accepted") if a in actions)
        signed[finding_id] = any(r.signed for r in records)
    counts = Counter(outcomes.values())
    reasons = _counted(r.reason_code for r in latest.values() if r.action == "rejected" and r.reason_code)
    stats = DecisionStats(len(outcomes), counts["accepted"], counts["edited"], counts["rejected"], reasons)
    signed_outcomes = [o for f, o in outcomes.items() if signed[f]]
    return stats, Agreement(len(signed_outcomes), sum(o != "rejected" for o in signed_outcomes))


def envelope_stats(profiles: Sequence[InputProfile]) -> EnvelopeStats:
    """The share of analyses declined as outside the validated envelope, by reason."""
    outside = [p.outside_envelope_reason for p in profiles if p.outside_envelope_reason]
    return EnvelopeStats(len(profiles), len(outside), _counted(outside))


def _age_band(age: float) -> str:
    if age >= 90:
        return "90+"
    low = int(age // 10) * 10
    return f"{low}-{low + 9}"


def _categorical(attribute: Attribute, values: list[str], declared: frozenset[str]) -> AttributeDrift:
    known = [v for v in values if v]
    return AttributeDrift(
        attribute=attribute,
        declared=", ".join(sorted(declared)),
        distribution=_counted(known),
        known=len(known),
        unknown=len(values) - len(known),
        outside=sum(v.casefold() not in declared for v in known) if declared else 0,
    )


def _numeric(attribute: Attribute, values: list[float | None], declared: Range | None, unit: str) -> AttributeDrift:
    known = [v for v in values if v is not None]
    if attribute is Attribute.PATIENT_AGE:
        bands = Counter(_age_band(v) for v in known)
        distribution = tuple(sorted(bands.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+"))))
    else:
        distribution = tuple((f"{v:g} {unit}", n) for v, n in sorted(Counter(known).items()))
    return AttributeDrift(
        attribute=attribute,
        declared=f"{declared.label} {unit}" if declared else "",
        distribution=distribution,
        known=len(known),
        unknown=len(values) - len(known),
        outside=sum(not declared.contains(v) for v in known) if declared else 0,
    )


def drift(profiles: Sequence[InputProfile], declared: DeclaredInputs | None) -> tuple[AttributeDrift, ...]:
    """Per attribute, the observed distribution of the *analysed* series against what the card declares (declined
    series are counted by :func:`envelope_stats`, not here)."""
    d = declared or DeclaredInputs()
    analysed = [p for p in profiles if not p.outside_envelope_reason]
    return (
        _categorical(Attribute.MANUFACTURER, [p.manufacturer for p in analysed], d.manufacturers),
        _categorical(Attribute.MANUFACTURER_MODEL, [p.manufacturer_model for p in analysed], d.manufacturer_models),
        _numeric(Attribute.KVP, [p.kvp for p in analysed], d.kvp, "kV"),
        _numeric(Attribute.SLICE_THICKNESS, [p.slice_thickness_mm for p in analysed], d.slice_thickness_mm, "mm"),
        _numeric(Attribute.PATIENT_AGE, [p.patient_age_years for p in analysed], d.patient_age_years, "years"),
    )


def summarise(
    label: str,
    feedback: Sequence[FeedbackRecord],
    profiles: Sequence[InputProfile],
    declared: DeclaredInputs | None,
) -> WindowStats:
    """Everything monitored over the given decisions and profiles."""
    decisions, agreement = decision_stats(feedback)
    moments = [r.recorded_at for r in feedback] + [p.recorded_at for p in profiles]
    return WindowStats(
        label=label,
        studies=len({r.study_uid for r in feedback} | {p.study_uid for p in profiles}),
        started_at=min(moments) if moments else None,
        decisions=decisions,
        agreement=agreement,
        envelope=envelope_stats(profiles),
        drift=drift(profiles, declared),
    )


def recent_window(
    feedback: Sequence[FeedbackRecord],
    profiles: Sequence[InputProfile],
    declared: DeclaredInputs | None,
    *,
    window_studies: int,
) -> WindowStats:
    """The last ``window_studies`` studies (by their latest decision or analysis), everything monitored over them."""
    if window_studies < 1:
        raise ValueError("a window holds at least one study")
    last_seen: dict[str, datetime] = {}
    for study, moment in [(r.study_uid, r.recorded_at) for r in feedback] + [
        (p.study_uid, p.recorded_at) for p in profiles
    ]:
        last_seen[study] = max(moment, last_seen.get(study, moment))
    chosen = set(sorted(last_seen, key=lambda s: (last_seen[s], s), reverse=True)[:window_studies])
    return summarise(
        f"last {window_studies} studies",
        [r for r in feedback if r.study_uid in chosen],
        [p for p in profiles if p.study_uid in chosen],
        declared,
    )


def monitor(
    model: ModelIdentity,
    feedback: Sequence[FeedbackRecord],
    profiles: Sequence[InputProfile],
    declared: DeclaredInputs | None,
    *,
    window_studies: int,
) -> ModelMonitoring:
    """One model version over the last ``window_studies`` studies and per day (UTC; a decision counts on the day it
    was made, an analysis on the day it was profiled)."""
    days = sorted({r.recorded_at.date() for r in feedback} | {p.recorded_at.date() for p in profiles})
    return ModelMonitoring(
        model=model,
        declared=declared,
        window_studies=window_studies,
        recent=recent_window(feedback, profiles, declared, window_studies=window_studies),
        days=tuple(
            summarise(
                day.isoformat(),
                [r for r in feedback if r.recorded_at.date() == day],
                [p for p in profiles if p.recorded_at.date() == day],
                declared,
            )
            for day in days
        ),
    )


def crossed(values: Mapping[Metric, float], thresholds: Mapping[Metric, float]) -> list[tuple[Metric, float, float]]:
    """The metrics above their thresholds, as (metric, value, threshold), in :class:`Metric` order."""
    over = [m for m in Metric if m in values and m in thresholds and values[m] > thresholds[m]]
    return [(m, values[m], thresholds[m]) for m in over]
