"""Feedback on AI findings: the decision's rules (a rejection needs a coded reason, ``other`` needs words), and the
FeedbackDesk that records each decision once, as a row with its FHIR Observation, an event and a live change."""

from __future__ import annotations

import pytest

from radcds.domain.findings import ModelIdentity
from radcds_worklist.domain.access import Role, User
from radcds_worklist.domain.feedback import (
    REASON_TEXT_MAX,
    Action,
    AiFinding,
    FindingDecision,
    InvalidFeedback,
    RejectionReason,
    analysis_finding_id,
)

STUDY = "1.2.826.0.1.3680043.8.498.20"
MODEL = ModelIdentity("chest_ctr", "1")
ADA = User("issuer|ada", "Dr Ada Lovelace", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
FINDING = AiFinding("f-1", STUDY, MODEL, "8186001", "Cardiomegaly")


# ---- the decision (pure) ---------------------------------------------------------------------------------------


def test_the_five_rejection_reasons_have_their_codes_and_only_other_needs_text():
    assert [r.value for r in RejectionReason] == [
        "false-positive",
        "wrong-location",
        "wrong-measurement",
        "artefact-or-device",
        "other",
    ]
    assert [r.needs_text for r in RejectionReason] == [False, False, False, False, True]
    assert RejectionReason.ARTEFACT_OR_DEVICE.display == "Artefact or device"


def test_rejection_without_a_reason_is_invalid():
    with pytest.raises(InvalidFeedback, match="needs a reason"):
        FindingDecision(FINDING, Action.REJECTED, ADA)


@pytest.mark.parametrize("text", ["", "   "])
def test_rejection_for_other_reason_without_words_is_invalid(text):
    with pytest.raises(InvalidFeedback, match="needs a text"):
        FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, text)


def test_reason_text_over_the_limit_is_invalid_and_at_the_limit_is_kept_stripped():
    with pytest.raises(InvalidFeedback, match="at most"):
        FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, "x" * (REASON_TEXT_MAX + 1))
    decision = FindingDecision(FINDING, Action.REJECTED, ADA, RejectionReason.OTHER, f"  {'x' * REASON_TEXT_MAX}  ")
    assert decision.reason_text == "x" * REASON_TEXT_MAX


@pytest.mark.parametrize("action", [Action.ACCEPTED, Action.EDITED])
def test_acceptance_or_edit_with_a_rejection_reason_is_invalid(action):
    with pytest.raises(InvalidFeedback, match="no rejection reason"):
        FindingDecision(FINDING, action, ADA, RejectionReason.FALSE_POSITIVE)


def test_a_finding_without_id_or_study_is_invalid():
    with pytest.raises(InvalidFeedback):
        AiFinding("", STUDY, MODEL)
    with pytest.raises(InvalidFeedback):
        AiFinding("f-1", "", MODEL)


def test_the_same_named_request_always_gets_the_same_feedback_id_and_an_unnamed_one_none():
    first = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-1")
    again = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-1")
    other = FindingDecision(FINDING, Action.ACCEPTED, ADA, request_id="req-2")
    assert first.deterministic_id() == again.deterministic_id() != other.deterministic_id()
    assert FindingDecision(FINDING, Action.ACCEPTED, ADA).deterministic_id() is None


def test_analysis_finding_id_is_deterministic_per_study_series_and_model():
    assert analysis_finding_id("1.2", "1.2.3", "chest_ctr") == analysis_finding_id("1.2", "1.2.3", "chest_ctr")
    assert analysis_finding_id("1.2", "1.2.3", "chest_ctr") != analysis_finding_id("1.2", "1.2.4", "chest_ctr")
