"""Follow-up recommendations and their life until closure.

A recommendation is what a guideline asked for (which study, by when, why, citing the guideline). It is
**tracked to closure** (the ACR DSI use case "follow-up recommendation tracking"):

    proposed ──(matching order or study)──▶ closed
       │  └──(due date passes)──▶ overdue ──(matching order or study)──▶ closed
       └──(clinician cancels, with a reason)──▶ cancelled ◀──(clinician cancels)── overdue

``closed`` and ``cancelled`` are final. Every transition returns the new recommendation and the event that says
what changed; a transition that is not allowed raises :class:`InvalidTransition`. On the wire the recommendation is
a FHIR R4 ServiceRequest with ``intent: proposal`` (R4 ServiceRequest, section 12.9; see docs/fusion.md).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from radcds_fusion.domain.guidelines import FollowUp, GuidelineAssessment


class RecommendationState(StrEnum):
    """Where a recommendation stands."""

    PROPOSED = "proposed"
    OVERDUE = "overdue"
    CLOSED = "closed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({RecommendationState.CLOSED, RecommendationState.CANCELLED})


class InvalidTransition(ValueError):
    """A state change the life cycle does not allow (e.g. cancelling a closed recommendation)."""


@dataclass(frozen=True, slots=True)
class RequestedProcedure:
    """The study a recommendation asks for: modality and body region, and the order codes that fulfil it."""

    modality: str  # DICOM modality, e.g. "CT"
    body_region: str  # e.g. "chest"
    display: str  # e.g. "CT chest"
    codes: frozenset[str] = frozenset()  # e.g. CPT 71250, 71260, 71270, 71271 (low-dose screening)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A follow-up recommendation for one patient, and its state."""

    id: str
    patient_id: str
    procedure: RequestedProcedure
    created_on: date
    due_from: date
    due_by: date
    reason: str
    guideline_id: str
    guideline_version: str
    citation: str
    state: RecommendationState = RecommendationState.PROPOSED
    optional: bool = False
    study_uid: str | None = None  # the study whose finding led to the recommendation
    finding_code: str | None = None  # SNOMED CT code of that finding (e.g. 427359005 pulmonary nodule)
    patient_identifier: str | None = None  # the identifier the EHR knows the patient by (MRN)
    #: The EHR's FHIR Patient id, when fusion found exactly one EHR Patient by that identifier (CDS Hooks
    #: ``context.patientId`` names the patient by it).
    ehr_patient_id: str | None = None
    closed_by: str | None = None  # reference to the order or study that fulfilled it
    cancel_reason: str | None = None
    changed_at: datetime | None = None
    changed_by: str | None = None


@dataclass(frozen=True, slots=True)
class RecommendationChanged:
    """Event: a recommendation was made or changed state (past tense, as events are named)."""

    recommendation: Recommendation
    previous_state: RecommendationState | None


@dataclass(frozen=True, slots=True)
class ObservedProcedure:
    """An order (HL7 ORM/OMI, CDS Hooks order) or a study that arrived for a patient."""

    patient_id: str
    modality: str | None
    body_region: str | None
    code: str | None
    on: date
    reference: str  # e.g. "ServiceRequest/abc" or "ImagingStudy/1.2.3"


@dataclass(frozen=True, slots=True)
class EhrPatient:
    """The patient of a CDS Hooks call as the EHR names them: ``context.patientId`` (the EHR's FHIR Patient id) and
    the Patient resource's identifiers as (system, value) pairs (CDS Hooks 2.0 §Prefetch; FHIR R4 Identifier)."""

    id: str
    identifiers: frozenset[tuple[str, str]] = frozenset()


def is_patient_of(rec: Recommendation, patient: EhrPatient, *, mrn_system: str | None) -> bool:
    """Whether the EHR's ``patient`` is the patient ``rec`` was made for.

    By the EHR Patient id fusion recorded when it found the patient by MRN (exactly one match); a recorded id that
    differs never matches, whatever the identifiers say. Without a recorded id, by the MRN itself: an identifier of
    the hospital's MRN system (``mrn_system``) with the recommendation's identifier as its value. Never by an
    identifier value alone (another assigning authority may use the same value): without ``mrn_system`` only the
    recorded id can match.
    """
    if rec.ehr_patient_id is not None:
        return rec.ehr_patient_id == patient.id
    if not mrn_system or not rec.patient_identifier:
        return False
    return (mrn_system, rec.patient_identifier) in patient.identifiers


