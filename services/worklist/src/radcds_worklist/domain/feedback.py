"""A radiologist's decision on an AI finding: accept, edit (then sign) or reject with a coded reason (issue #13).

Each decision is recorded per model, model version and finding, so post-market monitoring (FDA, *Artificial
Intelligence-Enabled Device Software Functions: Lifecycle Management and Marketing Submission Recommendations*,
draft guidance, January 2025, on performance monitoring) can count how often each model version is overruled and
why.

A *finding* here is one model's analysis of one series (one ``FINDINGS_PRODUCED`` event, a row of
``worklist_findings``), optionally narrowed by ``finding_code`` to one of its coded findings (SNOMED CT) or
measurements. Pure: no database, no FHIR, no HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from radcds.domain.findings import ModelIdentity
from radcds_worklist.domain.access import User

#: The longest free text a rejection may carry (the event schema's ``reasonText`` maxLength).
REASON_TEXT_MAX = 500
FEEDBACK_NAMESPACE = uuid.UUID("a1f0c2d4-6b8e-5c3a-9d7f-1e2b3c4d5e6f")


class InvalidFeedback(ValueError):
    """A decision that cannot be recorded as given (HTTP 422): e.g. a rejection without a reason."""


class Action(StrEnum):
    """What the radiologist did with the AI finding."""

    ACCEPTED = "accepted"
    EDITED = "edited"
    REJECTED = "rejected"


class RejectionReason(StrEnum):
    """Why an AI finding was rejected: the worklist's short coded list (CodeSystem ``ai-rejection-reason``)."""

    FALSE_POSITIVE = "false-positive"
    WRONG_LOCATION = "wrong-location"
    WRONG_MEASUREMENT = "wrong-measurement"
    ARTEFACT_OR_DEVICE = "artefact-or-device"
    OTHER = "other"

    @property
    def display(self) -> str:
        """The reason as a reader sees it."""
        return _REASON_DISPLAY[self]

    @property
    def needs_text(self) -> bool:
        """``other`` says nothing by itself: the radiologist must write why."""
        return self is RejectionReason.OTHER


_REASON_DISPLAY = {
    RejectionReason.FALSE_POSITIVE: "False positive",
    RejectionReason.WRONG_LOCATION: "Wrong location",
    RejectionReason.WRONG_MEASUREMENT: "Wrong measurement",
    RejectionReason.ARTEFACT_OR_DEVICE: "Artefact or device",
    RejectionReason.OTHER: "Other",
}


@dataclass(frozen=True, slots=True)
class AiFinding:
    """The AI finding a decision is about: one model's analysis (``finding_id``) of a study, or one coded finding or
    measurement of it (``code``, with its ``display``); ``observation_id`` is the FHIR Observation reporting made
    for it, when known; ``patient_ref`` the report's subject ("Patient/<id>"), when known."""

    finding_id: str
    study_uid: str
    model: ModelIdentity
    code: str = ""
    display: str = ""
    observation_id: str = ""
    patient_ref: str = ""

    def __post_init__(self) -> None:
        if not self.finding_id or len(self.finding_id) > 64:
            raise InvalidFeedback("a finding id has 1 to 64 characters")
        if not self.study_uid:
            raise InvalidFeedback("a finding belongs to a study")
        if len(self.code) > 64:
            raise InvalidFeedback("a finding code has at most 64 characters")


@dataclass(frozen=True, slots=True)
class FindingDecision:
    """One radiologist's decision on one AI finding.

    ``rejected`` needs a :class:`RejectionReason` (``other`` with text); ``accepted`` and ``edited`` carry none.
    ``report_id`` is the DiagnosticReport the decision was made in, when known; ``request_id`` a client-supplied
    id of the request (a form's nonce): the same request sent twice is one decision.
    """

    finding: AiFinding
    action: Action
    user: User
    reason: RejectionReason | None = None
    reason_text: str = ""
    report_id: str | None = None
    request_id: str = ""

    def __post_init__(self) -> None:
        text = self.reason_text.strip()
        object.__setattr__(self, "reason_text", text)
        if len(text) > REASON_TEXT_MAX:
            raise InvalidFeedback(f"the reason text has at most {REASON_TEXT_MAX} characters")
        if self.action is Action.REJECTED:
            if self.reason is None:
                raise InvalidFeedback("a rejection needs a reason from the list")
            if self.reason.needs_text and not text:
                raise InvalidFeedback("the reason 'other' needs a text")
        elif self.reason is not None or text:
            raise InvalidFeedback(f"an {self.action.value} finding carries no rejection reason")
        if len(self.request_id) > 128:
            raise InvalidFeedback("a request id has at most 128 characters")

    def deterministic_id(self) -> str | None:
        """The feedback id this decision always gets when the client named its request; ``None`` otherwise."""
        if not self.request_id:
            return None
        key = f"{self.finding.finding_id}|{self.finding.code}|{self.user.id}|{self.action.value}|{self.request_id}"
        return str(uuid.uuid5(FEEDBACK_NAMESPACE, key))

    def same_as(self, action: str, reason_code: str, reason_text: str) -> bool:
        """True when an earlier decision of the same user on the same finding said exactly this."""
        return (action, reason_code, reason_text) == (
            self.action.value,
            self.reason.value if self.reason else "",
            self.reason_text,
        )