def add_months(day: date, months: float) -> date:
    """``day`` plus a whole or half number of months (half a month is 15 days), clamped to the month's end."""
    whole = int(months)
    extra_days = round((months - whole) * 30)
    month0 = day.month - 1 + whole
    year, month = day.year + month0 // 12, month0 % 12 + 1
    shifted = date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
    return shifted + timedelta(days=extra_days)


def recommend(
    *,
    id: str,
    patient_id: str,
    assessment: GuidelineAssessment,
    procedure: RequestedProcedure,
    study_date: date,
    at: datetime,
    study_uid: str | None = None,
    finding_code: str | None = None,
) -> RecommendationChanged | None:
    """The recommendation a guideline assessment asks for, due within its follow-up interval from the study
    date; ``None`` when the guideline does not apply or asks for no follow-up."""
    outcome = assessment.outcome
    if not assessment.applies or outcome is None or outcome.follow_up is None:
        return None
    follow_up: FollowUp = outcome.follow_up
    rec = Recommendation(
        id=id,
        patient_id=patient_id,
        procedure=procedure,
        created_on=study_date,
        due_from=add_months(study_date, follow_up.min_months),
        due_by=add_months(study_date, follow_up.max_months),
        reason=outcome.recommendation,
        guideline_id=assessment.guideline_id,
        guideline_version=assessment.guideline_version,
        citation=assessment.citation,
        optional=follow_up.optional,
        study_uid=study_uid,
        finding_code=finding_code,
        changed_at=at,
    )
    return RecommendationChanged(rec, None)


def fulfils(rec: Recommendation, seen: ObservedProcedure) -> bool:
    """Whether an order or study closes ``rec``: same patient, on or after the recommendation was made, and the
    same procedure (an order code of the procedure, or the same modality and body region)."""
    if seen.patient_id != rec.patient_id or seen.on < rec.created_on:
        return False
    if seen.code is not None and seen.code in rec.procedure.codes:
        return True
    return (seen.modality or "").upper() == rec.procedure.modality.upper() and (
        seen.body_region or ""
    ).lower() == rec.procedure.body_region.lower()


def close(rec: Recommendation, seen: ObservedProcedure, *, at: datetime) -> RecommendationChanged:
    """Close ``rec`` with the order or study that fulfils it."""
    _require_open(rec, "close")
    if not fulfils(rec, seen):
        raise InvalidTransition(f"{seen.reference} does not fulfil recommendation {rec.id}")
    changed = replace(rec, state=RecommendationState.CLOSED, closed_by=seen.reference, changed_at=at, changed_by=None)
    return RecommendationChanged(changed, rec.state)


def close_matching(
    recs: Iterable[Recommendation], seen: ObservedProcedure, *, at: datetime
) -> list[RecommendationChanged]:
    """Close every open recommendation that ``seen`` fulfils (an order may close several)."""
    return [close(r, seen, at=at) for r in recs if r.state not in FINAL_STATES and fulfils(r, seen)]


def mark_overdue(rec: Recommendation, *, today: date, at: datetime) -> RecommendationChanged | None:
    """``rec`` becomes overdue the day after its due date when still open; ``None`` when nothing changes."""
    if rec.state is not RecommendationState.PROPOSED or today <= rec.due_by:
        return None
    return RecommendationChanged(replace(rec, state=RecommendationState.OVERDUE, changed_at=at), rec.state)


def cancel(rec: Recommendation, *, reason: str, by: str, at: datetime) -> RecommendationChanged:
    """A clinician cancels ``rec``; the reason is required."""
    _require_open(rec, "cancel")
    if not reason.strip():
        raise InvalidTransition("a cancellation needs a reason")
    changed = replace(rec, state=RecommendationState.CANCELLED, cancel_reason=reason, changed_at=at, changed_by=by)
    return RecommendationChanged(changed, rec.state)


def _require_open(rec: Recommendation, action: str) -> None:
    if rec.state in FINAL_STATES:
        raise InvalidTransition(f"cannot {action} recommendation {rec.id}: it is {rec.state.value}")
